"""One training stage: build, resume, fit with checkpoints, evaluate, save.

Used by `virt_tf.train` for the teacher stage and for the student stage.
A stage directory holds `checkpoints/`, `logs/` (TensorBoard), and when the
stage has finished, `model.weights.h5`, `model_config.json`, `vocab.txt` and
`metrics.json` (written last: its presence marks the stage as finished).

Resume. Every ``checkpoint_steps`` optimizer steps and at each epoch end a
`tf.train.Checkpoint` is saved with the model weights, the optimizer state
(``iterations`` and the Adam moments) and the states of the dropout
`SeedGenerator`s, so a resumed run draws the same dropout masks as an
uninterrupted one; the data order is a deterministic plan of the seed
(`batch_plan`) streamed from the restored step on (`plan_stream`). A kill during a
save never breaks the latest checkpoint: TensorFlow writes the data and index files first
and only then replaces the `checkpoint` state file atomically (write to a
temporary file, rename), and with ``max_to_keep >= 2`` the sweep of old files
only removes checkpoints older than the one the state file names.
`checkpoints/stage.json` records what the steps mean (batch size, seed, data
size...); resuming with a different setting is refused.
"""
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from virt_tf.data.pipeline import (TokenizedPairs, batch_plan, eval_dataset, padding_share,
                                   plan_stream, steps_per_epoch)
from virt_tf.data.teacher_logits import CACHE_FILE, cached_teacher_logits
from virt_tf.training.distribute import distributed_stream, is_chief
from virt_tf.evaluation.metrics import compute_metrics, predict_probs
from virt_tf.losses import objective_from_config
from virt_tf.modeling.checkpoints import assign_weights
from virt_tf.models.registry import build_classifier, build_now, load_classifier, save_classifier
from virt_tf.models.virt import VirtModel
from virt_tf.training.optimization import create_optimizer
from virt_tf.training import precision as precisions

METRICS_FILE = "metrics.json"
TRAIN_LOG = "train_log.jsonl"
from virt_tf.evaluation import predictions  # noqa: E402
from virt_tf.evaluation.predictions import PREDICTIONS_FILE  # noqa: E402


from virt_tf.errors import NumericalError, StageError  # noqa: E402,F401
from virt_tf.cli.paths import is_io_error  # noqa: E402
from virt_tf.training.safe_writes import (  # noqa: E402
    checkpoint_write_error, final_write, inject_write_fault, remove_stale_parts)


# Checkpoints kept; must stay >= 2 (see the module docstring).
MAX_TO_KEEP = 2
STAGE_FILE = "stage.json"
CLOCK_FILE = "clock.json"  # training seconds up to the last checkpoint


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
    """Saves a tf.train checkpoint every ``every`` optimizer steps and at each epoch end.

    With a ``clock`` (`TrainClock`) it also records the training seconds up to each
    saved step, so a resumed run reports the time of all its sessions."""

    def __init__(self, manager, every, guard, clock=None, fault=None):
        super().__init__()
        self.manager = manager
        self.every = every
        self.guard = guard
        self.clock = clock
        self.fault = fault  # testing only: see `inject_write_fault`
        self._last = -1  # step of the last save, not to save twice at an epoch end

    def _save(self):
        if self.guard.bad:  # never save weights that produced a non-finite loss
            return
        step = int(self.model.optimizer.iterations.numpy())
        if step == self._last:
            return
        try:
            inject_write_fault(self.fault, "checkpoint", step, self.manager.directory)
            self.manager.save(checkpoint_number=step)
        except Exception as e:  # pylint: disable=broad-except
            if not is_io_error(e):
                raise
            raise checkpoint_write_error(self.manager.directory, step, e) from e
        if self.clock is not None:
            self.clock.record(step)
        self._last = step

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.every == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        self._save()


class TrainClock:
    """Training seconds summed over the sessions of a resumed run.

    ``path`` (a JSON file beside the checkpoints) holds the seconds spent up to the
    last saved step; a resume starts from them (the steps redone after a kill are
    counted again: they were spent)."""

    def __init__(self, path, resumed_step):
        self.path = path
        self.before = 0.0
        if resumed_step and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            if int(saved.get("step", -1)) == int(resumed_step):
                self.before = float(saved["seconds"])
        self.start = time.time()

    def seconds(self):
        return self.before + time.time() - self.start

    def record(self, step):
        write_json(self.path, {"step": int(step), "seconds": round(self.seconds(), 1)})


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


