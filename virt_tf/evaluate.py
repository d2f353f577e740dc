"""`python -m virt_tf.evaluate`: re-score a trained model directory on a split of its task.

The task (labels, metrics, and for ``pairs`` the field names it was trained
with) comes from the directory itself (`virt_tf.inference.matcher`); the evaluators live
in `virt_tf.evaluation.metrics`.
"""
import json
import sys

from absl import flags, logging

from virt_tf import rundir
from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, require_flags, run
from virt_tf.cli.paths import PathFlag

FLAGS = flags.FLAGS


def define_flags():
    """The command's flags (called before parsing, by ``__main__`` or the console script)."""
    flags.DEFINE_string("model_dir", None, "A trained model directory (holds model_config.json).")
    flags.DEFINE_string("data_dir", None, "Task files; tensorflow-datasets when not given.")
    flags.DEFINE_string("split", None, "Split to score (default: the task's eval split).")
    flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.")
    flags.DEFINE_integer("max_eval_examples", None, "Score only the first N examples.")
    flags.DEFINE_bool("skip_bad_rows", False, "Skip and count malformed rows.")
    flags.DEFINE_string("output", None, "Write the metrics JSON here as well.")


PATH_FLAGS = (PathFlag("model_dir", paths.MODEL_DIR), PathFlag("data_dir", paths.INPUT_DIR),
              PathFlag("output", paths.OUTPUT_FILE))


def _evaluate():
    """Check the flags and paths, then evaluate (OS errors on the paths are user errors)."""
    require_flags(FLAGS, ("model_dir",))
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        return _evaluate_checked()


def _evaluate_checked():
    """Score the split, print the metrics as JSON (and write them to ``--output``)."""
    from virt_tf.inference.matcher import load  # TensorFlow after the checks: fast --help

    matcher = load(FLAGS.model_dir)
    split = FLAGS.split or matcher.config.get("eval_split", "dev")
    examples = matcher.read_split(FLAGS.data_dir, split, FLAGS.skip_bad_rows)
    if FLAGS.max_eval_examples:
        examples = examples[:FLAGS.max_eval_examples]
    metrics = matcher.evaluate(examples, FLAGS.batch_size)
    metrics["split"] = split
    logging.info("metrics: %s", metrics)
    print(json.dumps(metrics, indent=2))
    if FLAGS.output:
        rundir.write_json(FLAGS.output, metrics)
    return 0


main = absl_main(_evaluate)

if __name__ == "__main__":
    define_flags()
    run(_evaluate)
    sys.exit(0)
