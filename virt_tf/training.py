"""One training stage: build, resume, fit with checkpoints, evaluate, save.

Used by `virt_tf.train` for the teacher stage and for the student stage.
A stage directory holds `checkpoints/`, `logs/` (TensorBoard), and when the
stage has finished, `model.weights.h5`, `model_config.json`, `vocab.txt` and
`metrics.json` (written last: its presence marks the stage as finished).

Resume. Every ``checkpoint_steps`` optimizer steps and at each epoch end a
`tf.train.Checkpoint` is saved with the model weights, the optimizer state
(``iterations`` and the Adam moments) and the states of the dropout
`SeedGenerator`s, so a resumed run draws the same dropout masks as an
uninterrupted one; the data order is a deterministic stream of the seed
(`training_stream`) restarted at the restored step. A kill during a save never
breaks the latest checkpoint: TensorFlow writes the data and index files first
and only then replaces the `checkpoint` state file atomically (write to a
temporary file, rename), and with ``max_to_keep >= 2`` the sweep of old files
only removes checkpoints older than the one the state file names.
`checkpoints/stage.json` records what the steps mean (batch size, seed, data
size...); resuming with a different setting is refused.
"""
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from virt_tf.data.pipeline import steps_per_epoch, training_stream
from virt_tf.evaluate import compute_metrics, predict_probs
from virt_tf.losses import VirtLoss
from virt_tf.modeling.checkpoints import assign_weights
from virt_tf.models.registry import (build_classifier, build_now, is_representation_model,
                                     load_classifier, save_classifier)
from virt_tf.models.virt import VirtModel
from virt_tf.optimization import create_optimizer

METRICS_FILE = "metrics.json"


class NumericalError(RuntimeError):
    """A NaN or Inf loss; the last good checkpoint is kept as the latest."""


class StageError(RuntimeError):
    """A stage directory that cannot be resumed with this configuration."""


# Checkpoints kept; must stay >= 2 (see the module docstring).
MAX_TO_KEEP = 2
STAGE_FILE = "stage.json"


class NanGuard(keras.callbacks.Callback):
    """Stops at the first non-finite loss, naming the step. Runs before checkpointing.

    The logged losses are running means over the epoch, so the first step
    whose loss is NaN or Inf makes them non-finite at once.
    """

    def __init__(self):
        super().__init__()
        self.bad = None

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        for key in ("loss", "task_loss", "virt_loss"):
            value = logs.get(key)
            if value is not None and not math.isfinite(float(value)):
                step = int(self.model.optimizer.iterations.numpy())
                self.bad = f"non-finite {key} ({float(value)}) at step {step}"
                self.model.stop_training = True
                return


