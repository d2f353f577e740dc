"""`python -m virt_tf.train`: the paper's pipeline in one command.

* ``--model=cross`` fine-tunes the interaction-based teacher.
* ``--model=virt`` (default) or ``--model=siamese`` with ``--virt_alpha > 0``:
  trains the teacher into ``MODEL_DIR/teacher`` (or reuses ``--teacher_dir``,
  or a teacher stage that already finished), freezes it, then trains the
  Siamese student with `CE + alpha * L_virt` into ``MODEL_DIR``; both dev
  results land in ``MODEL_DIR/metrics.json``.
* ``--virt_alpha=0`` gives "w/o VIRT"; ``--virt_head=simple`` gives "w/o VIRT-A".

Defaults come from configs/base.yaml and configs/tasks/<task>.yaml; a flag
given on the command line overrides them.

Reliability: a killed run (SIGKILL included) resumes from its last checkpoint
(every ``--checkpoint_steps``) when the same command is run again, with the
same data order and dropout, so it ends where an uninterrupted run of the same
``--seed`` ends; a finished teacher stage is reused, not trained again. Bad
input (data, config, checkpoints) and a NaN/Inf loss end with one line
``error: ...`` on stderr and exit code 2.
"""
import os
import sys
import time

from absl import flags, logging

from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, run
from virt_tf.config import model_names
from virt_tf.cli.paths import PathFlag
from virt_tf.training.safe_writes import parse_write_fault

FLAGS = flags.FLAGS

flags.DEFINE_string("task", "rte", "rte | mrpc | qqp | mnli | boolq | pairs")
flags.DEFINE_enum("model", "virt", model_names(), "Model to train: cross (teacher), siamese, "
                  "virt (VIRT-encoder), deformer, dipair, poly, dse.")
flags.DEFINE_string("data_dir", None, "Task files in the official layout; "
                    "tensorflow-datasets when not given.")
flags.DEFINE_string("model_dir", None, "Output directory (required).")
flags.DEFINE_string("teacher_dir", None, "A trained cross-encoder to reuse as the teacher.")
flags.DEFINE_string("init_checkpoint", None, "Pretrained BERT: HF directory, TF1 BERT checkpoint "
                    "or Model Garden checkpoint, or a model directory trained by "
                    "virt_tf (its encoder; intermediate fine-tuning such as MNLI before RTE). "
                    "Default: the MiniLM-L6 package.")
flags.DEFINE_string("encoder_preset", None, "Random-init encoder of configs/presets/NAME.yaml "
                    "instead of pretrained weights (tests, cost benchmarks).")
flags.DEFINE_string("vocab_file", None, "Vocabulary for --encoder_preset (default: the "
                    "default checkpoint's).")
flags.DEFINE_string("config", None, "Extra YAML file of options.")
flags.DEFINE_integer("epochs", None, "Training epochs (paper: MNLI 5, RTE 30, QQP 5, BoolQ 30).")
flags.DEFINE_integer("teacher_epochs", None, "Teacher epochs in the pipeline (default: --epochs).")
flags.DEFINE_float("learning_rate", None, "Peak learning rate (paper: 5e-5).")
flags.DEFINE_integer("batch_size", None, "Batch size (paper: 28).")
flags.DEFINE_float("warmup_ratio", None, "Share of steps of linear warmup (paper: 0.1).")
flags.DEFINE_integer("max_seq_length", None, "Pair length budget in word pieces.")
flags.DEFINE_integer("seed", None, "Seed of data order, initialisation and dropout.")
flags.DEFINE_float("virt_alpha", None, "Weight of L_virt (Eq. 10); 0 = w/o VIRT.")
flags.DEFINE_enum("virt_head", None, ["adapted", "simple"], "Head of --model=virt; "
                  "simple = w/o VIRT-A.")
flags.DEFINE_enum("fusion", None, ["paper", "code", "concat"], "Eq. 9 features: paper, "
                  "released code, or concat (the paper's literal [u; v] Siamese head).")
