"""`python -m virt_tf.index`: a corpus file -> an index folder (vectors, ScaNN searcher).

Encodes every document of ``--corpus`` once with the representation model of
``--model_dir`` (through the state cache: TensorFlow, or OpenVINO with
``--backend=openvino``), in shards of ``--shard_size`` documents that a rerun of the same
command reuses, then builds a ScaNN searcher over one vector a document (the mean of its
last-layer states, L2-normalised: cosine). Below ``--scann_brute_force_below`` documents
the search is exact; above, a tree with asymmetric hashing (the ``--scann_*`` flags).
``--keep_states`` (default) also stores the documents' token states (float16) so that
``virt_tf.search --rerank=model`` can run the model's pair head on them; the bytes a
document costs are printed.

Corpus: ``.jsonl`` objects with an id and a text (``--id_field``, ``--text_field``), or
``id<TAB>text`` rows (a header row naming the columns is allowed). An empty corpus, a
repeated id or a bad row is one ``error:`` line (exit 2), before anything is written.
The library is `virt_tf.retrieval.index`; docs/search.md describes the folder.
"""
import sys

from absl import flags, logging

from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, require_flags, run
from virt_tf.cli.paths import PathFlag
from virt_tf.inference import BACKENDS, OPENVINO_PRECISIONS, require_openvino
from virt_tf.retrieval import layout, require

FLAGS = flags.FLAGS


def define_flags():
    """The command's flags (called before parsing, by ``__main__`` or the console script)."""
    flags.DEFINE_string("model_dir", None, "A trained representation model directory "
                        "(siamese, virt, dse, ...).")
    flags.DEFINE_string("corpus", None, "Documents: .jsonl objects or id<TAB>text rows.")
    flags.DEFINE_string("output", None, "The index folder to write (new or empty; a folder "
                        "of an unfinished build of the same command is resumed).")
    flags.DEFINE_string("id_field", "id", "The corpus's id field (.jsonl, or a TSV header).")
    flags.DEFINE_string("text_field", "text", "The corpus's text field.")
    flags.DEFINE_integer("shard_size", 10000, "Documents encoded and written at a time.")
    flags.DEFINE_integer("batch_size", 64, "Texts per encoder call.")
    flags.DEFINE_integer("max_seq_length", None, "Length budget of one packed text "
                         "(default: the model's max_seq_length).")
    flags.DEFINE_bool("keep_states", True, "Store the token states (float16) for "
                      "--rerank=model.")
    flags.DEFINE_enum("backend", "tensorflow", BACKENDS, "What runs the encoder.")
    flags.DEFINE_string("openvino_model", None, "--backend=openvino: an IR folder of "
                        "virt_tf.export --format=openvino (default: convert now).")
    flags.DEFINE_enum("openvino_precision", "f32", OPENVINO_PRECISIONS,
                      "--backend=openvino: inference precision.")
    flags.DEFINE_integer("scann_brute_force_below", 20000, "Corpora smaller than this are "
                         "searched exactly (ScaNN brute force).")
    flags.DEFINE_integer("scann_num_leaves", 0, "Tree leaves (0: about sqrt(documents)).")
    flags.DEFINE_integer("scann_leaves_to_search", 0, "Leaves scored a query (0: a tenth).")
    flags.DEFINE_integer("scann_dims_per_block", 2, "Dimensions per asymmetric-hashing code.")
    flags.DEFINE_float("scann_anisotropic_threshold", 0.2, "Anisotropic quantization "
                       "threshold.")
    flags.DEFINE_integer("scann_reorder", 250, "Candidates re-scored exactly (0: none).")


PATH_FLAGS = (PathFlag("model_dir", paths.MODEL_DIR), PathFlag("corpus", paths.INPUT_FILE),
              PathFlag("output", paths.OUTPUT_DIR), PathFlag("openvino_model", paths.INPUT_DIR))


def _index():
    """Check the flags, paths and optional packages, then build the index."""
    require_flags(FLAGS, ("model_dir", "corpus", "output"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    require("scann")  # the optional package, before TensorFlow loads
    if FLAGS.backend == "openvino":
        require_openvino()
    layout.check_build(FLAGS.corpus, FLAGS.output, FLAGS.id_field, FLAGS.text_field)
    from virt_tf.inference import state_cache  # TensorFlow after the checks: fast --help
    from virt_tf.retrieval import index, searcher  # TensorFlow after the checks: fast --help
    options = index.IndexOptions(
        shard_size=FLAGS.shard_size, batch_size=FLAGS.batch_size,
        keep_states=FLAGS.keep_states, max_seq_length=FLAGS.max_seq_length,
        backend=FLAGS.backend, openvino_model=FLAGS.openvino_model,
        openvino_precision=FLAGS.openvino_precision, id_field=FLAGS.id_field,
        text_field=FLAGS.text_field,
        searcher=searcher.SearcherOptions(
            brute_force_below=FLAGS.scann_brute_force_below,
            num_leaves=FLAGS.scann_num_leaves, leaves_to_search=FLAGS.scann_leaves_to_search,
            dims_per_block=FLAGS.scann_dims_per_block,
            anisotropic_threshold=FLAGS.scann_anisotropic_threshold,
            reorder=FLAGS.scann_reorder))
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        info = index.build_index(FLAGS.model_dir, FLAGS.corpus, FLAGS.output, options)
    logging.info("index %s", info)
    states = (f"; token states {state_cache.human_size(info['state_bytes'])} "
              f"({info['state_bytes_per_document']:.0f} bytes a document, float16)"
              if info["states"] else "")
    print(f"indexed {info['documents']} documents ({info['searcher']['kind']}, vectors of "
          f"{info['hidden_size']} floats) in {info['encode_seconds']:.1f} s -> "
          f"{FLAGS.output}{states}")
    return 0


main = absl_main(_index)

if __name__ == "__main__":
    define_flags()
    run(_index)
    sys.exit(0)
