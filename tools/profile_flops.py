"""Online cost of every registered model: tf.profiler FLOPs and measured latency.

The last two columns of Table 1 of the VIRT paper, measured here: the FLOPs and
latency of each model's *online* part (the cross-encoder: everything, on the
packed pair; the others: ``score`` on cached states), with their ratios to the
cross-encoder, and the offline ``encode`` cost per text. The counting and
timing live in `virt_tf.benchmarks.profiling` (see its docstring); this is its command
line. Defaults are BoolQ-like lengths as in the paper.

    python tools/profile_flops.py --encoder=bert_base --output=flops.json
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from virt_tf.benchmarks import profiling  # noqa: E402
from virt_tf.cli import paths  # noqa: E402
from virt_tf.cli.common import run  # noqa: E402
from virt_tf.cli.paths import PathFlag  # noqa: E402
from virt_tf.rundir import write_json  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script, so tests can import it)."""
    flags.DEFINE_enum("encoder", "bert_base", profiling.preset_names(),
                      "Encoder dimensions: a preset of configs/presets (random weights).")
    flags.DEFINE_list("models", None, "Models to profile (default: all registered).")
    flags.DEFINE_integer("batch_size", 28, "Pairs a batch (paper: 28).")
    flags.DEFINE_integer("query_pieces", 16, "Word pieces of x (BoolQ-like question).")
    flags.DEFINE_integer("doc_pieces", 256, "Word pieces of y (BoolQ-like passage).")
    flags.DEFINE_integer("num_labels", 2, "Classes of the head.")
    flags.DEFINE_integer("warmup", 2, "Untimed calls before timing.")
    flags.DEFINE_integer("repeats", 5, "Timed calls; the median is reported.")
    flags.DEFINE_string("output", None, "Write the results as JSON here as well.")


PATH_FLAGS = (PathFlag("output", paths.OUTPUT_FILE),)


def main():
    """Check the output path, then profile (OS errors on it are user errors)."""
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        return _main()


def _main():
    """Profile, print the table (and --output)."""
    config = profiling.preset_config(FLAGS.encoder)
    results = profiling.profile(config, FLAGS.models, FLAGS.batch_size, FLAGS.query_pieces,
                                FLAGS.doc_pieces, FLAGS.num_labels, FLAGS.warmup,
                                FLAGS.repeats, log=lambda s: logging.info("%s", s))
    results["encoder"] = FLAGS.encoder
    print(profiling.format_table(results, FLAGS.encoder))
    if FLAGS.output:
        write_json(FLAGS.output, results)
        print(f"wrote {FLAGS.output}")
    return 0


if __name__ == "__main__":
    define_flags()
    run(main)
