"""Plot the teacher's x->y attention map beside the student's virtual one (Eq. 5 vs Eq. 6).

For one pair, per layer: the teacher's cross block re-softmaxed over y's pieces, and the
Siamese student's `softmax(Qx Ky^T / sqrt(d))`, both averaged over heads.
  python tools/plot_attention.py --student_dir=runs/rte/virt_a1_s0 \
      --teacher_dir=runs/rte/teacher --text_a="..." --text_b="..." --output=attention.png
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from virt_tf.cli import paths  # noqa: E402
from virt_tf.cli.common import require_flags, run  # noqa: E402
from virt_tf.cli.paths import PathFlag  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script, so tests can import it)."""
    flags.DEFINE_string("student_dir", None, "Trained Siamese/VIRT model directory.")
    flags.DEFINE_string("teacher_dir", None, "Trained cross-encoder directory.")
    flags.DEFINE_string("text_a", "A man is playing a guitar on stage.", "First text.")
    flags.DEFINE_string("text_b", "Someone is performing music.", "Second text.")
    flags.DEFINE_string("output", "attention.png", "PNG file to write.")


def maps(student, teacher, features):
    """Per layer: (teacher map, student map), each `[m, n]` numpy, head-averaged."""
    # TensorFlow, here and in _plot: loaded after the path checks (`main`)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from virt_tf.losses import content_lengths, teacher_cross_scores  # pylint: disable=import-outside-toplevel

    t_out = teacher.forward(features, return_scores=True)
    s_a = student.encode(features["text_a"], return_qk=True)
    s_b = student.encode(features["text_b"], return_qk=True)
    m = content_lengths(features["text_a"]["input_mask"])
    n = content_lengths(features["text_b"]["input_mask"])
    mi, ni = int(m[0]), int(n[0])
    out = []
    for l, scores in enumerate(t_out["scores"]):
        s_xy, _ = teacher_cross_scores(scores, m, n, mi, ni)
        t_map = tf.reduce_mean(tf.nn.softmax(s_xy, -1), axis=1)[0].numpy()
        q = s_a["queries"][l][:, :, 1:1 + mi]
        k = s_b["keys"][l][:, :, 1:1 + ni]
        st = tf.matmul(q, k, transpose_b=True) / float(q.shape[-1]) ** 0.5
        out.append((t_map, tf.reduce_mean(tf.nn.softmax(st, -1), axis=1)[0].numpy()))
    return out


PATH_FLAGS = (PathFlag("student_dir", paths.MODEL_DIR), PathFlag("teacher_dir", paths.MODEL_DIR),
              PathFlag("output", paths.OUTPUT_FILE))


def main():
    """Check the flags and paths, then plot (OS errors on them are user errors)."""
    require_flags(FLAGS, ("student_dir", "teacher_dir"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        return _plot()


def _plot():
    """Load both models, draw every layer's pair of maps into --output."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from virt_tf.data.tokenization import read_vocab  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.matcher import load  # pylint: disable=import-outside-toplevel

    matcher = load(FLAGS.student_dir)
    student, prep = matcher.classifier, matcher.preprocessor
    teacher = load(FLAGS.teacher_dir).classifier
    vocab_file = prep.vocab_file
    features = prep(tf.constant([FLAGS.text_a]), tf.constant([FLAGS.text_b]))
    vocab = read_vocab(vocab_file)
    ids_a = features["text_a"]["input_word_ids"][0].numpy()[1:-1]
    ids_b = features["text_b"]["input_word_ids"][0].numpy()[1:-1]
    tok_a, tok_b = [vocab[i] for i in ids_a], [vocab[i] for i in ids_b]
    pairs = maps(student, teacher, features)
    fig, axes = plt.subplots(2, len(pairs), figsize=(2.6 * len(pairs), 5.6), squeeze=False)
    for l, (t_map, s_map) in enumerate(pairs):
        for row, (mat, who) in enumerate(((t_map, "teacher"), (s_map, "student (virtual)"))):
            ax = axes[row][l]
            ax.imshow(mat, vmin=0, vmax=max(1e-6, float(t_map.max())), cmap="viridis")
            ax.set_title(f"layer {l + 1}: {who}", fontsize=8)
            ax.set_xticks(range(len(tok_b)), tok_b, rotation=90, fontsize=6)
            ax.set_yticks(range(len(tok_a)), tok_a if l == 0 else [""] * len(tok_a), fontsize=6)
    fig.suptitle("x -> y attention, head average (rows: x pieces, columns: y pieces)", fontsize=9)
    fig.tight_layout()
    fig.savefig(FLAGS.output, dpi=110)
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    define_flags()
    run(main)
