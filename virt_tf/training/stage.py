"""One training stage: build, resume, fit with checkpoints, evaluate, save.

Used by the pipeline (`virt_tf.training.pipeline`) for the teacher stage and for the
student stage. A stage directory holds ``checkpoints/``, ``logs/`` (TensorBoard), and when
the stage has finished, the model files, ``predictions.npz`` and ``metrics.json`` (written
last: its presence marks the stage as finished; `virt_tf.rundir` names them all).

Resume. Every ``checkpoint_steps`` optimizer steps and at each epoch end the stage saves its
resumable state (`virt_tf.training.resume.make_checkpoint`); the data order is a
deterministic plan of the seed (`batch_plan`) streamed from the restored step on
(`plan_stream`). A kill during a save never breaks the latest checkpoint: TensorFlow writes
the data and index files first and only then replaces the `checkpoint` state file
atomically (write to a temporary file, rename), and with ``max_to_keep >= 2`` the sweep of
old files only removes checkpoints older than the one the state file names.
``checkpoints/stage.json`` records what the steps mean (batch size, seed, data size...);
resuming with a different setting is refused (`virt_tf.training.resume.check_stage_file`).
"""
import dataclasses
import os
import shutil
import time

import keras
import tensorflow as tf
from absl import logging

from virt_tf import rundir
from virt_tf.data.pipeline import (TokenizedPairs, batch_plan, eval_dataset, padding_share,
                                   plan_stream, steps_per_epoch)
from virt_tf.data.teacher_logits import cached_teacher_logits
from virt_tf.errors import NumericalError, StageError
from virt_tf.evaluation.metrics import evaluate_with_loss, predict_probs
from virt_tf.evaluation.predictions import save_predictions
from virt_tf.losses import objective_from_config
from virt_tf.modeling.checkpoints import assign_weights
from virt_tf.models.registry import build_classifier, build_now, load_classifier, save_classifier
from virt_tf.models.virt import VirtModel
from virt_tf.options import DebugOptions
from virt_tf.rundir import (CLOCK_FILE, LOGS_DIR, METRICS_FILE, TEACHER_LOGITS_FILE,
                            TRAIN_LOG, fingerprint_examples)
from virt_tf.training import precision as precisions
from virt_tf.training.callbacks import (KeepBestEpoch, NanGuard, PoisonWeights, StepCheckpoint,
                                        TrainClock, TrainLog)
from virt_tf.training.distribute import distributed_stream, is_chief
from virt_tf.training.optimization import create_optimizer, freeze_word_embeddings
from virt_tf.training.resume import (check_finished_stage, check_stage_file, first_line,
                                     fingerprint_weights, make_checkpoint,
                                     restore_checkpoint, stage_settings)
from virt_tf.training.safe_writes import final_write, inject_write_fault, remove_stale_parts

# Checkpoints kept; must stay >= 2 (see the module docstring).
MAX_TO_KEEP = 2