def _check_stage_file(directory, info, resuming, write=True):
    """Refuse to resume checkpoints whose steps mean something else (other batch, seed...)."""
    path = os.path.join(directory, "checkpoints", STAGE_FILE)
    if resuming and os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
        except ValueError as e:
            raise StageError(f"{path}: not valid JSON ({e})") from e
        defaults = base_defaults()
        changed = {k: (saved.get(k, defaults.get(k)), v) for k, v in info.items()
                   if saved.get(k, defaults.get(k)) != v}
        if changed:
            diff = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            raise StageError(f"{directory}: its checkpoints come from a different setting "
                             f"({diff}); use another --model_dir or the same options")
    elif write:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, info)


def base_defaults():
    """The options of ``configs/base.yaml``: a setting that a stage file written before
    the option existed lacks counts as its default there, so adding an option does not
    break the resume of older checkpoints."""
    from virt_tf.config import CONFIG_DIR, _load_yaml  # pylint: disable=import-outside-toplevel
    return _jsonable(_load_yaml(os.path.join(CONFIG_DIR, "base.yaml")) or {})


def stage_finished(directory):
    return os.path.exists(os.path.join(directory, METRICS_FILE)) and os.path.exists(
        os.path.join(directory, "model.weights.h5"))


def read_metrics(directory):
    with open(os.path.join(directory, METRICS_FILE), encoding="utf-8") as f:
        return json.load(f)


def write_json(path, obj):
    """Write ``obj`` atomically: a kill leaves the old file or the new one, never a part.
    Creates the parent folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


# Run options that do not change what a stage computes: a resume may change them.
RESUME_FREE = {"checkpoint_steps", "max_eval_examples", "eval_split"}


@contextlib.contextmanager
def precision_scope(policy):
    """Keras' global dtype policy (``float32``, ``mixed_bfloat16`` or ``mixed_float16``)
    while building models.

    Under ``mixed_bfloat16`` / ``mixed_float16`` matmuls run in bfloat16 / float16 and
    the variables stay float32; the losses (`virt_tf.losses`) cast to float32, so
    softmaxes of the loss, L_virt and the cross-entropy are float32 (`virt_tf.training.precision`).
    """
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy or "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def fingerprint_examples(examples):
    """A short hash of the training examples (text, text, label) in order."""
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.text_a}\t{e.text_b}\t{e.label}\n".encode("utf-8"))
    return h.hexdigest()[:16]


def fingerprint_weights(model):
    """A short hash of a model's weights (identifies a teacher)."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]


def stage_settings(model_name, cfg, data, pretrained, teacher, epochs, spe):
    """Everything that changes what a stage computes (recorded in ``stage.json``)."""
    settings = {k: v for k, v in _jsonable(cfg).items() if k not in RESUME_FREE}
    settings.update(model=model_name, epochs=epochs, steps_per_epoch=spe,
                    total_steps=spe * epochs, train_examples=len(data["train"]),
                    train_data=fingerprint_examples(data["train"]),
                    init_checkpoint=(f"{pretrained.fmt}:{os.path.abspath(pretrained.source)}"
                                     if pretrained is not None else "random"),
                    teacher=fingerprint_weights(teacher) if teacher is not None else None)
    return settings