flags.DEFINE_bool("pool_padding", None, "Mean over the padded length in Eq. 8 (released code).")
flags.DEFINE_enum("virt_norm", None, ["squared", "frobenius", "kl"], "Distance of Eq. 7: "
                  "squared Frobenius (default), Frobenius, or per-row KL(teacher || student).")
flags.DEFINE_string("recipe", None, "A named training recipe, configs/recipes/NAME.yaml (its "
                    "options; flags given on the command line override them).")
flags.DEFINE_enum("distill_loss", None, ["kl", "mse"], "Logit distillation: tempered KL "
                  "(DSE) or the mean squared difference of the logits.")
flags.DEFINE_bool("cache_teacher_logits", None, "Compute the frozen teacher's logits of the "
                  "training pairs once a stage (when no term needs its attention scores).")
flags.DEFINE_enum("virt_alpha_schedule", None, ["constant", "linear"], "alpha over training: "
                  "constant, or decaying linearly to 0.")
flags.DEFINE_enum("virt_pairs", None, ["all", "augmented", "gold"], "Pairs L_virt applies "
                  "to: all, the teacher-labelled augmented ones only, or the gold ones only.")
flags.DEFINE_list("augment", None, "Teacher-labelled extra pairs from the training texts: "
                  "pool (training pairs past --max_train_examples, gold labels dropped), "
                  "random, overlap (re-paired), edit (edited second text).")
flags.DEFINE_float("augment_multiple", None, "Extra pairs per gold training pair.")
flags.DEFINE_list("virt_layers", None, "Student layers to distil (default all).")
flags.DEFINE_float("logit_beta", None, "Weight of DSE-style logit distillation.")
flags.DEFINE_float("temperature", None, "Temperature of the logit distillation.")
flags.DEFINE_float("task_weight", None, "Weight of the cross-entropy (DSE: 0.5).")
flags.DEFINE_integer("deformer_joint_layers", None, "DeFormer: upper layers run jointly "
                     "(paper: 1).")
flags.DEFINE_integer("dipair_x_tokens", None, "DiPair: first states of x read online (8).")
flags.DEFINE_integer("dipair_y_tokens", None, "DiPair: first states of y read online (16).")
flags.DEFINE_integer("poly_codes", None, "Poly-encoder: learned codes (paper: 360).")
flags.DEFINE_integer("poly_first_m", None, "Poly-encoder: use x's first m states instead of "
                     "learned codes (released code: 64).")
flags.DEFINE_enum("precision", None, ["float32", "mixed_bfloat16", "mixed_float16", "auto"],
                  "Compute precision of training (weights and losses stay float32; "
                  "mixed_float16 with dynamic loss scaling; auto: from the hardware, "
                  "docs/precision.md).")
flags.DEFINE_bool("length_buckets", None, "Batches of similar length (seeded, deterministic).")
flags.DEFINE_bool("jit_compile", None, "Compile the train step with XLA.")
flags.DEFINE_enum("select_epoch", None, ["last", "best_tune"], "Keep the last epoch's weights "
                  "or those of the epoch with the best tune-split accuracy.")
flags.DEFINE_enum("distribution_strategy", "default", ["default", "mirrored",
                                                       "multi_worker_mirrored", "tpu"],
                  "tf.distribute strategy (multi_worker_mirrored reads TF_CONFIG); "
                  "--batch_size stays the global batch.")
flags.DEFINE_string("tpu", None, "TPU address or name for --distribution_strategy=tpu.")
flags.DEFINE_integer("cpu_devices", None, "Split the CPU into N logical devices (mirrored "
                     "training on a CPU: tests, debugging).")
flags.DEFINE_float("dropout_rate", None, "Dropout of the head, and of the encoder when given "
                   "(default: the checkpoint's own).")