def run_stage(model_name, directory, options, data, pretrained, preprocessor, teacher=None,
              verbose=1, strategy=None, *, encoder_config=None, epochs=None,
              precision_reason=None, debug=None):
    """Train model ``model_name`` into ``directory`` (or resume it); returns (classifier, metrics).

    ``options`` are the run's `RunOptions`; ``data`` has ``train``, ``tune`` and ``eval``
    example lists and ``task``. ``pretrained`` is a `PretrainedBert`, or None for a random
    encoder of ``encoder_config`` (which defaults to the pretrained one's). ``epochs``
    (default ``options.epochs``) is the stage's length: the pipeline's teacher stage runs
    ``teacher_epochs``. Training runs under ``options.precision`` (``auto`` is resolved here
    when the caller has not; ``precision_reason`` says why the policy was chosen); the model
    that is scored and returned is the saved one, reloaded in float32. With ``select_epoch:
    best_tune`` the weights of the epoch with the best tune-split accuracy are kept (else the
    last epoch's). ``debug`` (`DebugOptions`, testing only) injects faults.

    ``strategy`` (a `tf.distribute.Strategy`, default: none) places the model, the
    optimizer and the teacher (which the caller built in its scope) on its replicas;
    ``batch_size`` stays the global batch. Only the chief writes the model directory,
    the logs and the best-epoch weights; every worker saves the resumable checkpoints
    (the others into a scratch folder) and resumes from the chief's.
    """
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    stage = _Stage.create(model_name, directory, options, data, preprocessor, strategy, chief,
                          verbose, encoder_config or pretrained.config, epochs,
                          precision_reason, debug or DebugOptions())
    if rundir.stage_finished(directory):  # reused only when it ran these settings
        check_finished_stage(directory, _settings(stage, pretrained, teacher),
                             {"split": options["eval_split"], "examples": len(data["eval"])})
        logging.info("%s: finished earlier, reusing it", directory)
        classifier, _ = load_classifier(directory)
        return classifier, rundir.read_metrics(directory)
    os.makedirs(directory, exist_ok=True)
    keras.utils.set_random_seed(int(options["seed"]))
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
class _Stage:  # pylint: disable=too-many-instance-attributes
    """The fixed facts of one `run_stage` call, read by each of its steps.

    ``options`` hold the precision policy that runs (``stage.json`` records it; the reason
    it was chosen is ``precision_reason``); ``chief``: this worker writes the model
    directory; ``verbose``: Keras' verbosity; ``debug``: the testing-only faults.
    """
    model_name: str
    directory: str
    options: object
    data: dict
    preprocessor: object
    strategy: object
    chief: bool
    verbose: int
    encoder_config: object
    epochs: int
    steps_per_epoch: int
    precision_reason: str
    debug: DebugOptions

    @classmethod
    def create(cls, model_name, directory, options, data, preprocessor, strategy, chief,
               verbose, encoder_config, epochs, precision_reason, debug):
        """The stage's length (``epochs``, default the options') and its precision, logged."""
        epochs = int(epochs or options["epochs"])
        spe = steps_per_epoch(len(data["train"]), int(options["batch_size"]))
        policy, reason = precisions.resolved(options["precision"], precision_reason)
        logging.info("%s: %s", directory, precisions.describe(policy, reason))
        return cls(model_name, directory, options.replace(precision=policy), data,
                   preprocessor, strategy, chief, verbose, encoder_config, epochs, spe, reason,
                   debug)

    @property
    def total_steps(self):
        """Optimizer steps (batches) of the whole stage."""
        return self.steps_per_epoch * self.epochs

    @property
    def checkpoint_dir(self):
        """``directory/checkpoints``."""
        return rundir.checkpoint_path(self.directory)

    def run_info(self):
        """The stage's size, reported in ``metrics.json``."""
        return {"model": self.model_name, "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
                "train_examples": len(self.data["train"])}

    def train_config(self):
        """The run options as ``model_config.json`` records them (``train_config``): every
        option, then the encoder's dimensions."""
        return dict(rundir.jsonable(self.options), encoder_config=self.encoder_config.to_dict())


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
    the `VirtModel` that trains it on the objective of ``stage.options``, compiled and built
    under the stage's precision and strategy. Returns ``(classifier, optimizer, model)``."""
    options = stage.options
    with precisions.precision_scope(options.precision), stage.strategy.scope():
        classifier = build_now(build_classifier(stage.model_name, stage.encoder_config,
                                                stage.data["task"].num_labels, options))
        if pretrained is not None:
            assign_weights(classifier.encoder, pretrained.weights, pretrained.source)
        if options.freeze_word_embeddings:
            freeze_word_embeddings(classifier)
        optimizer = create_optimizer(options.learning_rate, stage.total_steps,
                                     options.warmup_ratio, options.adam_epsilon,
                                     options.adam_beta_1, options.adam_beta_2, options.clipnorm,
                                     options.embedding_updates)
        # float16: loss scaling
        optimizer = precisions.wrap_optimizer(optimizer, options.precision)
        model = VirtModel(classifier, teacher=teacher, terms=objective_from_config(options),
                          total_steps=stage.total_steps)
        model.compile(optimizer=optimizer, jit_compile=bool(options.jit_compile))
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
                         f"{first_line(e)}") from e
    if latest is None and os.path.exists(os.path.join(ckpt_dir, "checkpoint")):
        # TensorFlow ignores an unparsable state file and would start over silently.
        raise StageError(f"{ckpt_dir}: not a checkpoint directory of this program (its "
                         "'checkpoint' file is not a TensorFlow checkpoint state); use "
                         "another --model_dir")
    return manager, latest, write_dir


def _settings(stage, pretrained, teacher):
    """The stage's `stage_settings`: what ``stage.json`` records and a resume or a reuse of
    a finished stage must match."""
    return stage_settings(stage.model_name, stage.options, stage.encoder_config, stage.data,
                          pretrained, teacher, stage.epochs, stage.steps_per_epoch)


def _resume(stage, classifier, optimizer, latest, pretrained, teacher):
    """The optimizer step the stage starts from: 0, or that of ``latest`` restored into
    ``classifier``/``optimizer``. Checks (the chief: records) the stage's settings first
    (`check_stage_file`): a resume with settings that change the result is refused."""
    check_stage_file(stage.directory, _settings(stage, pretrained, teacher),
                     resuming=bool(latest), write=stage.chief)
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
    options, directory, debug = stage.options, stage.directory, stage.debug
    guard = NanGuard()
    keep_best = KeepBestEpoch(classifier, directory)
    clock = TrainClock(os.path.join(write_dir, CLOCK_FILE), start)
    callbacks = [guard, StepCheckpoint(manager, int(options.checkpoint_steps), guard, clock,
                                       debug.write_fault)]
    if stage.chief:
        every = max(1, min(50, stage.steps_per_epoch))
        callbacks += [TrainLog(rundir.path(directory, TRAIN_LOG), every, start),
                      keras.callbacks.TensorBoard(rundir.path(directory, LOGS_DIR),
                                                  update_freq=every)]
        if stage.data.get("tune"):
            # before the epoch-end checkpoint: a kill between the two then re-runs the
            # epoch's last steps and compares again, never loses the epoch's result
            callbacks.insert(1, keep_best)
    if debug.nan_at_step:
        callbacks.insert(0, PoisonWeights(classifier, debug.nan_at_step))
    if debug.overflow_at_step and precisions.uses_loss_scaling(options.precision):
        callbacks.insert(0, precisions.overflow_injector(debug.overflow_at_step))
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
    options, train = stage.options, stage.data["train"]
    pairs = TokenizedPairs.from_examples(train, stage.preprocessor)
    if model.teacher is not None and options.cache_teacher_logits and not any(
            t.needs_teacher_scores for t in model.terms):
        pairs.teacher_logits = stage_teacher_logits(
            stage.directory if stage.chief else write_dir, model.teacher, pairs,
            stage.preprocessor, train, write=True)
    return pairs


