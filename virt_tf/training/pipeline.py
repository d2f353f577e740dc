"""The paper's pipeline as a library: the teacher, then the student, from typed options.

`train_pipeline` runs what ``python -m virt_tf.train`` runs, from a `PipelineOptions`
(`virt_tf.config.pipeline_options` builds one from keyword arguments)::

    import virt_tf
    run = virt_tf.pipeline_options("rte", "virt", model_dir="runs/rte_virt",
                                   data_dir="data/rte", epochs=3)
    metrics = virt_tf.train_pipeline(run)    # both stages' results, as metrics.json

When the student's objective needs a teacher (``virt_alpha`` or ``logit_beta`` > 0) the
cross-encoder of ``teacher_dir`` is frozen, or the pipeline's own teacher stage is trained
into ``MODEL_DIR/teacher`` (reused once finished); then ``model`` is trained into
``MODEL_DIR`` (`virt_tf.training.stage.run_stage`: resumable, bit-identical for a seed). The
chief writes both results to ``MODEL_DIR/metrics.json``. Nothing here reads command-line
flags.
"""
import dataclasses
import os
import sys
import time

import tensorflow as tf
from absl import logging

from virt_tf import rundir
from virt_tf.config import preset
from virt_tf.data import tasks
from virt_tf.data.augment import augment_pairs, guard_unlabelled, read_unlabelled
from virt_tf.data.tokenization import BertPairPreprocessor
from virt_tf.errors import ConfigError, StageError
from virt_tf.inference.matcher import read_init_checkpoint
from virt_tf.losses import needs_teacher, objective_from_config
from virt_tf.modeling.checkpoints import default_checkpoint_dir
from virt_tf.modeling.encoder import EncoderConfig
from virt_tf.models.registry import load_classifier
from virt_tf.rundir import METRICS_FILE, TEACHER_DIR, VOCAB
from virt_tf.training.distribute import get_strategy, is_chief
from virt_tf.training.precision import describe, precision_scope, resolve_precision
from virt_tf.training.stage import run_stage


@dataclasses.dataclass(frozen=True)
class _Encoder:
    """The encoder every stage starts from: ``pretrained`` (a `PretrainedBert`, None for a
    random encoder), its ``config`` (`EncoderConfig`) and its vocabulary."""
    pretrained: object
    config: EncoderConfig
    vocab_file: str
    lower_case: bool


def train_pipeline(run):
    """Train what ``run`` (a `PipelineOptions`) asks for; returns the metrics written to
    ``MODEL_DIR/metrics.json`` (a worker other than the chief: ``{"chief": False, ...}``).

    The teacher (``run.teacher_dir``, or the pipeline's teacher stage in
    ``MODEL_DIR/teacher``) when the objective needs one, then ``run.options.model`` into
    ``MODEL_DIR``. Bad options, data or checkpoints raise a `virt_tf.errors.UserError`.
    """
    options, precision_reason = _resolve_precision(run.options)
    debug = run.debug
    task = make_task(run)
    data = load_data(run, task)
    # before anything places a tensor: a strategy may split the CPU into devices
    strategy = get_strategy(run.distribution_strategy, run.tpu, run.cpu_devices)
    encoder = _encoder(run, options)
    debug.check_overflow(options.precision)
    prep = BertPairPreprocessor(encoder.vocab_file, encoder.lower_case, options.max_seq_length)
    truncated = _log_truncated(options, data, prep)
    verbose = run.verbose if run.verbose is not None else (1 if sys.stdout.isatty() else 2)
    os.makedirs(run.model_dir, exist_ok=True)
    t0 = time.time()
    result = {"task": task.name, "model": options.model, "truncated_train_pairs": truncated}
    stage_args = dict(verbose=verbose, strategy=strategy, encoder_config=encoder.config,
                      precision_reason=precision_reason)

    use_teacher = needs_teacher(objective_from_config(options))
    for name in ("augment", "unlabelled"):
        if options[name] and not use_teacher:
            raise ConfigError(f"--{name} adds pairs without a gold label: it needs a teacher "
                              "term (--logit_beta > 0 or --virt_alpha > 0)")
    # read before the teacher trains: a bad file fails at once; the teacher never sees it
    unlabelled = unlabelled_pairs(run, data)
    teacher = None
    if use_teacher:  # the teacher stage never gets the last stage's write fault
        teacher, result["teacher"] = _teacher(run, options, data, encoder, prep, dict(
            stage_args, debug=dataclasses.replace(debug, write_fault=None)))
    student_data = data
    if options.augment:
        student_data, result["augmented_pairs"], extra = augmented(options, student_data)
        result["extra_pairs"] = extra
    if unlabelled is not None:
        student_data, result["unlabelled_pairs"], counts = with_unlabelled(student_data,
                                                                           unlabelled)
        result["extra_pairs"] = dict(result.get("extra_pairs", {}), unlabelled=counts)
    classifier, metrics = run_stage(options.model, run.model_dir, options, student_data,
                                    encoder.pretrained, prep, teacher, debug=debug, **stage_args)
    if debug.worker_weights:
        _save_worker_weights(classifier, strategy, debug.worker_weights)
    if not is_chief(strategy):
        return metrics
    return _write_results(run.model_dir, metrics, result, use_teacher, t0)