flags.DEFINE_string("debug_worker_weights", None, "Testing only: every worker writes its "
                    "final weights to DIR/worker_<task id>.weights.h5.")
flags.DEFINE_integer("max_train_examples", None, "Use the first N training examples "
                     "(after the tuning hold-out).")
flags.DEFINE_integer("max_eval_examples", None, "Score the first N evaluation examples.")
flags.DEFINE_integer("max_tune_examples", None, "Use the first N pairs of the tune split "
                     "(per-epoch validation and epoch choice; quick runs).")
flags.DEFINE_float("tune_fraction", None, "Share of train held out for tuning (paper: 0.1).")
flags.DEFINE_string("eval_split", None, "dev (default), dev_matched, dev_mismatched, or tune "
                    "(the held-out share of train, for hyper-parameter sweeps).")
flags.DEFINE_bool("skip_bad_rows", False, "Skip and count malformed rows instead of failing.")
flags.DEFINE_integer("checkpoint_steps", None, "Save a resumable checkpoint every N steps.")
flags.DEFINE_list("label_names", None, "pairs task: label names in index order "
                  "(default: sorted distinct labels of train).")
flags.DEFINE_string("text_a_field", "text_a", "pairs task: first text field.")
flags.DEFINE_string("text_b_field", "text_b", "pairs task: second text field.")
flags.DEFINE_string("label_field", "label", "pairs task: label field.")
flags.DEFINE_list("metrics", None, "pairs task: metrics (accuracy, f1, roc_auc).")
flags.DEFINE_integer("verbose", None, "Keras verbosity (1 progress bar, 2 one line an epoch).")
flags.DEFINE_integer("debug_nan_at_step", None, "Testing only: make the loss of this optimizer "
                     "step NaN (checks that the run stops and keeps its last good checkpoint).")
flags.DEFINE_string("debug_write_fault", None, "Testing only: fail one write of the last stage "
                    "as a full disk or a read-only folder would: checkpoint@STEP:ERRNO (the "
                    "checkpoint of that step) or model:ERRNO (the final model files), ERRNO "
                    "ENOSPC or EACCES.")

# Every path flag, checked before any work (`virt_tf.cli.paths`).
PATH_FLAGS = (PathFlag("data_dir", paths.INPUT_DIR), PathFlag("teacher_dir", paths.MODEL_DIR),
              PathFlag("init_checkpoint", paths.CHECKPOINT, unless=("encoder_preset",)),
              PathFlag("vocab_file", paths.INPUT_FILE),
              PathFlag("config", paths.INPUT_FILE, allow_empty=True),
              PathFlag("model_dir", paths.OUTPUT_DIR),
              PathFlag("debug_worker_weights", paths.OUTPUT_DIR))
flags.DEFINE_integer("debug_overflow_at_step", None, "Testing only, mixed_float16: make the "
                     "scaled gradients of this step overflow (the step is skipped).")

OVERRIDABLE = ("epochs", "teacher_epochs", "learning_rate", "batch_size", "warmup_ratio",
               "max_seq_length", "seed", "virt_alpha", "virt_head", "fusion", "pool_padding",
               "virt_norm", "logit_beta", "temperature", "task_weight", "max_train_examples",
               "max_eval_examples", "max_tune_examples", "tune_fraction", "eval_split", "checkpoint_steps",
               "deformer_joint_layers", "dipair_x_tokens", "dipair_y_tokens", "poly_codes",
               "poly_first_m", "precision", "length_buckets", "jit_compile", "select_epoch",
               "dropout_rate", "distill_loss", "cache_teacher_logits", "virt_alpha_schedule",
               "virt_pairs", "augment", "augment_multiple")


def resolve_config():
    from virt_tf.config import load_config  # pylint: disable=import-outside-toplevel
    overrides = {k: getattr(FLAGS, k) for k in OVERRIDABLE}
    if FLAGS.virt_layers is not None:
        overrides["virt_layers"] = [int(x) for x in FLAGS.virt_layers]
    return load_config(FLAGS.task, FLAGS.model, FLAGS.config, overrides, recipe=FLAGS.recipe)


