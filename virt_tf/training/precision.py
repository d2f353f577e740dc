"""Compute precision: the policies, ``--precision=auto`` and float16 loss scaling.

Policies (Keras dtype policies; the variables always stay float32):

- ``float32``: everything in float32 (the default of the reproduction grid: results do not
  depend on the machine that ran them).
- ``mixed_bfloat16``: matmuls in bfloat16 (Ampere+ GPUs, TPUs, CPUs with AVX512_BF16 or AMX).
- ``mixed_float16``: matmuls in float16 (tensor cores of V100 / T4 / 2080Ti-class GPUs) with
  dynamic loss scaling (`StepCountingLossScaleOptimizer`): float16's range is small, so the
  loss is multiplied by a scale before the gradients are taken and the gradients divided by
  it before the update; a step whose scaled gradients overflow is skipped and the scale
  halved.
- ``auto``: one of the three, chosen from the hardware (`choose_precision`).

Softmaxes of the losses, every loss term and L_virt are computed in float32 under every
policy (`virt_tf.losses` casts); under float16 the attention softmaxes of the encoder are
float32 too (`virt_tf.modeling.layers.attention`).

Counting steps when a float16 step is skipped
---------------------------------------------
`StepCountingLossScaleOptimizer` has two counters:

- ``iterations`` (its own variable): *batches consumed*, one per train step, applied or
  skipped. Everything that positions the run in its data uses it: the batch plan
  (`virt_tf.data.pipeline.batch_plan`, one row per batch), the epoch boundaries, the
  checkpoint numbers, ``--checkpoint_steps``, the training log and the resume point. So a
  resumed run restarts at the batch after the last one the checkpoint has seen, and
  `total_steps` batches are read whatever the number of skips.
- ``applied_steps`` (the inner Adam's ``iterations``): updates actually applied. The
  learning-rate schedule (`WarmupLinearDecay`) and Adam's bias correction read this one
  (Keras evaluates the inner optimizer's schedule at the inner optimizer's own counter), so
  a skipped step does not advance the warmup or the decay: the next applied update gets the
  learning rate the skipped one would have had. A run with ``k`` skipped steps thus ends
  ``k`` steps short of the end of the decay (its last learning rate is
  ``peak * k / decay_steps`` rather than 0); with the default growth interval skips happen
  in the first steps, while the scale falls from 2^15 to a value that fits.

Both counters, the loss scale and its growth counter are variables of the optimizer, so
`tf.train.Checkpoint` saves and restores them: a resumed float16 run continues with the
same scale and is bit-identical to an uninterrupted one.

The CPU's instruction-set flags are read through `cpu_flags`, one function that tests
replace (``monkeypatch.setattr(precision, "cpu_flags", ...)``); GPUs through
`gpu_compute_capabilities`.
"""
import contextlib

from virt_tf.errors import ConfigError

# Keras and TensorFlow are imported inside the functions that use them: the option schema
# (`virt_tf.options`, read before a command loads TensorFlow, for fast flag errors) and the
# grid planner (`cpu_flags`) read this module without them.

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
CHOICES = POLICIES + ("auto",)

# Keras' defaults: the scale starts high and halves on each overflow; it doubles after
# this many applied steps without one.
INITIAL_LOSS_SCALE = 2.0 ** 15
DYNAMIC_GROWTH_STEPS = 2000

# CPU flags (as /proc/cpuinfo spells them) that give bfloat16 matmul instructions.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def read_cpu_flags(path="/proc/cpuinfo"):
    """The instruction-set flags of the first CPU in ``path`` (Linux), lower case.

    Returns a frozenset; empty where the file does not exist (other systems): `auto`
    then does not pick bfloat16 on the CPU.
    """
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].lower().split())
    except OSError:
        pass
    return frozenset()


def cpu_flags():
    """The CPU's instruction-set flags. The one place they are read: tests replace it."""
    return read_cpu_flags()


def gpu_compute_capabilities():
    """``[(name, (major, minor)), ...]`` of the visible GPUs (empty without a GPU)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (tensorflow: this module stays light)
    out = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capability = details.get("compute_capability")
        if capability is not None:
            out.append((details.get("device_name", device.name), tuple(capability)))
    return out


def choose_precision(gpus, flags):
    """``(policy, reason)`` for ``--precision=auto``.

    Args:
      gpus: ``[(name, (major, minor)), ...]`` as `gpu_compute_capabilities` returns.
      flags: the CPU's flags (a set of strings) as `cpu_flags` returns.

    bfloat16 on GPUs of compute capability 8.0 or more (Ampere and later: bfloat16
    tensor cores), float16 on older GPUs (Volta/Turing tensor cores run float16 only),
    bfloat16 on a CPU with AVX512_BF16 or AMX, float32 elsewhere. With several GPUs the
    oldest decides (the strategy runs one policy on all).
    """
    if gpus:
        name, capability = min(gpus, key=lambda g: g[1])
        text = f"{name}, compute capability {capability[0]}.{capability[1]}"
        if capability >= (8, 0):
            return "mixed_bfloat16", f"GPU {text} >= 8.0 has bfloat16 tensor cores"
        return "mixed_float16", f"GPU {text} < 8.0: tensor cores run float16, not bfloat16"
    found = sorted(f for f in BF16_CPU_FLAGS if f in flags)
    if found:
        return "mixed_bfloat16", f"no GPU; the CPU has {', '.join(found)} (bfloat16 matmuls)"
    return "float32", ("no GPU; the CPU has no bfloat16 matmul instructions "
                       f"({' or '.join(BF16_CPU_FLAGS)}): reduced precision would be slower")


def resolve_precision(requested):
    """``(policy, reason)``: ``requested`` itself, or for ``auto`` the hardware's choice."""
    if requested in (None, ""):
        requested = "float32"
    if requested not in CHOICES:
        raise ConfigError(f"precision must be one of {CHOICES}, got {requested!r}")
    if requested != "auto":
        return requested, "asked for"
    return choose_precision(gpu_compute_capabilities(), cpu_flags())


