"""What a training step computes and what the machine could compute: the step's FLOPs and
a matmul peak, for the benchmark's achieved GFLOP/s and its fraction of the peak.

* `step_flops`: FLOPs of one training step of a `VirtModel` on one batch: the forward pass
  (the teacher's too, when the objective runs it) and the backward pass of the student,
  counted by `tf.profiler` on the gradient graph itself
  (`virt_tf.benchmarks.profiling.count_flops`: a multiply-add is 2 FLOPs, ops without a
  FLOP statistic such as gathers and GELU's erf count 0); the optimizer's update
  (element-wise, a few FLOPs a parameter) is not counted;
* `batch_flops`: those FLOPs for each of a list of batches, counted once a batch shape;
* `matmul_peak`: GFLOP/s of a square TensorFlow matmul in a precision's compute dtype,
  the median of a few calls (the achievable rate of the step's dominant op here).
"""
import statistics
import time

import tensorflow as tf

from virt_tf.benchmarks.profiling import count_flops

# What `step_flops` counts, as the results record it.
FLOPS_COUNTED = ("tf.profiler on the gradient graph: forward (teacher and student) + "
                 "backward (student), at each batch's padded lengths; optimizer not counted")

# The dtype a precision policy multiplies in.
COMPUTE_DTYPES = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16,
                  "mixed_float16": tf.float16}


def _spec(tensor):
    return tf.TensorSpec(tensor.shape, tensor.dtype)


def step_flops(model, features, labels):
    """FLOPs of one training step of ``model`` (a compiled `VirtModel`) on ``features`` and
    ``labels`` (one batch, static shapes): forward and backward, as `tf.profiler` counts them
    on the graph that computes the loss and the student's gradients."""
    variables = model.student.trainable_variables

    def gradients(features, labels):
        with tf.GradientTape() as tape:
            loss = model.compute_losses(features, labels, training=True)["loss"]
        return tape.gradient(loss, variables)

    specs = tf.nest.map_structure(_spec, (features, labels))
    # the function's own graph: dropout's random state would not freeze into constants
    return count_flops(tf.function(gradients).get_concrete_function(*specs), freeze=False)


def _shape_key(batch):
    return tuple(tuple(t.shape) for t in tf.nest.flatten(batch))


def batch_flops(model, batches, counted=None, key=()):
    """`step_flops` of each ``(features, labels)`` of ``batches`` (a list), counted once for
    each distinct set of shapes; a list of ints in the order of ``batches``. ``counted``
    (a dict) keeps the counts across calls, under ``key`` (what else decides the graph: the
    model's name...) and the shapes."""
    counted, out = ({} if counted is None else counted), []
    for features, labels in batches:
        shapes = (key, _shape_key((features, labels)))
        if shapes not in counted:
            counted[shapes] = step_flops(model, features, labels)
        out.append(counted[shapes])
    return out


def matmul_peak(precision, size=2048, warmup=2, repeats=5):
    """``{"dtype", "size", "gflops_per_second"}``: a ``size`` x ``size`` by ``size`` x
    ``size`` `tf.matmul` in the compute dtype of ``precision`` (2 size**3 FLOPs), the median
    rate of ``repeats`` calls after ``warmup``."""
    dtype = COMPUTE_DTYPES[precision]
    a = tf.cast(tf.random.stateless_normal([size, size], [0, 1]), dtype)
    b = tf.cast(tf.random.stateless_normal([size, size], [2, 3]), dtype)
    # a sum of the product: waits for it without copying it out
    product = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32)))
    for _ in range(warmup):
        product(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()
        times.append(time.perf_counter() - start)
    return {"dtype": dtype.name, "size": size,
            "gflops_per_second": 2 * size ** 3 / statistics.median(times) / 1e9}