def teacher_config(cfg):
    """The pipeline's teacher stage: the student's run options, trained on the task loss."""
    return dict(cfg, model="cross", virt_alpha=0.0, logit_beta=0.0, task_weight=1.0,
                _pipeline_teacher=True)


def load_data(cfg, task):
    from virt_tf.data import tasks  # pylint: disable=import-outside-toplevel
    stats = tasks.ReadStats()
    train_all = tasks.read_split(task, FLAGS.data_dir, "train", FLAGS.skip_bad_rows, stats)
    train, tune = tasks.hold_out(train_all, cfg["tune_fraction"], seed=cfg["seed"])
    pool = []  # training pairs past --max_train_examples: unlabelled text for --augment=pool
    if cfg["max_train_examples"]:
        train, pool = train[: cfg["max_train_examples"]], train[cfg["max_train_examples"]:]
    if cfg.get("max_tune_examples"):
        tune = tune[: cfg["max_tune_examples"]]
    if cfg["eval_split"] == "tune":
        evaluation = tune
    else:
        evaluation = tasks.read_split(task, FLAGS.data_dir, cfg["eval_split"],
                                      FLAGS.skip_bad_rows, stats)
    if cfg["max_eval_examples"]:
        evaluation = evaluation[: cfg["max_eval_examples"]]
    if stats.skipped:
        logging.warning("skipped %d bad rows (--skip_bad_rows)", stats.skipped)
    if stats.empty_texts:
        logging.warning("%d empty or whitespace-only texts (kept: they encode as [CLS] [SEP])",
                        stats.empty_texts)
    logging.info("train %d, tune %d, %s %d", len(train), len(tune), cfg["eval_split"],
                 len(evaluation))
    return {"task": task, "train": train, "tune": tune if cfg["eval_split"] != "tune" else [],
            "eval": evaluation, "skipped_rows": stats.skipped, "pool": pool}


def augmented(cfg, data):
    """The student's data with the teacher-labelled extra pairs of ``cfg["augment"]`` added
    (label -1; `virt_tf.data.augment`), and their count. Tune and evaluation texts never
    enter a generated pair."""
    from virt_tf.data.augment import augment_pairs  # pylint: disable=import-outside-toplevel
    forbidden = [t for e in data["tune"] + data["eval"] for t in (e.text_a, e.text_b)]
    extra = augment_pairs(data["train"], cfg["augment"], cfg["augment_multiple"], cfg["seed"],
                          pool=data["pool"], forbidden_texts=forbidden)
    logging.info("augmentation %s x%s: %d teacher-labelled pairs beside %d gold pairs",
                 ",".join(cfg["augment"]), cfg["augment_multiple"], len(extra),
                 len(data["train"]))
    return dict(data, train=data["train"] + extra), len(extra)


def make_task(cfg):
    from virt_tf.data import tasks  # pylint: disable=import-outside-toplevel
    if FLAGS.task != "pairs":
        return tasks.get_task(FLAGS.task)
    labels = FLAGS.label_names
    if not labels:
        if FLAGS.data_dir is None:
            raise tasks.DataError("the pairs task needs --data_dir")
        labels = tasks.infer_pair_labels(tasks.split_path(tasks.get_task("pairs"),
                                                          FLAGS.data_dir, "train"),
                                         FLAGS.label_field)
    metrics = tuple(FLAGS.metrics) if FLAGS.metrics else ("accuracy",)
    del cfg
    return tasks.get_task("pairs", labels=labels, a_field=FLAGS.text_a_field,
                          b_field=FLAGS.text_b_field, label_field=FLAGS.label_field,
                          metrics=metrics)


