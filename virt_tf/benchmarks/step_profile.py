"""Where a training step's time goes: its ops' self times from a `tf.profiler` trace, and
a split timing of its three parts.

* `trace_ops`: runs a callable under `tf.profiler.experimental` into a folder and reads the
  trace back (the ``.xplane.pb`` of the host CPU): one `OpTime` a TensorFlow op run on an
  executor thread (input pipeline threads left out), with its *self* time (its duration
  less that of the ops nested in it on its thread); calls of functions (the
  ``StatefulPartitionedCall`` that holds the whole step) only contain the others and are
  left out;
* `phase`: the part of the step an op belongs to, from its name: ``optimizer`` (under the
  optimizer's name scope), ``backward`` (``gradient_tape/``), else ``forward`` (the forward
  passes, the loss, the metrics);
* `op_table`, `phase_table`: op time by op type (the top ones, then the rest) and by part,
  per step, with each row's share of all op time (the shares sum to 100%);
* `split_timing`: seconds of the forward pass alone, of forward and backward (the
  gradients), and of the optimizer's update alone, each a `tf.function` over the same
  batches;
* `to_markdown`: the profile as markdown tables, as the benchmark's report carries it.

Op time is summed over the executor's threads, so with ops running side by side it can
exceed the wall time; the shares are of op time.
"""
import collections
import dataclasses
import glob
import os
import re
import statistics
import time

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

# Ops that call a function: their time is that of the ops inside, reported on their own.
CALL_OPS = frozenset({"StatefulPartitionedCall", "PartitionedCall", "While", "StatelessWhile",
                      "If", "StatelessIf", "Case", "StatelessCase"})
HOST_PLANE = "/host:CPU"
PHASES = ("forward", "backward", "optimizer")
_OP_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class OpTime:
    """One run of an op: its node ``name``, its ``op_type`` and its self time in seconds."""
    name: str
    op_type: str
    seconds: float


def _op_of(event_name):
    """``(name, op_type)`` of a trace event named ``name:OpType``, or None (other events)."""
    name, sep, op_type = event_name.rpartition(":")
    if not sep or not name or " " in event_name or "::" in event_name:
        return None
    return (name, op_type) if _OP_TYPE.match(op_type) else None


def read_xspace(folder):
    """The newest ``.xplane.pb`` trace under ``folder`` (a `tf.profiler` log folder)."""
    files = sorted(glob.glob(os.path.join(folder, "plugins", "profile", "*", "*.xplane.pb")))
    if not files:
        raise RuntimeError(f"no .xplane.pb trace under {folder}")
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as f:
        space.ParseFromString(f.read())
    return space


def op_times(space):
    """Every op run of the host CPU plane of ``space`` as `OpTime`, self times."""
    out = []
    for plane in space.planes:
        if plane.name != HOST_PLANE:
            continue
        for line in plane.lines:
            if line.name.startswith("tf_data"):  # the input pipeline's threads
                continue
            runs = []
            for event in line.events:
                op = _op_of(plane.event_metadata[event.metadata_id].name)
                if op:
                    runs.append((event.offset_ps, event.duration_ps, op))
            runs.sort(key=lambda r: (r[0], -r[1]))
            self_ps = [r[1] for r in runs]
            open_runs = []  # indices of the enclosing runs, innermost last
            for i, (start, duration, _) in enumerate(runs):
                while open_runs and runs[open_runs[-1]][0] + runs[open_runs[-1]][1] <= start:
                    open_runs.pop()
                if open_runs:
                    self_ps[open_runs[-1]] -= duration
                open_runs.append(i)
            out += [OpTime(name, op_type, max(ps, 0) / 1e12)
                    for (_, _, (name, op_type)), ps in zip(runs, self_ps)
                    if op_type not in CALL_OPS]
    return out


def trace_ops(run, folder):
    """`op_times` of ``run()`` traced by `tf.profiler` into ``folder``."""
    tf.profiler.experimental.start(folder)
    try:
        run()
    finally:
        tf.profiler.experimental.stop()
    return op_times(read_xspace(folder))


def phase(op_name, optimizer_scopes):
    """``optimizer``, ``backward`` or ``forward``: the part of the step op ``op_name`` is
    in (``optimizer_scopes``: the name scopes of the optimizer, e.g. ``{"adam"}``)."""
    parts = op_name.split("/")
    if "gradient_tape" in parts:
        return "backward"
    # anywhere in the name: a loss-scaling optimizer applies its inner one in a `tf.cond`
    # branch (``cond/then/_1/cond/adam/...``)
    if optimizer_scopes & set(parts):
        return "optimizer"
    return "forward"


