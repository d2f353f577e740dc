"""The predictions a run saves when it ends (``predictions.npz``), read without TensorFlow.

A run writes its evaluation split's probabilities, labels, split name and a fingerprint of
the pairs (`save_predictions`); paired tests (the screen, the grid report,
``tools/compare_runs.py --saved``) read them back here, with no model loaded.
"""
import os

import numpy as np

from virt_tf import rundir
from virt_tf.errors import ConfigError
from virt_tf.rundir import PREDICTIONS_FILE, fingerprint_examples


def save_predictions(directory, split, probs, examples):
    """Write ``directory/predictions.npz``: ``probs`` `[n, num_labels]` of ``examples``
    (the ``split`` scored), their labels and fingerprint, for paired comparisons without
    re-scoring."""
    rundir.write_npz(rundir.path(directory, PREDICTIONS_FILE),
                     probs=probs.astype(np.float32), split=np.array(split),
                     labels=np.array([e.label for e in examples], np.int32),
                     fingerprint=np.array(fingerprint_examples(examples)))


def read_probs(run_dir):
    """``(probabilities, labels, split, fingerprint)`` of a run, or None without a file
    (split and fingerprint are None in a file written without them)."""
    path = rundir.path(run_dir, PREDICTIONS_FILE)
    if not os.path.exists(path):
        return None
    with np.load(path) as data:
        named = {k: str(data[k]) if k in data.files else None for k in ("split", "fingerprint")}
        return data["probs"], data["labels"], named["split"], named["fingerprint"]


def load_predictions(directory, split=None, examples=None):
    """``(probs, labels)`` saved by training, or None when absent, or saved for another
    ``split`` or other ``examples`` than those asked for."""
    saved = read_probs(directory)
    if saved is None:
        return None
    probs, labels, saved_split, fingerprint = saved
    if split is not None and saved_split != split:
        return None
    if examples is not None and fingerprint != fingerprint_examples(examples):
        return None
    return probs, labels


def read(run_dir):
    """``(predicted classes, labels, split, fingerprint)`` of a run, or None without a file."""
    saved = read_probs(run_dir)
    if saved is None:
        return None
    return (saved[0].argmax(axis=-1),) + saved[1:]


def read_same_pairs(run_dirs):
    """The predictions several runs saved on the same pairs.

    Returns ``(classes, labels, split)``: ``classes`` maps each directory to its predicted
    class per pair. Raises ``ConfigError`` when a run saved none, or when two runs saved
    predictions of different splits or pairs (a paired test needs the same pairs).
    """
    classes, labels, first = {}, None, None
    for d in run_dirs:
        saved = read(d)
        if saved is None:
            raise ConfigError(f"{d} has no {PREDICTIONS_FILE} (a run writes it when it ends)")
        key = saved[2:]
        if first is None:
            first, labels = (d, key), saved[1]
        elif key != first[1] or not np.array_equal(saved[1], labels):
            raise ConfigError(f"{d} saved predictions of other pairs than {first[0]} "
                              f"({key[0]} vs {first[1][0]})")
        classes[d] = saved[0]
    return classes, labels, first[1][0]
