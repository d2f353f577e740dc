"""virt_tf.benchmarks.step_profile and step_cost: self times read from a trace, the parts of a
step, the tables' shares; a training step's FLOPs against a hand count (tiny inputs; the whole
profile of real steps runs in test_benchmark_speed.py)."""
import keras
import pytest
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from virt_tf.benchmarks import step_cost, step_profile
from virt_tf.models.virt import VirtModel

PS = 10 ** 9  # a millisecond in picoseconds


def _space(lines):
    """An XSpace with a host CPU plane; ``lines``: ``{line name: [(event name, start ms,
    duration ms)]}``."""
    space = xplane_pb2.XSpace()
    plane = space.planes.add(name=step_profile.HOST_PLANE)
    ids = {}
    for line_name, events in lines.items():
        line = plane.lines.add(name=line_name)
        for name, start, duration in events:
            if name not in ids:
                ids[name] = len(ids) + 1
                plane.event_metadata[ids[name]].name = name
            line.events.add(metadata_id=ids[name], offset_ps=start * PS,
                            duration_ps=duration * PS)
    return space


def test_op_times_are_self_times_of_executor_ops_only():
    space = _space({
        "tf_Compute/1": [
            ("StatefulPartitionedCall:StatefulPartitionedCall", 0, 100),  # a call: left out
            ("model/dense/MatMul:MatMul", 10, 40),
            ("model/dense/MatMul/inner:Mul", 20, 15),  # nested: 15 ms off the MatMul
            ("adam/Sqrt:Sqrt", 60, 10),
            ("ExecutorState::Process", 0, 100),  # not an op
            ("EagerLocalExecute: __inference_step", 0, 100)],
        "tf_data_iterator_get_next/2": [("IteratorGetNext:IteratorGetNext", 0, 50)],
    })
    ops = {(o.name, o.op_type): o.seconds for o in step_profile.op_times(space)}
    assert ops == pytest.approx({("model/dense/MatMul", "MatMul"): 0.025,
                                 ("model/dense/MatMul/inner", "Mul"): 0.015,
                                 ("adam/Sqrt", "Sqrt"): 0.010})


def test_phases_and_tables_split_all_op_time():
    scopes = {"adam"}
    assert step_profile.phase("StatefulPartitionedCall/adam/Sqrt_1", scopes) == "optimizer"
    assert step_profile.phase("StatefulPartitionedCall/cond/then/_150/cond/adam/Sqrt_1",
                              scopes) == "optimizer"
    assert step_profile.phase(
        "StatefulPartitionedCall/gradient_tape/encoder/layer_0/MatMul", scopes) == "backward"
    assert step_profile.phase("StatefulPartitionedCall/encoder/layer_0/MatMul", scopes) == \
        "forward"
    ops = [step_profile.OpTime("encoder/MatMul", "MatMul", 0.6),
           step_profile.OpTime("gradient_tape/encoder/MatMul", "MatMul", 0.8),
           step_profile.OpTime("adam/Mul", "Mul", 0.4),
           step_profile.OpTime("adam/Sqrt", "Sqrt", 0.1),
           step_profile.OpTime("encoder/Erf", "Erf", 0.1)]
    phases = {r["phase"]: r for r in step_profile.phase_table(ops, 2, scopes)}
    assert phases["optimizer"]["ms_per_step"] == pytest.approx(250)
    assert phases["backward"]["share"] == pytest.approx(0.4)
    assert sum(r["share"] for r in phases.values()) == pytest.approx(1)
    rows = step_profile.op_table(ops, 2, top=2)
    assert [r["op_type"] for r in rows] == ["MatMul", "Mul", "other (2 types)"]
    assert rows[0]["runs_per_step"] == 1 and rows[0]["share"] == pytest.approx(0.7)
    assert sum(r["share"] for r in rows) == pytest.approx(1)
    profile = {"steps": 2, "op_ms_per_step": 1000.0, "wall_ms_per_step": 800.0,
               "phases": list(phases.values()), "ops": rows,
               "split": {"forward": 0.2, "forward_backward": 0.5, "optimizer": 0.1}}
    text = step_profile.to_markdown(profile)
    assert "| optimizer | 250.00 | 25.0% |" in text
    assert "| MatMul | 700.00 | 70.0% | 1 |" in text
    assert "| forward + backward | 500.0 |" in text


class _Dense(keras.Model):
    """A one-layer student: ``forward`` returns the logits of a bias-free dense layer."""
    separate_layers = 1

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3, use_bias=False)

    def forward(self, features, training=False, return_qk=False):
        del training, return_qk
        return {"logits": self.dense(features["x"])}

    def call(self, features, training=False):
        return self.forward(features, training)["logits"]


def test_step_flops_count_forward_and_backward_matmuls():
    """[8, 16] x [16, 3]: the forward matmul is 2*8*16*3 FLOPs, the kernel's gradient
    another as many (the input needs none); the loss adds a few."""
    student = _Dense()
    student({"x": tf.zeros([8, 16])})
    model = VirtModel(student)
    model.compile(optimizer="adam")
    features, labels = {"x": tf.ones([8, 16])}, tf.zeros([8], tf.int32)
    flops = step_cost.step_flops(model, features, labels)
    matmul = 2 * 8 * 16 * 3
    assert 2 * matmul <= flops < 2 * matmul + 400
    counted = {}
    assert step_cost.batch_flops(model, [(features, labels)] * 2, counted, "dense") == \
        [flops, flops]
    assert len(counted) == 1


def test_matmul_peak_reports_a_rate_in_the_compute_dtype():
    peak = step_cost.matmul_peak("mixed_bfloat16", size=64, warmup=1, repeats=2)
    assert peak["dtype"] == "bfloat16" and peak["size"] == 64
    assert peak["gflops_per_second"] > 0
