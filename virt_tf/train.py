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
import math

from absl import flags

from virt_tf import options as run_options
from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, run
from virt_tf.cli.paths import PathFlag
from virt_tf.config import model_names, pipeline_options
from virt_tf.errors import ConfigError
from virt_tf.options import DebugOptions

# The flags and path checks only: the pipeline (`virt_tf.training.pipeline`) loads
# TensorFlow, and is imported once they pass, so that --help and flag or path errors come
# at once.

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
# One flag per run option (`virt_tf.options.RunOptions`: its name, type, choices and help).
run_options.define_flags(FLAGS)
flags.adopt_module_key_flags(run_options)
flags.DEFINE_enum("distribution_strategy", "default", ["default", "mirrored",
                                                       "multi_worker_mirrored", "tpu"],
                  "tf.distribute strategy (multi_worker_mirrored reads TF_CONFIG); "
                  "--batch_size stays the global batch.")
flags.DEFINE_string("tpu", None, "TPU address or name for --distribution_strategy=tpu.")
flags.DEFINE_integer("cpu_devices", None, "Split the CPU into N logical devices (mirrored "
                     "training on a CPU: tests, debugging).")
flags.DEFINE_bool("skip_bad_rows", False, "Skip and count malformed rows instead of failing.")
flags.DEFINE_list("label_names", None, "pairs task: label names in index order "
                  "(default: sorted distinct labels of train).")
flags.DEFINE_string("text_a_field", "text_a", "pairs task: first text field.")
flags.DEFINE_string("text_b_field", "text_b", "pairs task: second text field.")
flags.DEFINE_string("label_field", "label", "pairs task: label field.")
flags.DEFINE_list("metrics", None, "pairs task: metrics (accuracy, f1, roc_auc).")
flags.DEFINE_integer("verbose", None, "Keras verbosity (1 progress bar, 2 one line an epoch).")
flags.DEFINE_string("debug_worker_weights", None, "Testing only: every worker writes its "
                    "final weights to DIR/worker_<task id>.weights.h5.")
flags.DEFINE_integer("debug_nan_at_step", None, "Testing only: make the loss of this optimizer "
                     "step NaN (checks that the run stops and keeps its last good checkpoint).")
flags.DEFINE_string("debug_write_fault", None, "Testing only: fail one write of the last stage "
                    "as a full disk or a read-only folder would: checkpoint@STEP:ERRNO (the "
                    "checkpoint of that step) or model:ERRNO (the final model files), ERRNO "
                    "ENOSPC or EACCES.")
flags.DEFINE_integer("debug_overflow_at_step", None, "Testing only, mixed_float16: make the "
                     "scaled gradients of this step overflow (the step is skipped).")

# Every path flag, checked before any work (`virt_tf.cli.paths`).
PATH_FLAGS = (PathFlag("data_dir", paths.INPUT_DIR), PathFlag("teacher_dir", paths.MODEL_DIR),
              PathFlag("init_checkpoint", paths.CHECKPOINT, unless=("encoder_preset",)),
              PathFlag("vocab_file", paths.INPUT_FILE),
              PathFlag("config", paths.INPUT_FILE, allow_empty=True),
              PathFlag("unlabelled", paths.INPUT_FILE),
              PathFlag("model_dir", paths.OUTPUT_DIR),
              PathFlag("debug_worker_weights", paths.OUTPUT_DIR))

# The flags of the run's inputs (`virt_tf.options.PipelineOptions`), by field.
INPUT_FLAGS = ("data_dir", "teacher_dir", "init_checkpoint", "encoder_preset", "vocab_file",
               "distribution_strategy", "tpu", "cpu_devices", "label_names", "text_a_field",
               "text_b_field", "label_field", "metrics", "verbose", "skip_bad_rows")


def debug_options():
    """The testing-only `DebugOptions` of the ``--debug_*`` flags (checked)."""
    return DebugOptions(nan_at_step=FLAGS.debug_nan_at_step,
                        overflow_at_step=FLAGS.debug_overflow_at_step,
                        write_fault=FLAGS.debug_write_fault,
                        worker_weights=FLAGS.debug_worker_weights)


def options_from_flags(debug):
    """The `PipelineOptions` of the flags: the YAML files under the run options given
    (`virt_tf.config.load_config`), the inputs, and ``debug``."""
    given = {n: getattr(FLAGS, n) for n in run_options.OVERRIDABLE}
    overrides = run_options.flag_overrides(given)
    inputs = {n: getattr(FLAGS, n) for n in INPUT_FLAGS}
    return pipeline_options(FLAGS.task, FLAGS.model, model_dir=FLAGS.model_dir,
                            config=FLAGS.config, recipe=FLAGS.recipe, debug=debug,
                            **inputs, **overrides)


def result_line(options, metrics):
    """The one line the command prints: the model's accuracy (and the teacher's)."""
    line = f"{options.model} {metrics['task']} {options.eval_split}: " \
           f"accuracy {metrics['accuracy']:.4f}"
    if "teacher" in metrics:
        line += f" (teacher {metrics['teacher'].get('accuracy', math.nan):.4f})"
    return line


def _train():
    """Check the flags and every path, then train; OS errors on the user's paths are
    user errors (`virt_tf.cli.paths.os_errors_as_user_errors`)."""
    # Flags and paths first: their errors need no TensorFlow and come at once.
    if not FLAGS.model_dir:
        raise ConfigError("--model_dir is required")
    debug = debug_options()
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        options = options_from_flags(debug)
        from virt_tf.training.pipeline import train_pipeline  # pylint: disable=import-outside-toplevel  (tensorflow: after the fast checks)
        metrics = train_pipeline(options)
    if metrics.get("chief", True) is False:
        print(f"worker done: the chief writes {FLAGS.model_dir}")
    else:
        print(result_line(options.options, metrics))
    return 0


main = absl_main(_train)

if __name__ == "__main__":
    run(_train)