def _resolve_precision(options):
    """``(options, reason)``: ``options`` with their precision resolved once (``auto``: from
    the hardware) and logged, and why that policy; every stage runs it."""
    policy, reason = resolve_precision(options.precision)
    logging.info("%s", describe(policy, reason))
    return options.replace(precision=policy), reason


def teacher_options(options):
    """The pipeline's teacher stage: the student's run options, trained on the task loss
    (the unlabelled pairs are the student's only: the teacher's settings do not name them;
    so are the embedding-table options: the teacher trains its table densely)."""
    return options.replace(model="cross", virt_alpha=0.0, logit_beta=0.0, task_weight=1.0,
                           unlabelled=None, freeze_word_embeddings=False,
                           embedding_updates="dense")


def make_task(run):
    """The `virt_tf.data.tasks` task of ``run`` (``pairs``: its fields and labels, read from
    the training file when ``label_names`` is not given)."""
    name = run.options.task
    if name != "pairs":
        return tasks.get_task(name)
    labels = run.label_names
    if not labels:
        if run.data_dir is None:
            raise tasks.DataError("the pairs task needs --data_dir")
        labels = tasks.infer_pair_labels(tasks.split_path(tasks.get_task("pairs"),
                                                          run.data_dir, "train"),
                                         run.label_field)
    metrics = tuple(run.metrics) if run.metrics else ("accuracy",)
    return tasks.get_task("pairs", labels=labels, a_field=run.text_a_field,
                          b_field=run.text_b_field, label_field=run.label_field,
                          metrics=metrics)


def load_data(run, task):
    """``{"task", "train", "tune", "eval", "pool", "skipped_rows"}`` of ``run`` on ``task``
    (`make_task`): the training split less its seeded tune hold-out (cut to
    ``max_train_examples``; the rest is the unlabelled ``pool`` of ``augment``), the tune
    split and the evaluation split."""
    options = run.options
    stats = tasks.ReadStats()
    train_all = tasks.read_split(task, run.data_dir, "train", run.skip_bad_rows, stats)
    train, tune = tasks.hold_out(train_all, options.tune_fraction, seed=options.seed)
    pool = []  # training pairs past --max_train_examples: unlabelled text for --augment=pool
    if options.max_train_examples:
        train, pool = train[: options.max_train_examples], train[options.max_train_examples:]
    if options.max_tune_examples:
        tune = tune[: options.max_tune_examples]
    if options.eval_split == "tune":
        evaluation = tune
    else:
        evaluation = tasks.read_split(task, run.data_dir, options.eval_split,
                                      run.skip_bad_rows, stats)
    if options.max_eval_examples:
        evaluation = evaluation[: options.max_eval_examples]
    if stats.skipped:
        logging.warning("skipped %d bad rows (--skip_bad_rows)", stats.skipped)
    if stats.empty_texts:
        logging.warning("%d empty or whitespace-only texts (kept: they encode as [CLS] [SEP])",
                        stats.empty_texts)
    logging.info("train %d, tune %d, %s %d", len(train), len(tune), options.eval_split,
                 len(evaluation))
    return {"task": task, "train": train, "tune": tune if options.eval_split != "tune" else [],
            "eval": evaluation, "skipped_rows": stats.skipped, "pool": pool}