def _rows(groups, total, steps):
    return [{"ms_per_step": 1000 * seconds / steps,
             "share": seconds / total if total else 0.0, **key} for key, seconds in groups]


def op_table(ops, steps, top=15):
    """Op time by op type, per step, largest first: the ``top`` types, then one row for the
    rest; each row ``{"op_type", "ms_per_step", "share", "runs_per_step"}``."""
    seconds, runs = collections.Counter(), collections.Counter()
    for op in ops:
        seconds[op.op_type] += op.seconds
        runs[op.op_type] += 1
    total = sum(seconds.values())
    ranked = seconds.most_common()
    rows = _rows([({"op_type": t, "runs_per_step": runs[t] / steps}, s)
                  for t, s in ranked[:top]], total, steps)
    rest = ranked[top:]
    if rest:
        rows += _rows([({"op_type": f"other ({len(rest)} types)",
                         "runs_per_step": sum(runs[t] for t, _ in rest) / steps},
                        sum(s for _, s in rest))], total, steps)
    return rows


def phase_table(ops, steps, optimizer_scopes):
    """Op time by part of the step (`PHASES`), per step: ``{"phase", "ms_per_step",
    "share"}`` rows."""
    seconds = collections.Counter({p: 0.0 for p in PHASES})
    for op in ops:
        seconds[phase(op.name, optimizer_scopes)] += op.seconds
    total = sum(seconds.values())
    return _rows([({"phase": p}, seconds[p]) for p in PHASES], total, steps)


def optimizer_scopes(optimizer):
    """The name scopes ``optimizer``'s ops run under: its name, and its inner optimizer's
    (a loss-scaling optimizer wraps one)."""
    scopes = {optimizer.name}
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        scopes.add(inner.name)
    return scopes


def _wait(out):
    """Read every tensor of ``out`` (gradients may be `tf.IndexedSlices`)."""
    for t in tf.nest.flatten(out, expand_composites=True):
        t.numpy()


def _median_pass(fn, batches, repeats):
    """Median over ``repeats`` passes of the mean seconds of ``fn(batch)`` over ``batches``
    (after one untimed pass: tracing)."""
    for batch in batches:
        _wait(fn(batch))
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            _wait(fn(batch))
        passes.append((time.perf_counter() - start) / len(batches))
    return statistics.median(passes)


def split_timing(model, batches, repeats=3):
    """Seconds per step of the parts of ``model``'s (a compiled `VirtModel`) training step
    on ``batches`` (a list of ``(features, labels)``): ``forward`` (the losses),
    ``forward_backward`` (the losses and the student's gradients) and ``optimizer`` (the
    update alone, from gradients computed beforehand). Each is a `tf.function` (under XLA
    when the model is compiled so); the update changes the model's weights."""
    variables = model.student.trainable_variables
    optimizer = model.optimizer
    jit = bool(getattr(model, "jit_compile", False))

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def forward(batch):
        return model.compute_losses(batch[0], batch[1], training=True)["loss"]

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def gradients(batch):
        with tf.GradientTape() as tape:
            loss = optimizer.scale_loss(
                model.compute_losses(batch[0], batch[1], training=True)["loss"])
        return tape.gradient(loss, variables)

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def update(grads):
        optimizer.apply_gradients(zip(grads, variables))
        return optimizer.iterations

    grads = [gradients(b) for b in batches]
    return {"forward": _median_pass(forward, batches, repeats),
            "forward_backward": _median_pass(gradients, batches, repeats),
            "optimizer": _median_pass(update, grads, repeats)}


def to_markdown(profile):
    """The profile (`virt_tf.benchmarks.timing.profile_step`'s dict) as markdown: the parts
    of the step, the top op types, the split timing."""
    steps = profile["steps"]
    lines = [f"Op self time over {steps} traced step(s), {profile['op_ms_per_step']:.1f} ms "
             f"of op time a step ({profile['wall_ms_per_step']:.1f} ms wall):", "",
             "| part | ms/step | share |", "|---|---|---|"]
    lines += [f"| {r['phase']} | {r['ms_per_step']:.2f} | {100 * r['share']:.1f}% |"
              for r in profile["phases"]]
    lines += ["", "| op type | ms/step | share | runs/step |", "|---|---|---|---|"]
    lines += [f"| {r['op_type']} | {r['ms_per_step']:.2f} | {100 * r['share']:.1f}% | "
              f"{r['runs_per_step']:.0f} |" for r in profile["ops"]]
    split = profile.get("split")
    if split:
        lines += ["", "| split timing | ms/step |", "|---|---|"]
        lines += [f"| {name.replace('_', ' + ')} | {1000 * seconds:.1f} |"
                  for name, seconds in split.items()]
    return "\n".join(lines)
