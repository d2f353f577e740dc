"""`python -m virt_tf.export`: a trained model directory -> SavedModels for TF Serving.

Writes two SavedModels in TF Serving's layout (one folder per model name, one
numbered sub-folder per version)::

    EXPORT_DIR/NAME/<version>/saved_model.pb                 the model (ids -> probabilities)
    EXPORT_DIR/NAME_preprocessing/<version>/saved_model.pb   strings -> ids

The model SavedModel has no tensorflow-text op (this is checked after
writing): released TF Serving binaries embed one tensorflow-text version and
refuse ops of another. Its signatures (see `virt_tf.inference.serving.ModelServer`):

* siamese / virt: ``encode`` (ids of one text -> ``states``, ``mask``: the
  offline part), ``score`` (``states_a``, ``mask_a``, ``states_b``, ``mask_b`` ->
  ``probabilities``: the online part), ``serving_default`` (ids of x and y ->
  ``probabilities``);
* cross: ``serving_default`` only, on the ids of the packed pair; ``encode`` and
  ``score`` do not apply, since a cross-encoder cannot encode one text alone.

The preprocessing SavedModel (tensorflow-text ops, the model's vocabulary,
casing and ``max_seq_length``) has ``serving_default(text_a, text_b)`` giving
exactly the inputs of the model's ``serving_default`` and, for the
representation models, ``encode(text)`` giving those of the model's ``encode``.
See docs/serving.md for the REST requests.

``--format=openvino`` also converts the model SavedModel's ``encode`` signature with
OpenVINO's own converter into ``EXPORT_DIR/NAME_openvino/<version>/encode.xml`` (+
``.bin``; `virt_tf.inference.openvino`), which ``virt_tf.encode --backend=openvino
--openvino_model=...`` runs (optional package ``openvino``; representation models only).
"""
import sys

from absl import flags, logging

from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, require_flags, run
from virt_tf.cli.paths import PathFlag
from virt_tf.inference import EXPORT_FORMATS, require_openvino

FLAGS = flags.FLAGS


def define_flags():
    """The command's flags (called before parsing, by ``__main__`` or the console script)."""
    flags.DEFINE_string("model_dir", None, "A trained model directory (holds model_config.json).")
    flags.DEFINE_string("export_dir", None, "Model base folder of TF Serving (required).")
    flags.DEFINE_string("name", None, "Model name in TF Serving (default: the model kind, e.g. "
                        "virt); the preprocessor is NAME_preprocessing.")
    flags.DEFINE_integer("version", None, "Version number (default: one above the highest "
                         "already in either folder, 1 for a new export).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing export of the same version.")
    flags.DEFINE_enum("format", "saved_model", EXPORT_FORMATS, "openvino: also the encode "
                      "signature converted by OpenVINO into NAME_openvino/<version>/ (needs "
                      "openvino).")


PATH_FLAGS = (PathFlag("model_dir", paths.MODEL_DIR), PathFlag("export_dir", paths.OUTPUT_DIR))


def _print_result(result):
    """The folders written and their signatures, one line each."""
    print(f"model         {result['model_path']}  signatures: {', '.join(result['signatures'])}")
    print(f"preprocessing {result['preprocessing_path']}  signatures: "
          f"{', '.join(result['preprocessing']['signatures'])}")
    if result.get("openvino_path"):
        print(f"openvino      {result['openvino_path']}  encode.xml (the encode signature)")
    if not result["offline"]:
        print(f"note: a {result['model']} model has no offline part: its SavedModel has only "
              "serving_default (ids of the packed pair); encode and score do not apply.")


def _export():
    """Check the flags and paths, then export (OS errors on the paths are user errors)."""
    require_flags(FLAGS, ("model_dir", "export_dir"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    if FLAGS.format == "openvino":  # the optional package, before TensorFlow loads
        require_openvino()
    from virt_tf.inference import exporting  # TensorFlow after the checks: fast --help
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        result = exporting.export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.name, FLAGS.version,
                                  FLAGS.overwrite, FLAGS.format)
    logging.info("exported %s", result)
    _print_result(result)
    return 0


main = absl_main(_export)

if __name__ == "__main__":
    define_flags()
    run(_export)
    sys.exit(0)
