"""`python -m virt_tf.search`: queries -> a TREC run over an index of ``virt_tf.index``.

Encodes each query of ``--queries`` with the model that built ``--index`` (recorded in the
index; ``--model_dir`` to give it where it moved; another model is refused), takes the
``--top_k`` documents of the largest cosine from the ScaNN searcher and, with
``--rerank``, re-ranks the first ``--rerank_depth`` of them:

* ``model``: the model's own pair head on the cached token states (no encoder runs for the
  documents);
* ``teacher``: the cross-encoder of ``--teacher_dir`` on the texts (the exact, slow score).

Queries: the corpus forms (``.jsonl`` or ``id<TAB>text``). Output: a TREC run,
``qid Q0 docid rank score tag``, written atomically. ``--qrels`` (TREC qrels) also prints
nDCG@10, MRR@10 and Recall@100 (``ir-measures``). ``--exclude_self`` leaves out a document
whose id is the query's (a question is not its own duplicate). The library is
`virt_tf.retrieval.index`.
"""
import sys

from absl import flags, logging

from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, require_flags, run
from virt_tf.cli.paths import PathFlag
from virt_tf.retrieval import RERANK_MODES, layout, require

FLAGS = flags.FLAGS


def define_flags():
    """The command's flags (called before parsing, by ``__main__`` or the console script)."""
    flags.DEFINE_string("index", None, "An index folder written by virt_tf.index.")
    flags.DEFINE_string("queries", None, "Queries: .jsonl objects or id<TAB>text rows.")
    flags.DEFINE_string("output", None, "The TREC run file to write.")
    flags.DEFINE_integer("top_k", 100, "Documents returned a query.")
    flags.DEFINE_enum("rerank", "none", RERANK_MODES, "Second stage: none, the model's own "
                      "pair head on cached states, or a cross-encoder teacher.")
    flags.DEFINE_integer("rerank_depth", 100, "First-stage documents re-ranked a query.")
    flags.DEFINE_string("teacher_dir", None, "--rerank=teacher: the cross-encoder directory.")
    flags.DEFINE_string("model_dir", None, "The model that built the index (default: the "
                        "directory recorded in it).")
    flags.DEFINE_string("qrels", None, "TREC qrels: also print nDCG@10, MRR@10, Recall@100.")
    flags.DEFINE_bool("exclude_self", False, "Leave out a document whose id is the query's.")
    flags.DEFINE_string("positive_label", None, "The label whose probability re-ranks "
                        "(default: 1, duplicate, paraphrase, entailment..., else the last).")
    flags.DEFINE_string("id_field", "id", "The queries' id field.")
    flags.DEFINE_string("text_field", "text", "The queries' text field.")
    flags.DEFINE_integer("batch_size", 64, "Texts (or pairs) per model call.")


PATH_FLAGS = (PathFlag("index", paths.INPUT_DIR), PathFlag("queries", paths.INPUT_FILE),
              PathFlag("output", paths.OUTPUT_FILE), PathFlag("teacher_dir", paths.MODEL_DIR),
              PathFlag("model_dir", paths.MODEL_DIR), PathFlag("qrels", paths.INPUT_FILE))


def _search():
    """Check the flags, paths and optional packages, then search (and evaluate)."""
    require_flags(FLAGS, ("index", "queries", "output"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    require("scann", *(("ir_measures",) if FLAGS.qrels else ()))  # before TensorFlow loads
    layout.check_index_dir("index", FLAGS.index)  # a folder of virt_tf.index, a path mistake
    layout.check_search(FLAGS.index, FLAGS.queries, FLAGS.top_k, FLAGS.rerank,
                        FLAGS.rerank_depth, FLAGS.teacher_dir, FLAGS.batch_size,
                        FLAGS.id_field, FLAGS.text_field)
    from virt_tf.retrieval import corpus, index, metrics  # TensorFlow after the checks: fast --help
    qrels = corpus.read_qrels(FLAGS.qrels) if FLAGS.qrels else None
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        info = index.search_file(
            FLAGS.index, FLAGS.queries, FLAGS.output, FLAGS.top_k, FLAGS.rerank,
            FLAGS.rerank_depth, FLAGS.teacher_dir, FLAGS.model_dir, FLAGS.exclude_self,
            FLAGS.positive_label, FLAGS.batch_size, id_field=FLAGS.id_field,
            text_field=FLAGS.text_field)
    logging.info("search %s", info)
    print(f"searched {info['queries']} queries over {info['documents']} documents "
          f"(rerank={info['rerank']}) in {info['seconds']:.2f} s "
          f"({info['queries'] / max(info['seconds'], 1e-9):.1f} queries/s) -> {FLAGS.output}")
    if qrels is not None:
        means, _ = metrics.evaluate_run(qrels, corpus.read_run(FLAGS.output))
        print("  ".join(f"{name} {value:.4f}" for name, value in means.items()))
    return 0


main = absl_main(_search)

if __name__ == "__main__":
    define_flags()
    run(_search)
    sys.exit(0)
