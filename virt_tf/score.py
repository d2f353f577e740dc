"""`python -m virt_tf.score`: the online part, pairs of cached texts -> class probabilities.

Reads state caches written by `python -m virt_tf.encode` and runs only the
model's ``score`` function (the interaction head; no encoder layer runs) on
the cached states of each pair.

* ``--cache``: one or more caches (comma-separated); ids are looked up in all
  of them and must not repeat across them. Each cache must have been written
  by the model of ``--model_dir`` (its fingerprint is checked).
* ``--pairs``: ``id_a<TAB>id_b`` rows (an optional header ``id_a<TAB>id_b``), or
  ``.jsonl`` objects with ``"id_a"`` and ``"id_b"``.
* ``--output``: tab-separated ``id_a, id_b, label, p_<label>...`` in the order
  of ``--pairs``.

float16 caches are scored in float32. A pair whose texts together exceed the
model's pair budget is scored on each text truncated alone, while the
end-to-end pipeline truncates the pair jointly (longest first): such pairs are
counted in the log. Otherwise the probabilities equal the end-to-end ones (up
to float16 rounding for a float16 cache).
"""
import sys

from absl import flags

from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, require_flags, run
from virt_tf.cli.paths import PathFlag

FLAGS = flags.FLAGS


def define_flags():
    """The command's flags (called before parsing, by ``__main__`` or the console script)."""
    flags.DEFINE_string("model_dir", None, "The siamese or virt model that wrote the caches.")
    flags.DEFINE_list("cache", None, "State cache file(s) from virt_tf.encode.")
    flags.DEFINE_string("pairs", None, "Pairs to score: id_a<TAB>id_b rows or .jsonl.")
    flags.DEFINE_string("output", None, "Where to write the probabilities (TSV).")
    flags.DEFINE_integer("batch_size", 256, "Pairs per score call.")


PATH_FLAGS = (PathFlag("model_dir", paths.MODEL_DIR), PathFlag("cache", paths.INPUT_FILE),
              PathFlag("pairs", paths.INPUT_FILE), PathFlag("output", paths.OUTPUT_FILE))


def _score():
    """Check the flags and paths, then score (OS errors on the paths are user errors)."""
    require_flags(FLAGS, ("model_dir", "cache", "pairs", "output"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    from virt_tf.inference import scoring  # TensorFlow after the checks: fast --help
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        pairs, probs, info = scoring.score_file(FLAGS.model_dir, FLAGS.cache, FLAGS.pairs,
                                                FLAGS.batch_size)
        scoring.write_scores(FLAGS.output, pairs, probs, info["labels"])
    print(f"scored {info['pairs']} pairs on cached {'/'.join(info['dtypes'])} states -> "
          f"{FLAGS.output}")
    return 0


main = absl_main(_score)

if __name__ == "__main__":
    define_flags()
    run(_score)
    sys.exit(0)
