"""Resuming a stage: its tf.train checkpoint, and the settings a resume must match.

Every ``checkpoint_steps`` optimizer steps and at each epoch end a stage saves
`make_checkpoint`: the model weights, the optimizer state (``iterations`` and the Adam
moments) and the states of the dropout `SeedGenerator`s, so a resumed run draws the same
dropout masks as an uninterrupted one. ``checkpoints/stage.json`` records what the steps
mean (`stage_settings`: the run options, the data, the initial weights, the teacher);
`check_stage_file` refuses to resume checkpoints written with a setting that changes the
result, naming it.
"""
import hashlib
import os

import numpy as np
import tensorflow as tf
from absl import logging

from virt_tf import rundir
from virt_tf.config import defaults
from virt_tf.errors import StageError
from virt_tf.options import RESUME_FREE
from virt_tf.options import changed_settings as options_changed
from virt_tf.rundir import STAGE_FILE, fingerprint_examples


def make_checkpoint(classifier, optimizer):
    """The resumable state of a stage: weights, optimizer and dropout RNG states.

    ``model_state`` lists the classifier's non-trainable variables (the dropout
    `SeedGenerator` states, in layer order): Keras does not expose them as
    checkpoint dependencies of the model, and without them dropout after a
    resume would repeat the masks of the first steps.
    """
    return tf.train.Checkpoint(model=classifier, optimizer=optimizer,
                               model_state=list(classifier.non_trainable_variables))


def restore_checkpoint(classifier, optimizer, path):
    """Restore ``path`` into ``classifier``/``optimizer``; `StageError` when it does not fit."""
    try:
        keys = {name for name, _ in tf.train.list_variables(path)}
    except (tf.errors.OpError, ValueError) as e:
        raise StageError(f"{path}: unreadable checkpoint: {first_line(e)}") from e
    if any(k.startswith("model_state/") for k in keys) or not classifier.non_trainable_variables:
        ckpt = make_checkpoint(classifier, optimizer)
    else:  # written before the dropout states were saved
        logging.warning("%s holds no dropout RNG state: the resumed run trains correctly but "
                        "is not bit-identical to an uninterrupted one", path)
        ckpt = tf.train.Checkpoint(model=classifier, optimizer=optimizer)
    try:
        ckpt.restore(path).assert_consumed()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise StageError(f"cannot resume from {path} (a different model or config?): "
                         f"{first_line(e)}") from e


def first_line(error):
    """The first non-blank line of ``error``'s message (TensorFlow's run over many)."""
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    return lines[0] if lines else type(error).__name__


def changed_settings(directory, info):
    """``{setting: (recorded, now)}`` of every setting of ``info`` (this run's
    `stage_settings`) that differs from the ``stage.json`` of ``directory``; None when the
    stage recorded none. A setting an older file lacks counts as its default
    (`virt_tf.config.defaults`): adding an option breaks no older run."""
    path = rundir.checkpoint_path(directory, STAGE_FILE)
    if not os.path.exists(path):
        return None
    try:
        saved = rundir.read_json(path)
    except ValueError as e:
        raise StageError(f"{path}: not valid JSON ({e})") from e
    return options_changed(saved, info, rundir.jsonable(defaults()))


def _describe(changed):
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))


def check_stage_file(directory, info, resuming, write=True):
    """Refuse to resume checkpoints whose steps mean something else (other batch, seed...):
    when ``resuming``, every setting that differs from the recorded ones is named
    (`changed_settings`); otherwise ``info`` is recorded (when ``write``)."""
    changed = changed_settings(directory, info) if resuming else None
    if changed:
        raise StageError(f"{directory}: its checkpoints come from a different setting "
                         f"({_describe(changed)}); use another --model_dir or the same options")
    if changed is None and write:
        rundir.write_json(rundir.checkpoint_path(directory, STAGE_FILE), info)


def check_finished_stage(directory, info, evaluation):
    """Refuse to reuse the finished stage in ``directory`` for a run of other settings: a
    `StageError` naming each setting that differs, with both values; nothing is written.
    ``evaluation`` (``{"split": name, "examples": count}``) is what this run would score:
    the stage's ``metrics.json`` must have scored the same. A finished stage that recorded
    no settings is reused with a warning."""
    changed = changed_settings(directory, info)
    if changed is None:
        logging.warning("%s: finished, but records no settings to compare; reusing it",
                        directory)
        changed = {}
    scored = rundir.read_metrics(directory)
    changed.update({f"eval {k}": (scored.get(k), v) for k, v in evaluation.items()
                    if scored.get(k) != v})
    if changed:
        raise StageError(f"{directory}: holds a finished run of a different setting "
                         f"({_describe(changed)}); use another --model_dir or the same "
                         "options")


def fingerprint_weights(model):
    """A short hash of a model's weights (identifies a teacher)."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]


def stage_settings(model_name, options, encoder_config, data, pretrained, teacher, epochs,
                   spe):
    """Everything that changes what a stage computes (recorded in ``stage.json``): the run
    ``options`` but the `RESUME_FREE` ones, the encoder's dimensions, the stage's length
    (``epochs`` of ``spe`` steps), its training data, initial weights and teacher.
    ``train_data`` fingerprints every training pair, extra pairs included (label -1);
    ``unlabelled_data`` the user's unlabelled pairs the stage trains on (``data
    ["unlabelled"]``; None without), so that a changed file is named as such."""
    settings = {k: v for k, v in rundir.jsonable(options).items() if k not in RESUME_FREE}
    settings.update(model=model_name, encoder_config=encoder_config.to_dict(), epochs=epochs,
                    steps_per_epoch=spe, total_steps=spe * epochs,
                    train_examples=len(data["train"]),
                    train_data=fingerprint_examples(data["train"]),
                    unlabelled_data=(fingerprint_examples(data["unlabelled"])
                                     if data.get("unlabelled") else None),
                    init_checkpoint=(f"{pretrained.fmt}:{os.path.abspath(pretrained.source)}"
                                     if pretrained is not None else "random"),
                    teacher=fingerprint_weights(teacher) if teacher is not None else None)
    return settings
