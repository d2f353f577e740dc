"""`python -m virt_tf.encode`: the offline part, a file of texts -> a state cache on disk.

A representation model (siamese, virt) encodes each text alone, so the
last-layer states of every text can be computed once, ahead of time, and the
online part (`python -m virt_tf.score`) only runs the light interaction head
on them. This command runs the model's ``encode`` function (the same one that
`virt_tf.export` exports) over a file of texts and writes the states.

Input (``--input``), one text per row:

* ``.jsonl``: objects with ``"text"`` and optionally ``"id"`` (default: the line
  number, from 1);
* anything else: tab-separated ``id<TAB>text`` rows; a first row
  ``id<TAB>text`` is taken as a header.

Ids must be unique. A missing file, a bad row or a duplicate id is an error
(one line on stderr, exit code 2).

Cache (``--output``): one numpy ``.npz`` file, read with ``allow_pickle=False``:

* ``ids``: unicode `[n]`;
* ``offsets``: int64 `[n + 1]`; text ``i`` owns rows ``offsets[i]:offsets[i+1]``;
* ``states``: float32 or float16 (``--float16``) `[total_pieces, hidden]`, the
  last-layer states of the valid positions of each `[CLS] text [SEP]` packing
  (padding is not stored: the mask of a text is all ones over its length);
* ``meta``: a JSON string: format, model kind, hidden size, dtype,
  ``max_seq_length`` and the model's fingerprint (sha256 of weights and vocab),
  which `virt_tf.score` checks.

Texts are tokenized first, sorted by length and batched in that order (less
padding, faster); a progress bar shows on a terminal.

``--backend=openvino`` runs the same ``encode`` signature converted by OpenVINO
(`virt_tf.inference.openvino`; the optional package ``openvino``), from an IR of
``virt_tf.export --format=openvino`` (``--openvino_model``) or converted on the spot;
the cache is the same (``meta.backend`` says which ran).
"""
import sys

from absl import flags, logging

from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, require_flags, run
from virt_tf.cli.paths import PathFlag
from virt_tf.inference import BACKENDS, OPENVINO_PRECISIONS, require_openvino

FLAGS = flags.FLAGS


def define_flags():
    """The command's flags (called before parsing, by ``__main__`` or the console script)."""
    flags.DEFINE_string("model_dir", None, "A trained siamese or virt model directory.")
    flags.DEFINE_string("input", None, "Texts: .jsonl ({\"id\", \"text\"}) or id<TAB>text rows.")
    flags.DEFINE_string("output", None, "The cache file to write (.npz).")
    flags.DEFINE_bool("float16", False, "Store the states as float16 (half the size).")
    flags.DEFINE_integer("batch_size", 64, "Texts per encoder call.")
    flags.DEFINE_integer("max_seq_length", None, "Length budget of one packed text, [CLS] and "
                         "[SEP] included (default: the model's max_seq_length).")
    flags.DEFINE_enum("backend", "tensorflow", BACKENDS, "What runs the encoder: TensorFlow, "
                      "or OpenVINO's CPU runtime (optional package openvino; docs/precision.md).")
    flags.DEFINE_string("openvino_model", None, "--backend=openvino: an IR folder written by "
                        "virt_tf.export --format=openvino (default: convert the model now).")
    flags.DEFINE_enum("openvino_precision", "f32", OPENVINO_PRECISIONS, "--backend=openvino: "
                      "inference precision (f32: the states equal TensorFlow's).")


PATH_FLAGS = (PathFlag("model_dir", paths.MODEL_DIR), PathFlag("input", paths.INPUT_FILE),
              PathFlag("output", paths.OUTPUT_FILE),
              PathFlag("openvino_model", paths.INPUT_DIR))


def _encode():
    """Check the flags and paths, then encode (OS errors on the paths are user errors)."""
    require_flags(FLAGS, ("model_dir", "input", "output"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    if FLAGS.backend == "openvino":  # the optional package, before TensorFlow loads
        require_openvino()
    from virt_tf.inference import matcher, state_cache  # TensorFlow after the checks: fast --help
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        result = matcher.encode_file(FLAGS.model_dir, FLAGS.input, FLAGS.output, FLAGS.float16,
                                     FLAGS.batch_size, FLAGS.max_seq_length,
                                     backend=FLAGS.backend, openvino_model=FLAGS.openvino_model,
                                     openvino_precision=FLAGS.openvino_precision)
    logging.info("encoded %s", result)
    print(f"wrote {result['texts']} texts ({result['pieces']} word-piece states, "
          f"{result['dtype']}) to {result['path']}: {state_cache.human_size(result['bytes'])} "
          f"({result['bytes'] / result['texts']:.0f} bytes a text)")
    return 0


main = absl_main(_encode)

if __name__ == "__main__":
    define_flags()
    run(_encode)
    sys.exit(0)