def _train():
    """Check the flags and every path, then train; OS errors on the user's paths are
    user errors (`virt_tf.cli.paths.os_errors_as_user_errors`)."""
    from virt_tf.config import ConfigError  # pylint: disable=import-outside-toplevel

    # Configuration, paths and data first: their errors need no TensorFlow and come at once.
    if not FLAGS.model_dir:
        raise ConfigError("--model_dir is required")
    if FLAGS.debug_nan_at_step is not None and FLAGS.debug_nan_at_step < 1:
        raise ConfigError(f"--debug_nan_at_step must be >= 1, got {FLAGS.debug_nan_at_step}")
    try:
        parse_write_fault(FLAGS.debug_write_fault)
    except ValueError as e:
        raise ConfigError(f"--debug_write_fault: {e}") from e
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        return _train_checked()


def _train_checked():
    """Train what the checked flags ask for: the teacher (``--teacher_dir``, or the
    pipeline's teacher stage in ``MODEL_DIR/teacher``) when the objective needs one, then
    ``--model`` into ``MODEL_DIR``; the chief writes both results to its metrics.json."""
    from virt_tf.config import ConfigError  # pylint: disable=import-outside-toplevel

    cfg = _resolved_config()
    task = make_task(cfg)
    data = load_data(cfg, task)

    from virt_tf.training.distribute import get_strategy, is_chief  # pylint: disable=import-outside-toplevel
    # before anything places a tensor: a strategy may split the CPU into devices
    strategy = get_strategy(FLAGS.distribution_strategy, FLAGS.tpu, FLAGS.cpu_devices)
    from virt_tf.data.tokenization import BertPairPreprocessor  # pylint: disable=import-outside-toplevel
    from virt_tf.losses import needs_teacher, objective_from_config  # pylint: disable=import-outside-toplevel
    from virt_tf.training import stage as training  # pylint: disable=import-outside-toplevel

    pretrained, vocab, lower_case = _encoder(cfg)
    _add_debug_options(cfg)
    prep = BertPairPreprocessor(vocab, lower_case, cfg["max_seq_length"])
    truncated = _log_truncated(cfg, data, prep)
    verbose = FLAGS.verbose if FLAGS.verbose is not None else (1 if sys.stdout.isatty() else 2)
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    t0 = time.time()
    result = {"task": task.name, "model": FLAGS.model, "truncated_train_pairs": truncated}

    use_teacher = needs_teacher(objective_from_config(cfg))
    if cfg["augment"] and not use_teacher:
        raise ConfigError("--augment adds pairs without a gold label: it needs a teacher term "
                          "(--logit_beta > 0 or --virt_alpha > 0)")
    teacher = None
    if use_teacher:
        teacher, result["teacher"] = _teacher(cfg, data, pretrained, prep, verbose, strategy)
    if FLAGS.debug_write_fault:  # testing only: the last stage's writes
        cfg["_debug_write_fault"] = FLAGS.debug_write_fault
    student_data = data
    if cfg["augment"]:
        student_data, result["augmented_pairs"] = augmented(cfg, data)
    classifier, metrics = training.run_stage(FLAGS.model, FLAGS.model_dir, cfg, student_data,
                                             pretrained, prep, teacher=teacher,
                                             verbose=verbose, strategy=strategy)
    if FLAGS.debug_worker_weights:
        _save_worker_weights(classifier, strategy)
    if not is_chief(strategy):
        print(f"worker done: the chief writes {FLAGS.model_dir}")
        return 0
    _write_results(cfg, task, metrics, result, use_teacher, t0)
    return 0


def _resolved_config():
    """`resolve_config` with its precision resolved once (``auto``: from the hardware) and
    logged; every stage of the run uses it."""
    cfg = resolve_config()
    from virt_tf.training.precision import describe, resolve_precision  # pylint: disable=import-outside-toplevel
    cfg["precision"], cfg["_precision_reason"] = resolve_precision(cfg["precision"])
    logging.info("%s", describe(cfg["precision"], cfg["_precision_reason"]))
    return cfg


