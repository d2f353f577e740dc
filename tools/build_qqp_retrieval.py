"""Build the duplicate-question retrieval set from labelled QQP pairs (BEIR's Quora recipe).

Corpus = every distinct question; queries = the questions with at least one duplicate
(duplicates taken transitively); relevant documents = their duplicates; dev and train
split by connected components of all labelled pairs, so that no training pair touches a
dev query or anything it is linked to. `virt_tf.retrieval.qqp` describes the files.

  python tools/build_qqp_retrieval.py \
      --pairs=../shared/data/bench/qqp/train.jsonl,../shared/data/bench/qqp/dev.jsonl \
      --output=data/qqp_retrieval

Then index the corpus and search with the dev queries (docs/search.md)::

  python -m virt_tf.index --model_dir=runs/qqp/siamese --corpus=data/qqp_retrieval/corpus.jsonl \
      --output=indexes/qqp_siamese
  python -m virt_tf.search --index=indexes/qqp_siamese \
      --queries=data/qqp_retrieval/queries.dev.jsonl --qrels=data/qqp_retrieval/qrels.dev.txt \
      --exclude_self --output=runs/qqp_siamese.dev.run
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from virt_tf.cli import paths  # noqa: E402
from virt_tf.cli.common import require_flags, run  # noqa: E402
from virt_tf.cli.paths import PathFlag  # noqa: E402
from virt_tf.retrieval.qqp import write_retrieval_set  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_list("pairs", None, "Labelled QQP pair files (.jsonl, .json, or .tsv with a "
                      "header), comma-separated.")
    flags.DEFINE_string("output", None, "The folder to write (new or empty).")
    flags.DEFINE_float("dev_fraction", 0.2, "Share of the linked components that go to dev.")
    flags.DEFINE_integer("seed", 0, "Seed of the dev/train split.")


PATH_FLAGS = (PathFlag("pairs", paths.INPUT_FILE), PathFlag("output", paths.OUTPUT_DIR))


def main():
    """Check the flags and paths, then build and write the set."""
    require_flags(FLAGS, ("pairs", "output"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        info = write_retrieval_set(FLAGS.pairs, FLAGS.output, FLAGS.dev_fraction, FLAGS.seed)
    print(f"{info['questions']} questions, {info['duplicate_clusters']} duplicate clusters; "
          f"queries dev {info['queries']['dev']} / train {info['queries']['train']}; "
          f"{info['train_pairs']} training pairs -> {FLAGS.output}")
    return 0


if __name__ == "__main__":
    define_flags()
    run(main)
