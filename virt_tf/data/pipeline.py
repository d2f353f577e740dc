"""tf.data pipelines: strings -> preprocessed, per-batch padded id packings."""
import numpy as np
import tensorflow as tf


def _columns(examples):
    a = np.array([e.text_a for e in examples], dtype=object)
    b = np.array([e.text_b for e in examples], dtype=object)
    y = np.array([e.label for e in examples], dtype=np.int32)
    return a, b, y


def epoch_order(n, epochs, seed):
    """Example indices for ``epochs`` passes, each a seeded permutation (resumable)."""
    rng = np.random.RandomState(seed)
    return np.concatenate([rng.permutation(n) for _ in range(epochs)])


def training_stream(examples, preprocessor, batch_size, epochs, seed, start_step=0):
    """The whole training run as one deterministic stream of batches.

    Batches are taken from the concatenation of ``epochs`` seeded permutations,
    so that batch ``k`` is the same in every run of the same seed and a resumed
    run can start at ``start_step`` with the same data order.
    Yields `(features, labels)`; features as `BertPairPreprocessor.__call__`.
    """
    a, b, y = _columns(examples)
    order = epoch_order(len(examples), epochs, seed)
    order = order[start_step * batch_size:]
    ds = tf.data.Dataset.from_tensor_slices((a[order].astype(str), b[order].astype(str),
                                             y[order]))
    ds = ds.batch(batch_size)
    ds = ds.map(lambda ta, tb, lab: (preprocessor(ta, tb), lab),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(num_examples, batch_size):
    return max(1, num_examples // batch_size)


def eval_dataset(examples, preprocessor, batch_size, sort_by_length=True):
    """Evaluation batches; sorted by length (less padding) unless told otherwise.

    Returns `(dataset, order)`: ``order[i]`` is the index in ``examples`` of the
    i-th row the dataset yields, to map predictions back.
    """
    a, b, y = _columns(examples)
    order = np.arange(len(examples))
    if sort_by_length:
        lengths = np.array([len(x) + len(z) for x, z in zip(a, b)])
        order = np.argsort(lengths, kind="stable")
    ds = tf.data.Dataset.from_tensor_slices((a[order].astype(str), b[order].astype(str),
                                             y[order]))
    ds = ds.batch(batch_size).map(lambda ta, tb, lab: (preprocessor(ta, tb), lab),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE), order