def uses_loss_scaling(policy):
    """Whether ``policy`` trains with dynamic loss scaling (float16)."""
    return policy == "mixed_float16"


def _loss_scale_class():
    import keras  # pylint: disable=import-outside-toplevel  (tensorflow: this module stays light)

    @keras.saving.register_keras_serializable(package="virt_tf")
    class StepCountingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
        """Keras' dynamic `LossScaleOptimizer` whose ``iterations`` counts batches.

        Keras' own returns the inner optimizer's ``iterations``, which a skipped step
        does not advance; here ``iterations`` advances on every `apply` (skipped or not)
        and ``applied_steps`` is the inner optimizer's count (see the module docstring).
        """

        @property
        def iterations(self):
            return self._iterations

        @property
        def applied_steps(self):
            return self.inner_optimizer.iterations

        def apply(self, grads, trainable_variables=None):
            super().apply(grads, trainable_variables)
            self._iterations.assign_add(1)

    return StepCountingLossScaleOptimizer


_LOSS_SCALE_CLASS = []


def loss_scale_optimizer_class():
    """The `StepCountingLossScaleOptimizer` class (defined on first use: imports Keras)."""
    if not _LOSS_SCALE_CLASS:
        _LOSS_SCALE_CLASS.append(_loss_scale_class())
    return _LOSS_SCALE_CLASS[0]


def wrap_optimizer(optimizer, policy, initial_scale=INITIAL_LOSS_SCALE,
                   growth_steps=DYNAMIC_GROWTH_STEPS):
    """``optimizer`` under ``mixed_float16`` wrapped for dynamic loss scaling; else itself."""
    if not uses_loss_scaling(policy):
        return optimizer
    return loss_scale_optimizer_class()(optimizer, initial_scale=initial_scale,
                                        dynamic_growth_steps=growth_steps)


def applied_steps(optimizer):
    """Updates applied by ``optimizer`` (int): skipped float16 steps are not counted."""
    counter = getattr(optimizer, "applied_steps", None)
    return int((counter if counter is not None else optimizer.iterations).numpy())


def loss_scale(optimizer):
    """The current dynamic loss scale (float), or None for an optimizer without one."""
    scale = getattr(optimizer, "dynamic_scale", None)
    return None if scale is None else float(scale.numpy())


def describe(policy, reason):
    """The log line of the chosen precision."""
    return f"precision {policy} ({reason})"


def resolved(policy, reason=None):
    """``(policy, reason)``: ``auto`` resolved from the hardware; any other policy (None:
    float32) kept, with ``reason`` (default: asked for). A training run resolves ``auto``
    once (`virt_tf.training.pipeline`) and gives every stage the policy and its reason."""
    policy = policy or "float32"
    if policy == "auto":
        return resolve_precision(policy)
    return policy, reason or "asked for"


@contextlib.contextmanager
def precision_scope(policy):
    """Keras' global dtype policy (``float32``, ``mixed_bfloat16`` or ``mixed_float16``)
    while building models.

    Under ``mixed_bfloat16`` / ``mixed_float16`` matmuls run in bfloat16 / float16 and
    the variables stay float32; the losses (`virt_tf.losses`) cast to float32, so
    softmaxes of the loss, L_virt and the cross-entropy are float32.
    """
    import keras  # pylint: disable=import-outside-toplevel  (tensorflow: this module stays light)
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy or "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def overflow_injector(step, factor=2.0 ** 100):
    """Testing only (``--debug_overflow_at_step``): a Keras callback that makes the scaled
    gradients of train step ``step`` (1-based, counted in batches) overflow.

    Before the step it multiplies the dynamic loss scale by ``factor`` (a power of two),
    so the float16 gradients of that step are Inf, as a real overflow leaves them; the
    optimizer then skips the step and halves the scale itself. After the step the
    factor is divided out again, so the run goes on at half the scale it had.
    """
    import keras  # pylint: disable=import-outside-toplevel  (tensorflow: this module stays light)

    class InjectOverflow(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.injected = False

        def on_train_batch_begin(self, batch, logs=None):
            opt = self.model.optimizer
            if int(opt.iterations.numpy()) + 1 == int(step):
                opt.dynamic_scale.assign(opt.dynamic_scale * factor)
                self.injected = True

        def on_train_batch_end(self, batch, logs=None):
            if self.injected:
                opt = self.model.optimizer
                opt.dynamic_scale.assign(opt.dynamic_scale / factor)
                self.injected = False

    return InjectOverflow()