def _logged_step(line):
    """The step of a ``train_log.jsonl`` line; inf for a blank or torn one (dropped)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file (no part left on a failure)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class TrainLog(keras.callbacks.Callback):
    """Appends the running training metrics every ``every`` steps, and each epoch's
    metrics with its tune-split results, to ``train_log.jsonl`` (for curves and for
    choosing the epoch). A resumed run drops the lines past its restored step, and a
    line torn by a failed write (a full disk)."""

    def __init__(self, path, every, start_step):
        super().__init__()
        self.path, self.every = path, int(every)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                lines = [l.rstrip("\n") + "\n" for l in f if _logged_step(l) <= start_step]
            write_text_atomic(path, "".join(lines))

    def _write(self, record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if step % self.every == 0:
            self._write({"step": step, "kind": "train",
                         **{k: float(v) for k, v in (logs or {}).items()}})

    def on_epoch_end(self, epoch, logs=None):
        self._write({"step": self._step(), "kind": "epoch", "epoch": epoch + 1,
                     **{k: float(v) for k, v in (logs or {}).items()}})


class KeepBestEpoch(keras.callbacks.Callback):
    """After each epoch, keeps the weights of the best tune-split accuracy so far in
    ``best.weights.h5`` (with ``best.json``), surviving a resume."""

    def __init__(self, classifier, directory):
        super().__init__()
        self.classifier = classifier
        self.weights = os.path.join(directory, "checkpoints", "best.weights.h5")
        self.info = os.path.join(directory, "checkpoints", "best.json")

    def best(self):
        if not os.path.exists(self.info):
            return None
        with open(self.info, encoding="utf-8") as f:
            return json.load(f)

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_accuracy")
        if score is None:
            return
        best = self.best()
        if best is None or float(score) > best["val_accuracy"]:
            tmp = self.weights[: -len(".weights.h5")] + ".tmp.weights.h5"
            self.classifier.save_weights(tmp)
            os.replace(tmp, self.weights)
            write_json(self.info, {"epoch": epoch + 1, "val_accuracy": float(score)})


def run_stage(model_name, directory, cfg, data, pretrained, preprocessor, teacher=None,
              verbose=1, strategy=None):
    """Train model ``model_name`` into ``directory`` (or resume it); returns (classifier, metrics).

    ``data`` has ``train``, ``tune`` and ``eval`` example lists and ``task``.
    ``pretrained`` is a `PretrainedBert` (or None for random init with cfg['encoder']).
    Training runs under ``cfg["precision"]``; the model that is scored and returned is
    the saved one, reloaded in float32. With ``select_epoch: best_tune`` the weights of
    the epoch with the best tune-split accuracy are kept (else the last epoch's).

    ``strategy`` (a `tf.distribute.Strategy`, default: none) places the model, the
    optimizer and the teacher (which the caller built in its scope) on its replicas;
    ``batch_size`` stays the global batch. Only the chief writes the model directory,
    the logs and the best-epoch weights; every worker saves the resumable checkpoints
    (the others into a scratch folder) and resumes from the chief's.
    """
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    if stage_finished(directory):
        logging.info("%s: finished earlier, reusing it", directory)
        classifier, _ = load_classifier(directory)
        return classifier, read_metrics(directory)
    os.makedirs(directory, exist_ok=True)
    keras.utils.set_random_seed(int(cfg["seed"]))
    stage = _Stage.create(model_name, directory, cfg, data, preprocessor, strategy, chief,
                          verbose)
    classifier, optimizer, model = _build_model(stage, pretrained, teacher)
    manager, latest, write_dir = _open_checkpoints(stage, classifier, optimizer)
    start = _resume(stage, classifier, optimizer, latest, pretrained, teacher)
    callbacks = _callbacks(stage, classifier, manager, write_dir, start)
    val = _tune_batches(stage)
    pairs = _training_pairs(stage, model, write_dir)
    plan = _batch_plan(stage, classifier, pairs, start)
    _fit(stage, model, optimizer, pairs, plan, val, callbacks, start)
    train_seconds = callbacks.clock.seconds()
    if not chief:  # the chief writes the model directory
        shutil.rmtree(write_dir, ignore_errors=True)
        return classifier, {"chief": False, "train_seconds": round(train_seconds, 1)}
    chosen = _select_epoch(stage, classifier, callbacks.keep_best)
    classifier = _save_model(stage, classifier)
    return classifier, _score(stage, classifier, optimizer, chosen, train_seconds)


@dataclasses.dataclass(frozen=True)
class _Stage:
    """The fixed facts of one `run_stage` call, read by each of its steps.

    ``cfg`` holds the precision policy that runs (``stage.json`` records it; the reason
    it was chosen is ``precision_reason``); ``chief``: this worker writes the model
    directory; ``verbose``: Keras' verbosity.
    """
    model_name: str
    directory: str
    cfg: dict
    data: dict
    preprocessor: object
    strategy: object
    chief: bool
    verbose: int
    epochs: int
    steps_per_epoch: int
    precision_reason: str

    @classmethod
    def create(cls, model_name, directory, cfg, data, preprocessor, strategy, chief, verbose):
        """The stage's length (the pipeline's teacher stage runs ``teacher_epochs`` when set)
        and its precision, resolved once and logged."""
        epochs = int(cfg["teacher_epochs"] or cfg["epochs"]) if cfg.get("_pipeline_teacher") \
            else int(cfg["epochs"])
        spe = steps_per_epoch(len(data["train"]), int(cfg["batch_size"]))
        policy, reason = precisions.resolved(cfg)
        logging.info("%s: %s", directory, precisions.describe(policy, reason))
        return cls(model_name, directory, dict(cfg, precision=policy), data, preprocessor,
                   strategy, chief, verbose, epochs, spe, reason)

    @property
    def total_steps(self):
        return self.steps_per_epoch * self.epochs

    @property
    def checkpoint_dir(self):
        return os.path.join(self.directory, "checkpoints")

    def run_info(self):
        """The stage's size, reported in ``metrics.json``."""
        return {"model": self.model_name, "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
                "train_examples": len(self.data["train"])}