def augmented(options, data):
    """``(data, count, counts)``: the student's data with the teacher-labelled extra pairs of
    ``options.augment`` added (label -1; `virt_tf.data.augment`), their count, and each
    source's counts (``{source: {"candidates", "eval_pair", "eval_only_text", "gold_pair",
    "used"}}``). The leak guard keeps the tune and evaluation pairs, and the texts only they
    hold, out of every extra pair (`virt_tf.data.augment.LeakGuard`)."""
    counts = {}
    extra = augment_pairs(data["train"], options.augment, options.augment_multiple,
                          options.seed, pool=data["pool"], held_out=data["tune"] + data["eval"],
                          counts=counts)
    for source, c in counts.items():
        _log_guard(source, c)
    logging.info("augmentation %s x%s: %d teacher-labelled pairs beside %d gold pairs",
                 ",".join(options.augment), options.augment_multiple, len(extra),
                 len(data["train"]))
    return dict(data, train=data["train"] + extra), len(extra), counts


def unlabelled_pairs(run, data):
    """``(path, examples, counts)`` of ``run.options.unlabelled`` (None without one): its
    pairs, read with the ``pairs`` task's field options (`virt_tf.data.augment.read_unlabelled`),
    less those that are gold training pairs or break the leak guard against the tune and
    evaluation pairs of ``data`` (`virt_tf.data.augment.guard_unlabelled`), with the counts.
    A file left without a pair raises `DataError`."""
    path = run.options.unlabelled
    if not path:
        return None
    stats = tasks.ReadStats()
    read = read_unlabelled(path, run.text_a_field, run.text_b_field, run.skip_bad_rows, stats)
    if stats.skipped:
        logging.warning("%s: skipped %d bad rows (--skip_bad_rows)", path, stats.skipped)
    kept, counts = guard_unlabelled(read, data["train"], data["tune"] + data["eval"])
    counts["skipped_rows"] = stats.skipped
    _log_guard("unlabelled", counts)
    if not kept:
        raise tasks.DataError(f"{path}: none of its {len(read)} pairs is left to train on "
                              f"({counts['eval_pair']} equal a tune or evaluation pair, "
                              f"{counts['eval_only_text']} hold a text only those pairs hold, "
                              f"{counts['gold_pair']} are gold training pairs)")
    return path, kept, counts


def with_unlabelled(data, unlabelled):
    """``(data, count, counts)``: the student's ``data`` with the pairs of ``unlabelled``
    (`unlabelled_pairs`) added after its training pairs (label -1: the teacher labels them)
    and recorded as ``data["unlabelled"]`` (the stage's settings fingerprint them)."""
    path, kept, counts = unlabelled
    logging.info("%s: %d unlabelled pairs for the teacher to label, beside %d training pairs",
                 path, len(kept), len(data["train"]))
    return dict(data, train=data["train"] + kept, unlabelled=kept), len(kept), counts


def _log_guard(source, counts):
    """Log what the leak guard dropped of ``source``'s pairs."""
    logging.info("leak guard, %s: %d of %d pairs used; dropped %d equal to a tune or "
                 "evaluation pair, %d holding a text only those pairs hold, %d gold pairs",
                 source, counts["used"], counts["candidates"], counts["eval_pair"],
                 counts["eval_only_text"], counts["gold_pair"])


def _encoder(run, options):
    """The `_Encoder` of ``run``: the pretrained BERT of ``init_checkpoint``, or a random
    ``encoder_preset`` with ``vocab_file`` (default: the default checkpoint's); with
    ``encoder_dropout_rate``, the whole model's dropout. Refuses a ``max_seq_length``
    longer than the encoder's positions."""
    if run.encoder_preset:
        pretrained = None
        config = EncoderConfig.from_dict(preset(run.encoder_preset))
        vocab = run.vocab_file or os.path.join(default_checkpoint_dir(), VOCAB)
        lower_case = True
    else:
        pretrained = read_init_checkpoint(run.init_checkpoint)
        config, vocab, lower_case = pretrained.config, pretrained.vocab_file, pretrained.lower_case
    if run.encoder_dropout_rate is not None:  # the whole model's dropout, encoder included
        config = dataclasses.replace(config, hidden_dropout_prob=run.encoder_dropout_rate,
                                     attention_probs_dropout_prob=run.encoder_dropout_rate)
    if options.max_seq_length > config.max_position_embeddings:
        raise ConfigError(f"max_seq_length {options.max_seq_length} is longer than the "
                          f"encoder's {config.max_position_embeddings} positions")
    return _Encoder(pretrained, config, vocab, lower_case)


