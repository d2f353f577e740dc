"""virt_tf.benchmarks.profiling and tools/profile_flops.py: FLOP counting, the online functions, the
report (tiny sizes)."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "profile_flops.py")


@pytest.fixture(scope="module")
def tool():
    from virt_tf.benchmarks import profiling
    return profiling


def tiny_config():
    from virt_tf.modeling.encoder import EncoderConfig
    return EncoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=24, max_position_embeddings=64)


B, Q, D, C = 3, 5, 11, 2  # batch, query pieces, passage pieces, labels


@pytest.fixture(scope="module")
def results(tool):
    return tool.profile(tiny_config(), batch=B, query_pieces=Q, doc_pieces=D, num_labels=C,
                        warmup=1, repeats=2, log=lambda s: None)


def test_count_flops_of_known_ops(tool):
    import keras
    import tensorflow as tf

    spec = tf.TensorSpec
    matmul = tf.function(tf.matmul).get_concrete_function(spec([3, 5]), spec([5, 7]))
    assert tool.count_flops(matmul) == 2 * 3 * 5 * 7
    batched = tf.function(lambda a, b: tf.matmul(a, b, transpose_b=True)).get_concrete_function(
        spec([2, 3, 5]), spec([2, 7, 5]))
    assert tool.count_flops(batched) == 2 * 2 * 3 * 5 * 7
    dense = keras.layers.Dense(4)
    dense.build((None, 6))
    fn = tf.function(lambda x: dense(x)).get_concrete_function(spec([2, 6]))
    assert tool.count_flops(fn) == 2 * 2 * 6 * 4 + 2 * 4  # variables frozen: kernel and bias
    with pytest.raises(ValueError, match="cannot count the FLOPs"):
        tool.count_flops(tf.function(tf.matmul).get_concrete_function(spec([None, 5]),
                                                                      spec([5, 7])))


def _matmul_flops_cross(c, batch, seq, labels):
    h, i, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    per_layer = seq * (4 * h * h + 2 * h * i) * 2 + 2 * seq * seq * h * 2
    return batch * (layers * per_layer + h * labels * 2)


def test_online_flops_match_the_matmul_count(results):
    """Matmuls dominate: the profiled count is at least theirs and not far above it."""
    c = tiny_config()
    m, n, h = Q + 2, D + 2, c.hidden_size
    expected = {
        "cross": _matmul_flops_cross(c, B, Q + D + 3, C),
        # Eq. 9 MLPs on 4h features
        "siamese": B * (4 * h * 4 * h * 2 + 4 * h * C * 2),
        # Eq. 8: two attentions each way (scores and weighted sum), plus Eq. 9
        "virt": B * (4 * m * n * h * 2 + 4 * h * 4 * h * 2 + 4 * h * C * 2),
        "dse": B * (4 * h * 4 * h * 2 + 4 * h * C * 2),
        # DeFormer: its last layer over the whole pair, then the classifier
        "deformer": _matmul_flops_cross(c, B, Q + D + 3, C) // c.num_hidden_layers,
    }
    for name, flops in expected.items():
        got = results["models"][name]["flops"]
        assert flops <= got <= 1.5 * flops, (name, got, flops)
    assert results["models"]["virt"]["flops"] > results["models"]["siamese"]["flops"]


def test_ratios_offline_cost_and_report(tool, results):
    from virt_tf.models import registry
    models = results["models"]
    assert list(models) == list(registry.MODELS)
    assert models["cross"]["flops_ratio"] == 1.0 and models["cross"]["latency_ratio"] == 1.0
    for name in [n for n in models if n != "cross"]:
        m = models[name]
        assert m["flops_ratio"] == pytest.approx(models["cross"]["flops"] / m["flops"])
        assert m["flops_ratio"] > 1
        assert m["latency_ratio"] == pytest.approx(models["cross"]["latency_ms"] / m["latency_ms"])
        assert m["flops_per_pair"] == pytest.approx(m["flops"] / B)
        assert len(m["latency_ms_all"]) == 2 and m["latency_ms"] > 0
    assert results["positions"] == {"cross_pair": Q + D + 3, "dual_query": Q + 2,
                                    "dual_doc": D + 2}
    assert {n: m["offline_layers"] for n, m in models.items()} == {
        n: (0 if n == "cross" else 1 if n == "deformer" else 2) for n in models}
    assert results["offline_encode_1_layers"]["layers"] == 1
    enc = results["offline_encode"]
    assert enc["passage"]["flops_per_text"] > enc["query"]["flops_per_text"] > 0
    assert enc["query"]["flops_per_text"] == pytest.approx(enc["query"]["batch_flops"] / B)
    # the pair is longer than the passage alone, so the cross-encoder costs more than encode
    assert models["cross"]["flops_per_pair"] > enc["passage"]["flops_per_text"]
    table = tool.format_table(results, "tiny")
    for name in models:
        assert f"\n{name} " in table
    assert "offline encode" in table and "L=2 H=16 A=4" in table
    assert tool.format_flops(66.9e9) == "66.9G" and tool.format_flops(2.5e7) == "25M"


def test_variants_with_run_options_and_no_offline_part(tool):
    """A model with run options (the [u; v] head) is profiled under its own key."""
    out = tool.profile(tiny_config(), {"teacher": ("cross", {}), "siamese": ("siamese", {}),
                                       "concat": ("siamese", {"fusion": "concat"})},
                       batch=B, query_pieces=Q, doc_pieces=D, num_labels=C, warmup=0,
                       repeats=1, log=lambda s: None, offline=False)
    models = out["models"]
    assert list(models) == ["teacher", "siamese", "concat"]
    assert models["concat"]["model"] == "siamese"
    assert models["concat"]["options"] == {"fusion": "concat"}
    h = tiny_config().hidden_size
    # [u; v] is 2h wide: MLP1 (2h x 2h) and MLP2 (2h x C), less than Eq. 9's 4h features
    assert 2 * h * 2 * h * 2 + 2 * h * C * 2 <= models["concat"]["flops_per_pair"] < models[
        "siamese"]["flops_per_pair"]
    assert models["teacher"]["flops_ratio"] == 1.0  # the cross-encoder found by its model
    for m in models.values():
        assert m["latency_ms_per_pair"] == pytest.approx(m["latency_ms"] / B)
    assert not any(k.startswith("offline_encode") for k in out)


def test_bad_arguments(tool):
    with pytest.raises(ValueError, match="unknown model"):
        tool.profile(tiny_config(), models=["bm25"])
    with pytest.raises(ValueError, match="positions"):
        tool.profile(tiny_config(), query_pieces=30, doc_pieces=40)


def test_command_line(tmp_path):
    out = tmp_path / "flops.json"
    result = subprocess.run(
        [sys.executable, TOOL, "--encoder=tiny", "--models=cross,virt", "--batch_size=2",
         "--query_pieces=4", "--doc_pieces=12", "--warmup=0", "--repeats=1",
         f"--output={out}"],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FLOPs ratio" in result.stdout and "latency ratio" in result.stdout
    data = json.loads(out.read_text())
    assert data["encoder"] == "tiny" and sorted(data["models"]) == ["cross", "virt"]
    assert data["models"]["virt"]["flops_ratio"] > 1