@dataclasses.dataclass(frozen=True)
class _Callbacks:
    """A stage's Keras callbacks in the order they run (``keras``), and what the stage reads
    after fitting: ``guard`` (`NanGuard`), ``keep_best`` (`KeepBestEpoch`), ``clock``
    (`TrainClock`) and ``manager`` (the `tf.train.CheckpointManager` saving the checkpoints)."""
    keras: list
    guard: NanGuard
    keep_best: KeepBestEpoch
    clock: TrainClock
    manager: tf.train.CheckpointManager


def _build_model(stage, pretrained, teacher):
    """The stage's classifier (its encoder from ``pretrained`` when given), its optimizer and
    the `VirtModel` that trains it on the objective of ``stage.cfg``, compiled and built
    under the stage's precision and strategy. Returns ``(classifier, optimizer, model)``."""
    cfg = stage.cfg
    with precision_scope(cfg["precision"]), stage.strategy.scope():
        classifier = build_now(build_classifier(stage.model_name, cfg["encoder_config"],
                                                stage.data["task"].num_labels, cfg))
        if pretrained is not None:
            assign_weights(classifier.encoder, pretrained.weights, pretrained.source)
        optimizer = create_optimizer(cfg["learning_rate"], stage.total_steps,
                                     cfg["warmup_ratio"], cfg["adam_epsilon"],
                                     cfg["adam_beta_1"], cfg["adam_beta_2"], cfg.get("clipnorm"))
        optimizer = precisions.wrap_optimizer(optimizer, cfg["precision"])  # float16: loss scaling
        model = VirtModel(classifier, teacher=teacher, terms=objective_from_config(cfg),
                          total_steps=stage.total_steps)
        model.compile(optimizer=optimizer, jit_compile=bool(cfg.get("jit_compile", False)))
        optimizer.build(classifier.trainable_variables)
    return classifier, optimizer, model


def _open_checkpoints(stage, classifier, optimizer):
    """``(manager, latest, write_dir)``: the manager this worker saves checkpoints with, the
    checkpoint to resume from (None: a fresh start) and the folder this worker writes.

    The chief saves into ``checkpoints/``; every other worker takes part in each save too,
    into a scratch folder ``checkpoints/worker_<task id>``, and resumes from the chief's
    latest checkpoint. A folder that is not a checkpoint folder of this program is a
    `StageError`."""
    ckpt = make_checkpoint(classifier, optimizer)
    ckpt_dir = stage.checkpoint_dir
    if stage.chief:  # a process killed while writing left parts of a file behind
        remove_stale_parts(stage.directory, ckpt_dir)
    # every worker takes part in a save; the others write into a scratch folder
    write_dir = ckpt_dir if stage.chief else os.path.join(
        ckpt_dir, f"worker_{stage.strategy.cluster_resolver.task_id}")
    try:
        manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=MAX_TO_KEEP)
        latest = manager.latest_checkpoint
        if not stage.chief:
            manager = tf.train.CheckpointManager(ckpt, write_dir, max_to_keep=1)
    except (ValueError, tf.errors.OpError) as e:
        raise StageError(f"{ckpt_dir}: not a checkpoint directory of this program: "
                         f"{_first_line(e)}") from e
    if latest is None and os.path.exists(os.path.join(ckpt_dir, "checkpoint")):
        # TensorFlow ignores an unparsable state file and would start over silently.
        raise StageError(f"{ckpt_dir}: not a checkpoint directory of this program (its "
                         "'checkpoint' file is not a TensorFlow checkpoint state); use "
                         "another --model_dir")
    return manager, latest, write_dir