def _log_truncated(options, data, prep):
    """Log how many training and evaluation pairs are longer than ``max_seq_length`` (they
    are truncated, longest text first); returns the training count."""
    texts_a = tf.constant([e.text_a for e in data["train"]])
    texts_b = tf.constant([e.text_b for e in data["train"]])
    truncated = prep.count_truncated(texts_a, texts_b)
    logging.info("%d of %d training pairs are longer than max_seq_length=%d and are truncated "
                 "(longest first)", truncated, len(data["train"]), options.max_seq_length)
    eval_truncated = prep.count_truncated(tf.constant([e.text_a for e in data["eval"]]),
                                          tf.constant([e.text_b for e in data["eval"]]))
    if eval_truncated:
        logging.info("%d of %d %s pairs are longer than max_seq_length=%d and are truncated",
                     eval_truncated, len(data["eval"]), options.eval_split,
                     options.max_seq_length)
    return truncated


def _teacher(run, options, data, encoder, prep, stage_args):
    """``(teacher, metrics)``: the frozen teacher, mirrored under the stage's strategy, and
    its results. The cross-encoder of ``run.teacher_dir``, else the pipeline's teacher
    stage (``teacher_epochs`` long), trained into (or reused from) ``MODEL_DIR/teacher``."""
    strategy = stage_args["strategy"]
    if run.teacher_dir:
        teacher, metrics = _given_teacher(run.teacher_dir, options, strategy)
    else:
        teacher_dir = rundir.path(run.model_dir, TEACHER_DIR)
        run_stage("cross", teacher_dir, teacher_options(options), data, encoder.pretrained,
                  prep, epochs=options.teacher_epochs or options.epochs, **stage_args)
        wait_for_file(rundir.path(teacher_dir, METRICS_FILE))  # the chief's
        metrics = rundir.read_metrics(teacher_dir)
        with precision_scope(options.precision), strategy.scope():
            teacher, _ = load_classifier(teacher_dir)  # mirrored, frozen
    logging.info("teacher %s: %s", options.eval_split, metrics.get("accuracy"))
    return teacher, metrics


def _given_teacher(teacher_dir, options, strategy):
    """``(teacher, metrics)`` of ``teacher_dir``, which must hold a model that reads the
    pair jointly (a cross-encoder); its metrics (empty when it has none) name the folder."""
    with precision_scope(options.precision), strategy.scope():
        teacher, tconf = load_classifier(teacher_dir)  # mirrored, frozen
    if "pair" not in teacher.input_packings:
        raise ConfigError(f"--teacher_dir {teacher_dir} holds a {tconf['model']} model, which "
                          "encodes its texts apart; the teacher must read the pair jointly (a "
                          "cross-encoder)")
    metrics = rundir.read_metrics(teacher_dir) if rundir.has_metrics(teacher_dir) else {}
    metrics["dir"] = teacher_dir
    return teacher, metrics


def _save_worker_weights(classifier, strategy, folder):
    """Testing only (``--debug_worker_weights``): this worker's final weights in
    ``folder/worker_<task id>.weights.h5``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", 0) or 0
    os.makedirs(folder, exist_ok=True)
    classifier.save_weights(os.path.join(folder, f"worker_{task_id}.weights.h5"))


def _write_results(model_dir, metrics, result, use_teacher, t0):
    """Write ``model_dir/metrics.json``: the last stage's ``metrics`` with the teacher's
    beside them and the run's facts (``result``: truncated, augmented and unlabelled pairs,
    the leak guard's counts ``extra_pairs``), and the wall time since ``t0``. Returns what
    it wrote."""
    if use_teacher:
        metrics = dict(metrics, teacher=result["teacher"])
    metrics.update({k: v for k, v in result.items() if k != "teacher"})
    metrics["wall_seconds"] = round(time.time() - t0, 1)
    rundir.write_json(rundir.path(model_dir, METRICS_FILE), metrics)
    return metrics


def wait_for_file(path, timeout=600):
    """Wait for the chief to write ``path`` (a non-chief worker of a cluster)."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise StageError(f"{path}: not written by the chief after {timeout} s")
        time.sleep(0.5)