class PoisonWeights(keras.callbacks.Callback):
    """Testing only (``--debug_nan_at_step``): makes the loss of step ``step`` NaN.

    Before step ``step`` (1-based optimizer step) every trainable variable of
    ``classifier`` is multiplied by NaN, as a diverging run would leave them.
    """

    def __init__(self, classifier, step):
        super().__init__()
        self.classifier = classifier
        self.step = int(step)

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) + 1 == self.step:
            for v in self.classifier.trainable_variables:
                v.assign(v * float("nan"))


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a tf.train checkpoint every ``every`` optimizer steps and at each epoch end."""

    def __init__(self, manager, every, guard):
        super().__init__()
        self.manager = manager
        self.every = every
        self.guard = guard
        self._last = -1  # step of the last save, not to save twice at an epoch end

    def _save(self):
        if self.guard.bad:  # never save weights that produced a non-finite loss
            return
        step = int(self.model.optimizer.iterations.numpy())
        if step == self._last:
            return
        self.manager.save(checkpoint_number=step)
        self._last = step

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.every == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        self._save()


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
        raise StageError(f"{path}: unreadable checkpoint: {_first_line(e)}") from e
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
                         f"{_first_line(e)}") from e


def _first_line(error):
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    return lines[0] if lines else type(error).__name__


def _check_stage_file(directory, info, resuming):
    """Refuse to resume checkpoints whose steps mean something else (other batch, seed...)."""
    path = os.path.join(directory, "checkpoints", STAGE_FILE)
    if resuming and os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
        except ValueError as e:
            raise StageError(f"{path}: not valid JSON ({e})") from e
        changed = {k: (saved.get(k), v) for k, v in info.items() if saved.get(k) != v}
        if changed:
            diff = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            raise StageError(f"{directory}: its checkpoints come from a different setting "
                             f"({diff}); use another --model_dir or the same options")
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, info)


def stage_finished(directory):
    return os.path.exists(os.path.join(directory, METRICS_FILE)) and os.path.exists(
        os.path.join(directory, "model.weights.h5"))


def read_metrics(directory):
    with open(os.path.join(directory, METRICS_FILE), encoding="utf-8") as f:
        return json.load(f)


def write_json(path, obj):
    """Write ``obj`` atomically: a kill leaves the old file or the new one, never a part."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_stage(model_name, directory, cfg, data, pretrained, preprocessor, teacher=None,
              verbose=1):
    """Train model ``model_name`` into ``directory`` (or resume it); returns (classifier, metrics).

    ``data`` has ``train``, ``tune`` and ``eval`` example lists and ``task``.
    ``pretrained`` is a `PretrainedBert` (or None for random init with cfg['encoder']).
    """
    if stage_finished(directory):
        logging.info("%s: finished earlier, reusing it", directory)
        classifier, _ = load_classifier(directory)
        return classifier, read_metrics(directory)
    os.makedirs(directory, exist_ok=True)
    seed = int(cfg["seed"])
    keras.utils.set_random_seed(seed)
    task = data["task"]
    encoder_config = cfg["encoder_config"]
    classifier = build_now(build_classifier(model_name, encoder_config, task.num_labels, cfg))
    if pretrained is not None:
        assign_weights(classifier.encoder, pretrained.weights, pretrained.source)

    epochs = int(cfg["teacher_epochs"] or cfg["epochs"]) if model_name == "cross" and \
        cfg.get("_pipeline_teacher") else int(cfg["epochs"])
    batch_size = int(cfg["batch_size"])
    spe = steps_per_epoch(len(data["train"]), batch_size)
    total = spe * epochs
    optimizer = create_optimizer(cfg["learning_rate"], total, cfg["warmup_ratio"],
                                 cfg["adam_epsilon"], cfg["adam_beta_1"], cfg["adam_beta_2"],
                                 cfg.get("clipnorm"))
    if is_representation_model(model_name):
        model = VirtModel(classifier, teacher=teacher if (cfg["virt_alpha"] > 0 or
                                                          cfg["logit_beta"] > 0) else None,
                          alpha=cfg["virt_alpha"],
                          virt=VirtLoss(cfg["virt_norm"], cfg.get("virt_layers")),
                          logit_beta=cfg["logit_beta"], temperature=cfg["temperature"])
        model.compile(optimizer=optimizer, jit_compile=False)
    else:
        model = classifier
        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      jit_compile=False)
    optimizer.build(classifier.trainable_variables)

    ckpt = make_checkpoint(classifier, optimizer)
    ckpt_dir = os.path.join(directory, "checkpoints")
    try:
        manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=MAX_TO_KEEP)
    except (ValueError, tf.errors.OpError) as e:
        raise StageError(f"{ckpt_dir}: not a checkpoint directory of this program: "
                         f"{_first_line(e)}") from e
    if manager.latest_checkpoint is None and os.path.exists(os.path.join(ckpt_dir, "checkpoint")):
        # TensorFlow ignores an unparsable state file and would start over silently.
        raise StageError(f"{ckpt_dir}: not a checkpoint directory of this program (its "
                         "'checkpoint' file is not a TensorFlow checkpoint state); use "
                         "another --model_dir")
    run_info = {"model": model_name, "epochs": epochs, "steps_per_epoch": spe,
                "total_steps": total, "train_examples": len(data["train"])}
    _check_stage_file(directory, dict(run_info, batch_size=batch_size, seed=seed),
                      resuming=bool(manager.latest_checkpoint))
    start = 0
    if manager.latest_checkpoint:
        restore_checkpoint(classifier, optimizer, manager.latest_checkpoint)
        start = int(optimizer.iterations.numpy())
        if start > total:
            raise StageError(f"{manager.latest_checkpoint} is at step {start}, beyond the "
                             f"{total} steps of this run")
        logging.info("resuming %s at step %d of %d", directory, start, total)
    guard = NanGuard()
    callbacks = [guard, StepCheckpoint(manager, int(cfg["checkpoint_steps"]), guard),
                 keras.callbacks.TensorBoard(os.path.join(directory, "logs"),
                                             update_freq=max(1, min(50, spe)))]
    if cfg.get("_debug_nan_at_step"):
        callbacks.insert(0, PoisonWeights(classifier, cfg["_debug_nan_at_step"]))
    t0 = time.time()
    val = None
    if data.get("tune"):
        from virt_tf.data.pipeline import eval_dataset  # pylint: disable=import-outside-toplevel
        val = eval_dataset(data["tune"], preprocessor, 64)[0]
    while start < total:
        epoch = start // spe
        steps = spe - start % spe
        stream = training_stream(data["train"], preprocessor, batch_size, epochs, seed,
                                 start_step=start)
        model.fit(stream, initial_epoch=epoch, epochs=epoch + 1 if steps != spe else epochs,
                  steps_per_epoch=steps if steps != spe else spe, validation_data=val,
                  callbacks=callbacks, verbose=verbose)
        if guard.bad:
            kept = (f"the last good checkpoint {manager.latest_checkpoint} stays the latest"
                    if manager.latest_checkpoint else "no checkpoint was saved before it")
            raise NumericalError(f"{directory}: training stopped: {guard.bad}; {kept} "
                                 "(a lower --learning_rate or a clipnorm may help)")
        new_start = int(optimizer.iterations.numpy())
        if new_start == start:
            raise StageError(f"{directory}: no progress at step {start}")
        start = new_start
    train_seconds = time.time() - t0

    t1 = time.time()
    metrics = evaluate_with_loss(classifier, data["eval"], preprocessor, task.metrics)
    metrics.update(run_info, split=cfg["eval_split"], train_seconds=round(train_seconds, 1),
                   eval_seconds=round(time.time() - t1, 1), seed=seed)
    if data.get("tune"):
        tune = evaluate_with_loss(classifier, data["tune"], preprocessor, task.metrics)
        metrics["tune"] = {k: v for k, v in tune.items()}
    meta = {"task": task.name, "labels": list(task.labels), "metrics": list(task.metrics),
            "lower_case": preprocessor.lower_case, "max_seq_length": preprocessor.max_seq_length,
            "eval_split": cfg["eval_split"], "train_config": _jsonable(cfg)}
    save_classifier(directory, model_name, classifier, meta, preprocessor.vocab_file)
    write_json(os.path.join(directory, METRICS_FILE), metrics)
    logging.info("%s: %s", directory, {k: metrics[k] for k in ("accuracy",) if k in metrics})
    return classifier, metrics


def evaluate_with_loss(classifier, examples, preprocessor, metric_names):
    """The task metrics plus ``loss``, the mean cross-entropy: a sensitive fingerprint of
    the weights (two runs that differ anywhere differ in it, unlike in accuracy)."""
    probs = predict_probs(classifier, examples, preprocessor)
    labels = np.array([e.label for e in examples])
    metrics = compute_metrics(probs, labels, metric_names)
    picked = probs[np.arange(len(labels)), labels].astype(np.float64)
    metrics["loss"] = float(-np.mean(np.log(np.maximum(picked, 1e-30))))
    return metrics


def _jsonable(cfg):
    out = {}
    for k, v in cfg.items():
        if k.startswith("_"):
            continue
        if hasattr(v, "to_dict"):
            v = v.to_dict()
        if isinstance(v, (np.integer, np.floating)):
            v = v.item()
        out[k] = v
    return out