def _batch_plan(stage, classifier, pairs, start):
    """Every training batch's example indices, int `[total_steps, batch_size]` (`batch_plan`
    of the seed), bucketed by the length of the packings ``classifier`` reads unless
    ``length_buckets`` is off. A fresh stage (``start`` 0) logs the padding it leaves."""
    options = stage.options
    bucket = bool(options.length_buckets)
    # batches of similar length in the packings this model reads
    key = "pair" if "pair" in classifier.input_packings else "texts"
    plan = batch_plan(pairs.sort_lengths(key), int(options.batch_size), stage.epochs,
                      int(options.seed), bucket)
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
                  callbacks=callbacks.keras, verbose=stage.verbose,
                  shuffle=False)  # the order is the seeded plan's (Keras warns otherwise)
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
    if stage.options.select_epoch == "best_tune" and best is not None:
        classifier.load_weights(keep_best.weights)
        return {"epoch": best["epoch"], "rule": "best_tune"}
    return {"epoch": stage.epochs, "rule": "last"}


def _save_model(stage, classifier):
    """Write the model files (weights, config with the task's metadata, vocabulary) and
    read them back: the float32 classifier, exactly what was saved."""
    task, prep = stage.data["task"], stage.preprocessor
    meta = {"task": task.name, "labels": list(task.labels), "metrics": list(task.metrics),
            "task_options": dict(task.options),
            "lower_case": prep.lower_case, "max_seq_length": prep.max_seq_length,
            "eval_split": stage.options.eval_split, "train_config": stage.train_config()}
    with final_write(stage.directory, stage.checkpoint_dir):
        inject_write_fault(stage.debug.write_fault, "model", None, stage.directory)
        save_classifier(stage.directory, stage.model_name, classifier, meta, prep.vocab_file)
    classifier, _ = load_classifier(stage.directory)
    return classifier


def _score(stage, classifier, optimizer, chosen, train_seconds):
    """The saved ``classifier``'s metrics on the evaluation split (its probabilities go to
    ``predictions.npz``) and on the tune split, with the run's facts; written to
    ``metrics.json`` last, which marks the stage finished."""
    options, data, prep, directory = stage.options, stage.data, stage.preprocessor, stage.directory
    task, policy = data["task"], options.precision
    t1 = time.time()
    probs = predict_probs(classifier, data["eval"], prep)
    with final_write(directory, stage.checkpoint_dir):
        save_predictions(directory, options.eval_split, probs, data["eval"])
    metrics = evaluate_with_loss(classifier, data["eval"], prep, task.metrics, probs)
    metrics.update(stage.run_info(), split=options.eval_split,
                   train_seconds=round(train_seconds, 1),
                   eval_seconds=round(time.time() - t1, 1), seed=int(options.seed),
                   selected_epoch=chosen, precision=policy,
                   precision_reason=stage.precision_reason)
    if precisions.uses_loss_scaling(policy):  # batches read vs updates applied
        metrics.update(loss_scale=precisions.loss_scale(optimizer),
                       skipped_steps=stage.total_steps - precisions.applied_steps(optimizer))
    if data.get("tune"):
        metrics["tune"] = evaluate_with_loss(classifier, data["tune"], prep, task.metrics)
    with final_write(directory, stage.checkpoint_dir):
        rundir.write_json(rundir.path(directory, METRICS_FILE), metrics)
    logging.info("%s: %s", directory, {k: metrics[k] for k in ("accuracy",) if k in metrics})
    return metrics


def stage_teacher_logits(directory, teacher, pairs, preprocessor, examples, write=True):
    """The teacher's logits `[n, num_labels]` of the stage's training pairs, computed once
    and kept in ``directory/teacher_logits.npz`` (`virt_tf.data.teacher_logits`)."""
    key = {"train_data": fingerprint_examples(examples), "teacher": fingerprint_weights(teacher),
           "max_seq_length": preprocessor.max_seq_length}
    t0 = time.time()
    logits, reused = cached_teacher_logits(directory, teacher, pairs, preprocessor, key, write)
    logging.info("teacher logits of %d training pairs: %s (%.1f s)", len(pairs),
                 "reused from " + TEACHER_LOGITS_FILE if reused else "computed", time.time() - t0)
    return logits
