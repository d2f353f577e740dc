"""How close each student's virtual attention maps are to the teacher's, layer by layer.

For every student, the L_virt of Eq. 7 (the training loss, content pieces only) is
computed on a split for each layer alone, and averaged over the pairs
(`virt_tf.evaluation.alignment`). A student trained with VIRT should sit below the
Siamese baseline; the row ``init`` is the pretrained encoder before any training (both
towers = the checkpoint named by --init_checkpoint, default the MiniLM package).

  python tools/virt_alignment.py --teacher_dir=runs/rte/teacher --data_dir=../shared/data/rte \
      --student_dirs=runs/rte/siamese_s0,runs/rte/virt_a3_s0 --include_init
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from virt_tf.cli import paths  # noqa: E402
from virt_tf.cli.common import run  # noqa: E402
from virt_tf.cli.paths import PathFlag  # noqa: E402
from virt_tf.errors import ConfigError  # noqa: E402
from virt_tf.rundir import write_json  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script, so tests can import it)."""
    flags.DEFINE_string("teacher_dir", None, "Trained cross-encoder directory.")
    flags.DEFINE_list("student_dirs", [], "Trained Siamese/VIRT model directories.")
    flags.DEFINE_bool("include_init", False, "Add the untrained pretrained encoder as a row.")
    flags.DEFINE_string("init_checkpoint", None, "Checkpoint of the `init` row (default MiniLM).")
    flags.DEFINE_string("data_dir", None, "Task files of the teacher's task.")
    flags.DEFINE_string("split", None, "Split (default: the teacher's eval split).")
    flags.DEFINE_integer("max_examples", 512, "Score the first N pairs of the split.")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_string("output", None, "Also write the numbers as JSON here.")
    flags.DEFINE_string("plot", None, "Also draw the per-layer losses as grouped bars (PNG).")


def plot_rows(rows, path, title):
    """Grouped bars: one group a layer, one bar a student."""
    # matplotlib only when asked for a plot; the Agg backend (a file, no display) first
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    num_layers = len(next(iter(rows.values())))
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(1.2 * num_layers + 2, 3.2))
    for i, (name, values) in enumerate(rows.items()):
        ax.bar(np.arange(num_layers) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(num_layers) + 0.4 - width / 2)
    ax.set_xticklabels([f"layer {l + 1}" for l in range(num_layers)])
    ax.set_ylabel("L_virt (Eq. 7, one layer)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


PATH_FLAGS = (PathFlag("teacher_dir", paths.MODEL_DIR), PathFlag("student_dirs", paths.MODEL_DIR),
              PathFlag("init_checkpoint", paths.CHECKPOINT), PathFlag("data_dir", paths.INPUT_DIR),
              PathFlag("output", paths.OUTPUT_FILE), PathFlag("plot", paths.OUTPUT_FILE))


def main():
    """Check the flags and paths, then measure (OS errors on them are user errors)."""
    if not FLAGS.teacher_dir:
        raise ConfigError("--teacher_dir is required")
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        return _measure()


def _measure():
    """Load the teacher and each student, measure, print the table (and --plot, --output)."""
    # deferred to after the path checks: these load TensorFlow
    from virt_tf.evaluation import alignment  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.matcher import load  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.checkpoints import load_encoder  # pylint: disable=import-outside-toplevel

    matcher = load(FLAGS.teacher_dir)
    teacher, task = matcher.classifier, matcher.task
    examples, split, dataset = alignment.alignment_pairs(
        matcher, FLAGS.data_dir, FLAGS.split, FLAGS.max_examples, FLAGS.batch_size)
    num_layers = teacher.encoder_config.num_hidden_layers

    rows = {}
    if FLAGS.include_init:
        encoder, _ = load_encoder(FLAGS.init_checkpoint)
        rows["init"] = alignment.per_layer_virt_loss(
            teacher, lambda t: encoder(t, training=False, return_qk=True), dataset, num_layers)
    for d in FLAGS.student_dirs:
        values = alignment.student_virt_loss(teacher, load(d).classifier, dataset)
        # layers that see both texts (DeFormer's upper ones) have no virtual map
        rows[os.path.basename(os.path.normpath(d))] = values + [float("nan")] * (
            num_layers - len(values))
    _print_rows(rows, num_layers, f"{len(examples)} {task.name} {split} pairs")
    if FLAGS.plot:
        plot_rows(rows, FLAGS.plot, f"student vs teacher maps, {len(examples)} {task.name} "
                                    f"{split} pairs")
    if FLAGS.output:
        write_json(FLAGS.output, {"task": task.name, "split": split, "examples": len(examples),
                                  "teacher": FLAGS.teacher_dir, "per_layer": rows})
    return 0


def _print_rows(rows, num_layers, pairs):
    """The per-layer table, one row a student, with the mean over its separate layers."""
    header = "| student | " + " | ".join(f"layer {l + 1}" for l in range(num_layers)) + " | mean |"
    print(f"L_virt per layer (Eq. 7 with one layer), {pairs}, teacher {FLAGS.teacher_dir}")
    print(header)
    print("|---" * (num_layers + 2) + "|")
    for name, values in rows.items():
        apart = [v for v in values if v == v]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" if v == v else "joint" for v in values)
              + f" | {sum(apart) / len(apart):.3f} |")


if __name__ == "__main__":
    define_flags()
    run(main)
