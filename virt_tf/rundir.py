"""The run-directory contract: the name of every file a run writes, written in one place, and
the one atomic writer every module uses.

A model directory of a finished stage holds (WORKSPACE.md describes each)::

    model.weights.h5  model_config.json  vocab.txt  model.keras     the trained classifier
    metrics.json      (written last: its presence marks the stage finished)
    predictions.npz   the evaluation split's probabilities
    train_log.jsonl   running losses and each epoch's metrics
    teacher_logits.npz  the frozen teacher's logits of the training pairs (when cached)
    checkpoints/      stage.json, clock.json, best.weights.h5, best.json, tf.train files
    logs/             TensorBoard
    teacher/          the pipeline's teacher stage (a model directory of its own)
    train.log  alignment.json   in a cell of the reproduction grid

Writes go through a temporary file in the same folder, renamed over the target: a kill or a
full disk leaves the old file or the new one, never a part. This module imports neither
TensorFlow nor numpy at load time.
"""
import contextlib
import hashlib
import json
import math
import os
import shutil

MODEL_CONFIG = "model_config.json"
WEIGHTS = "model.weights.h5"
VOCAB = "vocab.txt"
KERAS_FILE = "model.keras"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.npz"
TRAIN_LOG = "train_log.jsonl"
TEACHER_LOGITS_FILE = "teacher_logits.npz"
CHECKPOINTS_DIR = "checkpoints"
STAGE_FILE = "stage.json"  # in checkpoints/: the settings a resume must match
CLOCK_FILE = "clock.json"  # in checkpoints/: training seconds up to the last checkpoint
BEST_WEIGHTS = "best.weights.h5"  # in checkpoints/: the best tune epoch's weights
BEST_INFO = "best.json"  # in checkpoints/: that epoch and its tune accuracy
LOGS_DIR = "logs"
TEACHER_DIR = "teacher"  # the pipeline's teacher stage inside a student's directory
# Beside a model directory's files, a cell of the reproduction grid holds:
CELL_LOG = "train.log"  # its command and everything the run printed
ALIGNMENT_FILE = "alignment.json"  # a student's per-layer L_virt against its teacher


def path(directory, *names):
    """``directory/names...``: a file of the contract in a run directory."""
    return os.path.join(directory, *names)


def checkpoint_path(directory, name=""):
    """A file of ``directory/checkpoints/`` (the folder itself without ``name``)."""
    return os.path.join(directory, CHECKPOINTS_DIR, name) if name else os.path.join(
        directory, CHECKPOINTS_DIR)


PARTS = "*.tmp*"  # the glob of `temporary` names: writes a killed run did not finish


def temporary(target, suffix=""):
    """The temporary name a write of ``target`` goes through: in the same folder, so the
    rename is atomic, and matched by the ``*.tmp*`` sweep of a killed run's leftovers.
    ``suffix`` keeps an ending a writer needs (Keras wants ``.weights.h5``, numpy ``.npz``)."""
    return f"{target}.tmp{os.getpid()}{suffix}"


@contextlib.contextmanager
def atomic_target(target, suffix=""):
    """Yield a temporary path to write ``target`` through; on success it is renamed over
    ``target``, on any error it is removed and the error goes on. Creates the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    tmp = temporary(target, suffix)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp)
            else:
                os.remove(tmp)
        raise


def write_text_atomic(target, text):
    """Write ``text`` to ``target`` through a temporary file (fsynced; no part left)."""
    with atomic_target(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(target, obj):
    """Write ``obj`` as indented, key-sorted JSON, atomically. Creates the parent folder."""
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=True))


def write_npz(target, **arrays):
    """Write numpy ``arrays`` to ``target`` (an ``.npz``), atomically."""
    import numpy as np  # pylint: disable=import-outside-toplevel  (light: the grid planner reads this module)
    with atomic_target(target, ".npz") as tmp:
        np.savez(tmp, **arrays)


def read_json(target):
    with open(target, encoding="utf-8") as f:
        return json.load(f)


def read_metrics(directory):
    """The ``metrics.json`` of a finished stage."""
    return read_json(path(directory, METRICS_FILE))


def has_metrics(directory):
    return os.path.exists(path(directory, METRICS_FILE))


def stage_finished(directory):
    """A stage is finished when its metrics (written last) and its weights are there."""
    return has_metrics(directory) and os.path.exists(path(directory, WEIGHTS))


def logged_step(line):
    """The step of a ``train_log.jsonl`` line; inf for a blank or torn one (dropped)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def read_train_log(directory, kind=None):
    """The records of ``train_log.jsonl`` (optionally of one ``kind``: train or epoch);
    [] when the run has none."""
    target = path(directory, TRAIN_LOG)
    if not os.path.exists(target):
        return []
    with open(target, encoding="utf-8") as f:
        records = [json.loads(l) for l in f if l.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


def jsonable(cfg):
    """``cfg`` as JSON-ready values: objects with ``to_dict`` as dicts, numpy scalars as
    Python numbers; keys starting with ``_`` left out."""
    out = {}
    for k, v in cfg.items():
        if k.startswith("_"):
            continue
        if hasattr(v, "to_dict"):
            v = v.to_dict()
        if type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0:
            v = v.item()  # a numpy scalar
        out[k] = v
    return out


def fingerprint_examples(examples):
    """A short hash of examples (text, text, label) in order: identifies training data."""
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.text_a}\t{e.text_b}\t{e.label}\n".encode("utf-8"))
    return h.hexdigest()[:16]