def _resume(stage, classifier, optimizer, latest, pretrained, teacher):
    """The optimizer step the stage starts from: 0, or that of ``latest`` restored into
    ``classifier``/``optimizer``. Checks (the chief: records) the stage's settings first
    (`_check_stage_file`): a resume with settings that change the result is refused."""
    settings = stage_settings(stage.model_name, stage.cfg, stage.data, pretrained, teacher,
                              stage.epochs, stage.steps_per_epoch)
    _check_stage_file(stage.directory, settings, resuming=bool(latest), write=stage.chief)
    if not latest:
        return 0
    restore_checkpoint(classifier, optimizer, latest)
    start = int(optimizer.iterations.numpy())
    if start > stage.total_steps:
        raise StageError(f"{latest} is at step {start}, beyond the "
                         f"{stage.total_steps} steps of this run")
    logging.info("resuming %s at step %d of %d", stage.directory, start, stage.total_steps)
    return start


def _callbacks(stage, classifier, manager, write_dir, start):
    """The stage's `_Callbacks`. Every worker stops at a non-finite loss and saves the
    checkpoints; the chief also writes the training log, TensorBoard and (with a tune
    split) the best epoch's weights; the testing-only faults come first."""
    cfg, directory = stage.cfg, stage.directory
    guard = NanGuard()
    keep_best = KeepBestEpoch(classifier, directory)
    clock = TrainClock(os.path.join(write_dir, CLOCK_FILE), start)
    callbacks = [guard, StepCheckpoint(manager, int(cfg["checkpoint_steps"]), guard, clock,
                                       cfg.get("_debug_write_fault"))]
    if stage.chief:
        every = max(1, min(50, stage.steps_per_epoch))
        callbacks += [TrainLog(os.path.join(directory, TRAIN_LOG), every, start),
                      keras.callbacks.TensorBoard(os.path.join(directory, "logs"),
                                                  update_freq=every)]
        if stage.data.get("tune"):
            # before the epoch-end checkpoint: a kill between the two then re-runs the
            # epoch's last steps and compares again, never loses the epoch's result
            callbacks.insert(1, keep_best)
    if cfg.get("_debug_nan_at_step"):
        callbacks.insert(0, PoisonWeights(classifier, cfg["_debug_nan_at_step"]))
    if cfg.get("_debug_overflow_at_step") and precisions.uses_loss_scaling(cfg["precision"]):
        callbacks.insert(0, precisions.overflow_injector(cfg["_debug_overflow_at_step"]))
    return _Callbacks(callbacks, guard, keep_best, clock, manager)


def _tune_batches(stage):
    """The tune split's batches for each epoch's validation, or None without a tune split."""
    if not stage.data.get("tune"):
        return None
    # packed once and kept in memory: each epoch's validation then starts at once
    # (making a tokenizing iterator costs seconds of graph set-up)
    return eval_dataset(stage.data["tune"], stage.preprocessor, 64)[0].cache()


def _training_pairs(stage, model, write_dir):
    """The stage's training pairs, tokenized once (`TokenizedPairs`). When the frozen
    teacher only feeds logit terms (none reads its attention scores) they carry its logits
    `[n, num_labels]`, computed once (`stage_teacher_logits`) into the stage directory (a
    worker other than the chief: into ``write_dir``)."""
    cfg, train = stage.cfg, stage.data["train"]
    pairs = TokenizedPairs.from_examples(train, stage.preprocessor)
    if model.teacher is not None and cfg.get("cache_teacher_logits", True) and not any(
            t.needs_teacher_scores for t in model.terms):
        pairs.teacher_logits = stage_teacher_logits(
            stage.directory if stage.chief else write_dir, model.teacher, pairs,
            stage.preprocessor, train, write=True)
    return pairs


