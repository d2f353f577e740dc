"""Scale-out with tf.distribute: the strategy of a run and its sharded input.

``--distribution_strategy`` picks one, as TF Model Garden's ``distribute_utils``:

* ``default``: no distribution (one device);
* ``mirrored``: `tf.distribute.MirroredStrategy` over this machine's GPUs (or,
  with ``--cpu_devices=N``, over N logical CPU devices: tests, debugging);
* ``multi_worker_mirrored``: `tf.distribute.MultiWorkerMirroredStrategy`; the
  cluster and this process's role come from the ``TF_CONFIG`` environment variable;
* ``tpu``: `tf.distribute.TPUStrategy` on the TPU at ``--tpu`` (an address or name).

The batch size of a run is the *global* batch. Each input pipeline (one per
worker) reads only its replicas' share of every global batch
(`distributed_stream`), in the order a single device would see it: global
batch ``k`` is row ``k`` of `virt_tf.data.pipeline.batch_plan`, split into
consecutive per-replica slices. `VirtModel` averages every loss term over the
global batch, so the replicas' summed gradients equal one device's.
"""
import json
import os

import numpy as np
import tensorflow as tf

from virt_tf.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")


def split_cpu(devices):
    """Split the CPU into ``devices`` logical devices (before TensorFlow initialises it)."""
    cpus = tf.config.list_physical_devices("CPU")
    if devices and devices > 1:
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(devices)])
        except RuntimeError as e:  # already initialised: only an error if it differs
            if len(tf.config.list_logical_devices("CPU")) != devices:
                raise ConfigError(f"cannot split the CPU into {devices} devices after "
                                  f"TensorFlow started: {e}") from e


def get_strategy(name="default", tpu=None, cpu_devices=None):
    """The `tf.distribute.Strategy` of ``name`` (see the module docstring)."""
    if name not in STRATEGIES:
        raise ConfigError(f"distribution_strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        split_cpu(cpu_devices)
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker_mirrored":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("multi_worker_mirrored needs the TF_CONFIG environment variable "
                              "(the cluster and this worker's task)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as e:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {e}") from e
        split_cpu(cpu_devices)
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not tpu:
        raise ConfigError("--distribution_strategy=tpu needs --tpu (the TPU's address or name)")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """True for the worker that writes the model directory (always, without a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker"
                                             and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())


def replica_slices(plan, num_replicas, first, count):
    """Per-replica index batches for replicas ``first .. first+count-1`` of every global batch.

    ``plan``: int `[steps, global_batch]`; returns `[steps * count, global_batch /
    num_replicas]`: step ``k``'s slices for those replicas, in replica order.
    """
    steps, batch = plan.shape
    if batch % num_replicas:
        raise ConfigError(f"the global batch {batch} does not split over {num_replicas} "
                          "replicas: use a multiple")
    per = batch // num_replicas
    shaped = plan.reshape(steps, num_replicas, per)[:, first:first + count]
    return shaped.reshape(steps * count, per)


def distributed_stream(strategy, pairs, preprocessor, plan):
    """A `DistributedDataset` of ``plan``'s global batches, each replica reading its slice.

    ``pairs`` is a `TokenizedPairs`; ``plan`` the global batches' example indices
    (`batch_plan`, from the resumed step on). Each input pipeline (one per worker)
    yields only the slices of its own replicas: the data is sharded explicitly
    (no tf.data auto-sharding), in the same order as on one device. Every slice
    of a global batch is padded to that global batch's longest member, as one
    device would pad it: all replicas see the same shapes, and padding never
    depends on the number of replicas.
    """
    replicas = strategy.num_replicas_in_sync
    steps, batch = plan.shape
    replica_slices(plan[:1], replicas, 0, replicas)  # checks that the batch splits
    per = batch // replicas
    a, b, labels = pairs.a, pairs.b, tf.constant(pairs.labels)
    logits = None if pairs.teacher_logits is None else tf.constant(pairs.teacher_logits)

    @tf.autograph.experimental.do_not_convert  # graph ops only (see BertPairPreprocessor)
    def make(indices, replica):
        packed = preprocessor.pack(tf.gather(a, indices), tf.gather(b, indices))
        if logits is not None:
            packed["teacher_logits"] = tf.gather(logits, indices)
        rows = tf.range(replica * per, (replica + 1) * per)
        return (tf.nest.map_structure(lambda t: tf.gather(t, rows), packed),
                tf.gather(labels, tf.gather(indices, rows)))

    def dataset_fn(context):
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local
        # step k's global batch once for each local replica, in replica order
        global_rows = np.repeat(plan.astype(np.int64), local, axis=0)
        replica = np.tile(np.arange(first, first + local, dtype=np.int64), steps)
        ds = tf.data.Dataset.from_tensor_slices((global_rows, replica))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.OFF
        ds = ds.with_options(options).map(make, num_parallel_calls=tf.data.AUTOTUNE,
                                          deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(
        dataset_fn, tf.distribute.InputOptions(experimental_fetch_to_device=True))
