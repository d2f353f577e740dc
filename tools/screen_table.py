"""Print the table of a lever screen (`virt_tf.reproduction.screen`): every finished run of a screen list
against the reference run and the teacher, on the same evaluation pairs.

  python3 tools/screen_table.py [--screen=configs/screens/mnli_recipe.txt]
      [--reference=siamese] [--teacher_dir=results/sample/runs/mnli/teacher/lr5e-5_s0]
      [--json=OUT.json] [--update_doc=docs/recipes.md]

With --update_doc the table replaces the file's `<!-- screen:begin -->` ... `<!-- screen:end -->`
block (docs/recipes.md holds the MNLI screen's).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from virt_tf.cli import paths  # noqa: E402
from virt_tf.cli.common import run  # noqa: E402
from virt_tf.cli.paths import PathFlag  # noqa: E402
from virt_tf.reproduction.markdown_blocks import replace_block  # noqa: E402
from virt_tf.reproduction.screen import format_screen, read_screen, screen_rows  # noqa: E402
from virt_tf.rundir import read_metrics, write_json  # noqa: E402

FLAGS = flags.FLAGS
PATH_FLAGS = (PathFlag("screen", paths.INPUT_FILE), PathFlag("teacher_dir", paths.MODEL_DIR),
              PathFlag("json", paths.OUTPUT_FILE), PathFlag("update_doc", paths.INPUT_FILE))


def define_flags():
    """Defines the command-line flags (only when run as a script, so tests can import it)."""
    flags.DEFINE_string("screen", "configs/screens/mnli_recipe.txt", "Screen list.")
    flags.DEFINE_string("reference", "siamese", "Run every other is tested against.")
    flags.DEFINE_string("teacher_dir", "results/sample/runs/mnli/teacher/lr5e-5_s0",
                        "The teacher's run directory.")
    flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")
    flags.DEFINE_string("update_doc", None, "Markdown file whose screen block (<!-- "
                        "screen:begin --> ... <!-- screen:end -->) the table replaces.")


def main():
    """Check the paths before any work (OS errors on them are user errors), then print."""
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        return _main()


def _main():
    """Read the screen's finished runs, print the table (and --update_doc, --json)."""
    rows = screen_rows(read_screen(FLAGS.screen, verdicts=True), FLAGS.reference,
                       FLAGS.teacher_dir)
    teacher = read_metrics(FLAGS.teacher_dir)["accuracy"]
    table = format_screen(rows, FLAGS.reference, teacher)
    print(table)
    if FLAGS.update_doc:
        replace_block(FLAGS.update_doc, "screen", table)
    if FLAGS.json:
        write_json(FLAGS.json, {"teacher_accuracy": teacher, "rows": rows})
    return 0


if __name__ == "__main__":
    define_flags()
    run(main)