def _batch_plan(stage, classifier, pairs, start):
    """Every training batch's example indices, int `[total_steps, batch_size]` (`batch_plan`
    of the seed), bucketed by the length of the packings ``classifier`` reads unless
    ``length_buckets`` is off. A fresh stage (``start`` 0) logs the padding it leaves."""
    cfg = stage.cfg
    bucket = bool(cfg.get("length_buckets", True))
    # batches of similar length in the packings this model reads
    key = "pair" if "pair" in classifier.input_packings else "texts"
    plan = batch_plan(pairs.sort_lengths(key), int(cfg["batch_size"]), stage.epochs,
                      int(cfg["seed"]), bucket)
    if start == 0:
        for name, lengths in (("pair", pairs.lengths), ("x", pairs.lengths_a),
                              ("y", pairs.lengths_b)):
            logging.info("padding of the %s packings: %.1f%% of their positions (%s)", name,
                         100 * padding_share(lengths, plan),
                         f"batches bucketed by {key} length" if bucket else "random batches")
    return plan


def _fit(stage, model, optimizer, pairs, plan, val, callbacks, start):
    """Fit from optimizer step ``start`` to the stage's last step, streaming the rows of
    ``plan`` from ``start`` on: one `model.fit` call finishes a resumed epoch, the next
    runs the remaining epochs. Raises `NumericalError` when `NanGuard` stopped training
    and `StageError` when a call made no step."""
    spe, total, epochs = stage.steps_per_epoch, stage.total_steps, stage.epochs
    while start < total:
        epoch = start // spe
        steps = spe - start % spe
        if stage.strategy.num_replicas_in_sync > 1 or not stage.chief:
            stream = distributed_stream(stage.strategy, pairs, stage.preprocessor, plan[start:])
        else:
            stream = plan_stream(pairs, stage.preprocessor, plan[start:])
        model.fit(stream, initial_epoch=epoch, epochs=epoch + 1 if steps != spe else epochs,
                  steps_per_epoch=steps if steps != spe else spe, validation_data=val,
                  callbacks=callbacks.keras, verbose=stage.verbose)
        if callbacks.guard.bad:
            latest = callbacks.manager.latest_checkpoint
            kept = (f"the last good checkpoint {latest} stays the latest"
                    if latest else "no checkpoint was saved before it")
            raise NumericalError(f"{stage.directory}: training stopped: {callbacks.guard.bad}; "
                                 f"{kept} (a lower --learning_rate or a clipnorm may help)")
        new_start = int(optimizer.iterations.numpy())
        if new_start == start:
            raise StageError(f"{stage.directory}: no progress at step {start}")
        start = new_start


def _select_epoch(stage, classifier, keep_best):
    """Load the weights the stage keeps into ``classifier``: under ``select_epoch:
    best_tune`` those of the best tune epoch (when one was kept), else the last epoch's
    (already there). Returns ``{"epoch", "rule"}`` for ``metrics.json``."""
    best = keep_best.best()
    if stage.cfg.get("select_epoch", "last") == "best_tune" and best is not None:
        classifier.load_weights(keep_best.weights)
        return {"epoch": best["epoch"], "rule": "best_tune"}
    return {"epoch": stage.epochs, "rule": "last"}


def _save_model(stage, classifier):
    """Write the model files (weights, config with the task's metadata, vocabulary) and
    read them back: the float32 classifier, exactly what was saved."""
    cfg, task, prep = stage.cfg, stage.data["task"], stage.preprocessor
    meta = {"task": task.name, "labels": list(task.labels), "metrics": list(task.metrics),
            "task_options": dict(task.options),
            "lower_case": prep.lower_case, "max_seq_length": prep.max_seq_length,
            "eval_split": cfg["eval_split"], "train_config": _jsonable(cfg)}
    with final_write(stage.directory, stage.checkpoint_dir):
        inject_write_fault(cfg.get("_debug_write_fault"), "model", None, stage.directory)
        save_classifier(stage.directory, stage.model_name, classifier, meta, prep.vocab_file)
    classifier, _ = load_classifier(stage.directory)
    return classifier