def _encoder(cfg):
    """``(pretrained, vocab_file, lower_case)``: the pretrained BERT of ``--init_checkpoint``
    (None for a random ``--encoder_preset``) and its vocabulary. Sets
    ``cfg["encoder_config"]`` (with ``--dropout_rate``, the whole model's dropout) and
    refuses a ``max_seq_length`` longer than the encoder's positions."""
    import dataclasses  # pylint: disable=import-outside-toplevel
    from virt_tf.config import ConfigError, preset  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.matcher import read_init_checkpoint  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.checkpoints import default_checkpoint_dir  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.encoder import EncoderConfig  # pylint: disable=import-outside-toplevel

    if FLAGS.encoder_preset:
        pretrained = None
        cfg["encoder_config"] = EncoderConfig.from_dict(preset(FLAGS.encoder_preset))
        vocab = FLAGS.vocab_file or os.path.join(default_checkpoint_dir(), "vocab.txt")
        lower_case = True
    else:
        pretrained = read_init_checkpoint(FLAGS.init_checkpoint)
        cfg["encoder_config"] = pretrained.config
        vocab, lower_case = pretrained.vocab_file, pretrained.lower_case
    if FLAGS.dropout_rate is not None:  # the whole model's dropout, encoder included
        cfg["encoder_config"] = dataclasses.replace(
            cfg["encoder_config"], hidden_dropout_prob=FLAGS.dropout_rate,
            attention_probs_dropout_prob=FLAGS.dropout_rate)
    if cfg["max_seq_length"] > cfg["encoder_config"].max_position_embeddings:
        raise ConfigError(f"max_seq_length {cfg['max_seq_length']} is longer than the encoder's "
                          f"{cfg['encoder_config'].max_position_embeddings} positions")
    return pretrained, vocab, lower_case


def _add_debug_options(cfg):
    """Testing only: put ``--debug_nan_at_step`` and ``--debug_overflow_at_step`` (which
    needs ``mixed_float16``) into ``cfg`` for every stage."""
    from virt_tf.config import ConfigError  # pylint: disable=import-outside-toplevel
    if FLAGS.debug_nan_at_step:
        cfg["_debug_nan_at_step"] = FLAGS.debug_nan_at_step
    if FLAGS.debug_overflow_at_step is not None:
        if FLAGS.debug_overflow_at_step < 1 or cfg["precision"] != "mixed_float16":
            raise ConfigError("--debug_overflow_at_step needs a step >= 1 and "
                              f"--precision=mixed_float16 (got {FLAGS.debug_overflow_at_step},"
                              f" {cfg['precision']})")
        cfg["_debug_overflow_at_step"] = FLAGS.debug_overflow_at_step


