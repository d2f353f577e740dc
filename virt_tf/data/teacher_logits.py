"""The frozen teacher's logits of every training pair, computed once a stage.

A teacher that only feeds logit distillation (no term reads its attention scores)
gives the same logits for a pair at every step: it is frozen and runs in inference
mode. `cached_teacher_logits` computes them once, in batches of similar length, and
stores them beside the run (`virt_tf.rundir.TEACHER_LOGITS_FILE`) keyed by the training
data's fingerprint, the teacher's weights and the length budget; the training stream then
carries each batch's rows (`TokenizedPairs.teacher_logits`), so a distillation step
costs what a step of the student alone costs. A resume reuses the file; any other
data, teacher or length recomputes it.
"""
import os

import numpy as np
import tensorflow as tf

from virt_tf import rundir


def teacher_logits(teacher, pairs, preprocessor, batch_size=64):
    """Logits `[len(pairs), num_labels]` float32 of ``teacher`` (a joint classifier that
    reads the ``pair`` packing) on every pair of ``pairs`` (`TokenizedPairs`), in order.

    Pairs are scored in batches of similar length (padding is masked, so the batching
    does not change a pair's logits beyond float rounding)."""
    n = len(pairs)
    out = np.zeros((n, teacher.num_labels), np.float32)
    if n == 0:
        return out
    order = np.argsort(pairs.lengths, kind="stable")
    plan = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    a, b = pairs.a, pairs.b

    @tf.function(reduce_retracing=True)
    def run(indices):
        packed = preprocessor.pack(tf.gather(a, indices), tf.gather(b, indices))
        return tf.cast(teacher(packed, training=False), tf.float32)

    for rows in plan:
        out[rows] = run(tf.constant(rows, tf.int64)).numpy()
    return out


def cached_teacher_logits(directory, teacher, pairs, preprocessor, key, write=True):
    """`teacher_logits`, read from ``directory``'s `TEACHER_LOGITS_FILE` when it was written for
    the same ``key`` (a dict of strings: data fingerprint, teacher fingerprint, length
    budget), else computed and (when ``write``) stored there atomically.

    Returns `(logits, reused)`."""
    path = rundir.path(directory, rundir.TEACHER_LOGITS_FILE)
    key = {k: str(v) for k, v in key.items()}
    if os.path.exists(path):
        with np.load(path) as saved:
            saved_key = {k[4:]: str(saved[k]) for k in saved.files if k.startswith("key_")}
            if saved_key == key and saved["logits"].shape[0] == len(pairs):
                return saved["logits"].astype(np.float32), True
    logits = teacher_logits(teacher, pairs, preprocessor)
    if write:
        rundir.write_npz(path, logits=logits, **{f"key_{k}": np.array(v) for k, v in key.items()})
    return logits, False