def _score(stage, classifier, optimizer, chosen, train_seconds):
    """The saved ``classifier``'s metrics on the evaluation split (its probabilities go to
    ``predictions.npz``) and on the tune split, with the run's facts; written to
    ``metrics.json`` last, which marks the stage finished."""
    cfg, data, prep, directory = stage.cfg, stage.data, stage.preprocessor, stage.directory
    task, policy = data["task"], cfg["precision"]
    t1 = time.time()
    probs = predict_probs(classifier, data["eval"], prep)
    with final_write(directory, stage.checkpoint_dir):
        save_predictions(directory, cfg["eval_split"], probs, data["eval"])
    metrics = evaluate_with_loss(classifier, data["eval"], prep, task.metrics, probs)
    metrics.update(stage.run_info(), split=cfg["eval_split"],
                   train_seconds=round(train_seconds, 1),
                   eval_seconds=round(time.time() - t1, 1), seed=int(cfg["seed"]),
                   selected_epoch=chosen, precision=policy,
                   precision_reason=stage.precision_reason)
    if precisions.uses_loss_scaling(policy):  # batches read vs updates applied
        metrics.update(loss_scale=precisions.loss_scale(optimizer),
                       skipped_steps=stage.total_steps - precisions.applied_steps(optimizer))
    if data.get("tune"):
        tune = evaluate_with_loss(classifier, data["tune"], prep, task.metrics)
        metrics["tune"] = {k: v for k, v in tune.items()}
    with final_write(directory, stage.checkpoint_dir):
        write_json(os.path.join(directory, METRICS_FILE), metrics)
    logging.info("%s: %s", directory, {k: metrics[k] for k in ("accuracy",) if k in metrics})
    return metrics


def stage_teacher_logits(directory, teacher, pairs, preprocessor, examples, write=True):
    """The teacher's logits of the stage's training pairs, computed once and kept in
    ``directory/teacher_logits.npz`` (`virt_tf.data.teacher_logits`)."""
    key = {"train_data": fingerprint_examples(examples), "teacher": fingerprint_weights(teacher),
           "max_seq_length": preprocessor.max_seq_length}
    t0 = time.time()
    logits, reused = cached_teacher_logits(directory, teacher, pairs, preprocessor, key, write)
    logging.info("teacher logits of %d training pairs: %s (%.1f s)", len(pairs),
                 "reused from " + CACHE_FILE if reused else "computed", time.time() - t0)
    return logits


def save_predictions(directory, split, probs, examples):
    """The evaluation split's probabilities, for paired comparisons without re-scoring."""
    path = os.path.join(directory, PREDICTIONS_FILE)
    tmp = path + ".tmp.npz"
    np.savez(tmp, probs=probs.astype(np.float32), split=np.array(split),
             labels=np.array([e.label for e in examples], np.int32),
             fingerprint=np.array(fingerprint_examples(examples)))
    os.replace(tmp, path)


def load_predictions(directory, split=None, examples=None):
    """``(probs, labels)`` saved by training, or None when absent or for other pairs."""
    saved = predictions.read_probs(directory)
    if saved is None:
        return None
    probs, labels, saved_split, fingerprint = saved
    if split is not None and saved_split != split:
        return None
    if examples is not None and fingerprint != fingerprint_examples(examples):
        return None
    return probs, labels


def read_train_log(directory, kind=None):
    """The records of ``train_log.jsonl`` (optionally of one ``kind``: train or epoch)."""
    path = os.path.join(directory, TRAIN_LOG)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        records = [json.loads(l) for l in f if l.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


def evaluate_with_loss(classifier, examples, preprocessor, metric_names, probs=None):
    """The task metrics plus ``loss``, the mean cross-entropy: a sensitive fingerprint of
    the weights (two runs that differ anywhere differ in it, unlike in accuracy)."""
    if probs is None:
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