def _log_truncated(cfg, data, prep):
    """Log how many training and evaluation pairs are longer than ``max_seq_length`` (they
    are truncated, longest text first); returns the training count."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    texts_a = tf.constant([e.text_a for e in data["train"]])
    texts_b = tf.constant([e.text_b for e in data["train"]])
    truncated = prep.count_truncated(texts_a, texts_b)
    logging.info("%d of %d training pairs are longer than max_seq_length=%d and are truncated "
                 "(longest first)", truncated, len(data["train"]), cfg["max_seq_length"])
    eval_truncated = prep.count_truncated(tf.constant([e.text_a for e in data["eval"]]),
                                          tf.constant([e.text_b for e in data["eval"]]))
    if eval_truncated:
        logging.info("%d of %d %s pairs are longer than max_seq_length=%d and are truncated",
                     eval_truncated, len(data["eval"]), cfg["eval_split"], cfg["max_seq_length"])
    return truncated


def _teacher(cfg, data, pretrained, prep, verbose, strategy):
    """``(teacher, metrics)``: the frozen teacher, mirrored under ``strategy``, and its
    results. The cross-encoder of ``--teacher_dir``, else the pipeline's teacher stage,
    trained into (or reused from) ``MODEL_DIR/teacher``."""
    from virt_tf.models.registry import load_classifier  # pylint: disable=import-outside-toplevel
    from virt_tf.training import stage as training  # pylint: disable=import-outside-toplevel
    if FLAGS.teacher_dir:
        teacher, metrics = _given_teacher(cfg, strategy)
    else:
        teacher_dir = os.path.join(FLAGS.model_dir, "teacher")
        training.run_stage("cross", teacher_dir, teacher_config(cfg), data, pretrained, prep,
                           verbose=verbose, strategy=strategy)
        wait_for_file(os.path.join(teacher_dir, training.METRICS_FILE))  # the chief's
        metrics = training.read_metrics(teacher_dir)
        with training.precision_scope(cfg["precision"]), strategy.scope():
            teacher, _ = load_classifier(teacher_dir)  # mirrored, frozen
    logging.info("teacher %s: %s", cfg["eval_split"], metrics.get("accuracy"))
    return teacher, metrics


def _given_teacher(cfg, strategy):
    """``(teacher, metrics)`` of ``--teacher_dir``, which must hold a model that reads the
    pair jointly (a cross-encoder); its metrics (empty when it has none) name the folder."""
    from virt_tf.config import ConfigError  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import load_classifier  # pylint: disable=import-outside-toplevel
    from virt_tf.training import stage as training  # pylint: disable=import-outside-toplevel
    with training.precision_scope(cfg["precision"]), strategy.scope():
        teacher, tconf = load_classifier(FLAGS.teacher_dir)  # mirrored, frozen
    if "pair" not in teacher.input_packings:
        raise ConfigError(f"--teacher_dir {FLAGS.teacher_dir} holds a "
                          f"{tconf['model']} model, which encodes its texts apart; the "
                          "teacher must read the pair jointly (a cross-encoder)")
    tmetrics_path = os.path.join(FLAGS.teacher_dir, training.METRICS_FILE)
    metrics = training.read_metrics(FLAGS.teacher_dir) if os.path.exists(tmetrics_path) else {}
    metrics["dir"] = FLAGS.teacher_dir
    return teacher, metrics


def _save_worker_weights(classifier, strategy):
    """Testing only (``--debug_worker_weights``): this worker's final weights in
    ``DIR/worker_<task id>.weights.h5``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", 0) or 0
    os.makedirs(FLAGS.debug_worker_weights, exist_ok=True)
    classifier.save_weights(os.path.join(FLAGS.debug_worker_weights,
                                         f"worker_{task_id}.weights.h5"))


def _write_results(cfg, task, metrics, result, use_teacher, t0):
    """``MODEL_DIR/metrics.json``: the last stage's ``metrics`` with the teacher's beside them
    and the run's facts (``result``: truncated and augmented pairs), and the wall time since
    ``t0``; prints the one-line result."""
    from virt_tf.training import stage as training  # pylint: disable=import-outside-toplevel
    if use_teacher:
        metrics = dict(metrics, teacher=result["teacher"])
    metrics.update({k: v for k, v in result.items() if k != "teacher"})
    metrics["wall_seconds"] = round(time.time() - t0, 1)
    training.write_json(os.path.join(FLAGS.model_dir, training.METRICS_FILE), metrics)
    print(f"{FLAGS.model} {task.name} {cfg['eval_split']}: accuracy {metrics['accuracy']:.4f}"
          + (f" (teacher {metrics['teacher'].get('accuracy', float('nan')):.4f})"
             if use_teacher else ""))


def wait_for_file(path, timeout=600):
    """Wait for the chief to write ``path`` (a non-chief worker of a cluster)."""
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            from virt_tf.errors import StageError  # pylint: disable=import-outside-toplevel
            raise StageError(f"{path}: not written by the chief after {timeout} s")
        time.sleep(0.5)


main = absl_main(_train)

if __name__ == "__main__":
    run(_train)
