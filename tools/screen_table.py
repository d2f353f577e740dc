"""Print the table of a lever screen (`virt_tf.screen`): every finished run of a screen list
against the reference run and the teacher, on the same evaluation pairs.

  python3 tools/screen_table.py [--screen=configs/screens/mnli_recipe.txt]
      [--reference=siamese] [--teacher_dir=results/sample/runs/mnli/teacher/lr5e-5_s0]
      [--json=OUT.json]
"""
import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script, so tests can import it)."""
    flags.DEFINE_string("screen", "configs/screens/mnli_recipe.txt", "Screen list.")
    flags.DEFINE_string("reference", "siamese", "Run every other is tested against.")
    flags.DEFINE_string("teacher_dir", "results/sample/runs/mnli/teacher/lr5e-5_s0",
                        "The teacher's run directory.")
    flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")


def main(argv):
    del argv
    from virt_tf.screen import format_screen, read_screen, screen_rows
    rows = screen_rows(read_screen(FLAGS.screen), FLAGS.reference, FLAGS.teacher_dir)
    with open(os.path.join(FLAGS.teacher_dir, "metrics.json"), encoding="utf-8") as f:
        teacher = json.load(f)["accuracy"]
    print(format_screen(rows, FLAGS.reference, teacher))
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump({"teacher_accuracy": teacher, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
