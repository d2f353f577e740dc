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
import json
import os
import shutil
import sys

from absl import flags, logging

from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, require_flags, run
from virt_tf.errors import ConfigError, ExistingFileError
from virt_tf.cli.paths import PathFlag

FLAGS = flags.FLAGS
EXPORT_INFO = "virt_tf_export.json"
FORMATS = ("saved_model", "openvino")


def define_flags():
    flags.DEFINE_string("model_dir", None, "A trained model directory (holds model_config.json).")
    flags.DEFINE_string("export_dir", None, "Model base folder of TF Serving (required).")
    flags.DEFINE_string("name", None, "Model name in TF Serving (default: the model kind, e.g. "
                        "virt); the preprocessor is NAME_preprocessing.")
    flags.DEFINE_integer("version", None, "Version number (default: one above the highest "
                         "already in either folder, 1 for a new export).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing export of the same version.")
    flags.DEFINE_enum("format", "saved_model", FORMATS, "openvino: also the encode signature "
                      "converted by OpenVINO into NAME_openvino/<version>/ (needs openvino).")


def next_version(*folders):
    """One above the highest numeric sub-folder of any of ``folders`` (1 when none)."""
    versions = [0]
    for folder in folders:
        if os.path.isdir(folder):
            versions += [int(d) for d in os.listdir(folder) if d.isdigit()]
    return max(versions) + 1


def _save(module, signatures, path):
    """Save into ``path + ".tmp"`` (TF Serving ignores it: not a number); returns that folder.

    The caller moves it into place once both SavedModels are written, so that
    TF Serving never sees a half-written version.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, tmp, signatures=signatures)
    return tmp


def _check_name(name):
    """Refuse a model name TF Serving's folder layout does not take."""
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"--name must be letters, digits, '_' or '-', got {name!r}")


def _version_folders(export_dir, name, version, fmt):
    """``(version, model_path, prep_path, ov_path)``: ``version`` (default: `next_version`
    of the three model folders) and its folders; ``ov_path`` only for ``fmt="openvino"``."""
    model_base = os.path.join(export_dir, name)
    prep_base = os.path.join(export_dir, name + "_preprocessing")
    ov_base = os.path.join(export_dir, name + "_openvino")
    version = next_version(model_base, prep_base, ov_base) if version is None else int(version)
    if version <= 0:
        raise ConfigError(f"--version must be a positive integer, got {version}")
    model_path = os.path.join(model_base, str(version))
    prep_path = os.path.join(prep_base, str(version))
    ov_path = os.path.join(ov_base, str(version)) if fmt == "openvino" else None
    return version, model_path, prep_path, ov_path


def _check_openvino(model_name):
    """Refuse ``--format=openvino`` without the openvino package, or for a model without
    the offline ``encode`` signature it converts."""
    from virt_tf.models.registry import get_spec  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.openvino import require_openvino  # pylint: disable=import-outside-toplevel
    require_openvino()
    if not get_spec(model_name).cls.offline:
        raise ConfigError(f"--format=openvino converts the offline encode signature; a "
                          f"{model_name} model has none (it reads both texts together)")


def _refuse_existing(version_folders, overwrite):
    """Refuse an existing version folder (None entries are skipped) unless ``overwrite``."""
    for path in filter(None, version_folders):
        if os.path.exists(path) and not overwrite:
            raise ExistingFileError(f"{path} exists; pass --overwrite or another --version")


def _save_core_only(server, signatures, path):
    """`_save` the model SavedModel, refused (and removed) if it holds a non-core op."""
    from virt_tf.inference.serving import non_core_ops  # pylint: disable=import-outside-toplevel

    tmp = _save(server, signatures, path)
    foreign = non_core_ops(tmp)
    if foreign:  # a guard: the model graph must stay loadable by a TF Serving binary
        shutil.rmtree(tmp)
        raise RuntimeError(f"the model SavedModel would contain non-core ops {foreign}")
    return tmp


def _export_info(matcher, model_name, name, version, server, signatures, prep_server):
    """The export's description, written as ``EXPORT_INFO`` beside both SavedModels."""
    config, prep = matcher.config, matcher.preprocessor
    return {"model": model_name, "name": name, "version": version, "offline": matcher.offline,
            "labels": config.get("labels"), "task": config.get("task"),
            "hidden_size": server.hidden_size, "signatures": sorted(signatures),
            "preprocessing": {"name": name + "_preprocessing",
                              "signatures": sorted(prep_server.signatures()),
                              "lower_case": prep.lower_case,
                              "max_seq_length": prep.max_seq_length}}


def _write_export_info(info, saved_models):
    """Write ``info`` into ``assets.extra/EXPORT_INFO`` of each of ``saved_models``."""
    for folder in saved_models:
        extra = os.path.join(folder, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, EXPORT_INFO), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)


def _move_into_place(moves):
    """Move each ``(tmp, path)`` of ``moves`` to ``path``, replacing what is there."""
    for tmp, path in moves:
        if os.path.exists(path):  # --overwrite
            shutil.rmtree(path)
        os.replace(tmp, path)


def _convert_to_openvino(model_dir, model_path, ov_path, info):
    """Convert the ``encode`` signature of the SavedModel at ``model_path`` into
    ``ov_path`` (`export_ir`), described by ``info`` and the model's fingerprint."""
    from virt_tf.encode import model_fingerprint  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.openvino import export_ir  # pylint: disable=import-outside-toplevel
    import openvino  # pylint: disable=import-outside-toplevel
    export_ir(model_path, ov_path, dict(
        info, format="openvino", openvino=openvino.__version__, converted_from=model_path,
        model_fingerprint=model_fingerprint(model_dir)))


def export(model_dir, export_dir, name=None, version=None, overwrite=False,
           fmt="saved_model"):
    """Export ``model_dir`` under ``export_dir``. Returns a dict describing the export.

    Keys: ``model_path``, ``preprocessing_path`` (the version folders),
    ``signatures`` (of the model SavedModel), ``version``, ``model``, ``labels``; with
    ``fmt="openvino"`` also ``openvino_path`` (the folder of ``encode.xml``).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {FORMATS}, got {fmt!r}")
    from virt_tf.inference.matcher import load  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import read_model_config  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.serving import ModelServer, PreprocessingServer  # pylint: disable=import-outside-toplevel

    model_name = read_model_config(model_dir)["model"]
    name = name or model_name
    _check_name(name)
    version, model_path, prep_path, ov_path = _version_folders(export_dir, name, version, fmt)
    if fmt == "openvino":  # before writing anything
        _check_openvino(model_name)
    _refuse_existing((model_path, prep_path, ov_path), overwrite)

    matcher = load(model_dir)
    server = ModelServer(matcher.classifier, model_name)
    prep_server = PreprocessingServer(matcher.preprocessor, matcher.offline)
    signatures = server.signatures()
    tmp_model = _save_core_only(server, signatures, model_path)
    tmp_prep = _save(prep_server, prep_server.signatures(), prep_path)
    info = _export_info(matcher, model_name, name, version, server, signatures, prep_server)
    _write_export_info(info, (tmp_model, tmp_prep))
    _move_into_place(((tmp_model, model_path), (tmp_prep, prep_path)))
    result = dict(info, model_path=model_path, preprocessing_path=prep_path)
    if ov_path:
        _convert_to_openvino(model_dir, model_path, ov_path, info)
        result["openvino_path"] = ov_path
    return result


PATH_FLAGS = (PathFlag("model_dir", paths.MODEL_DIR), PathFlag("export_dir", paths.OUTPUT_DIR))


def _export():
    require_flags(FLAGS, ("model_dir", "export_dir"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        result = export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.name, FLAGS.version,
                        FLAGS.overwrite, FLAGS.format)
    logging.info("exported %s", result)
    print(f"model         {result['model_path']}  signatures: {', '.join(result['signatures'])}")
    print(f"preprocessing {result['preprocessing_path']}  signatures: "
          f"{', '.join(result['preprocessing']['signatures'])}")
    if result.get("openvino_path"):
        print(f"openvino      {result['openvino_path']}  encode.xml (the encode signature)")
    if not result["offline"]:
        print(f"note: a {result['model']} model has no offline part: its SavedModel has only "
              "serving_default (ids of the packed pair); encode and score do not apply.")
    return 0


main = absl_main(_export)

if __name__ == "__main__":
    define_flags()
    run(_export)
    sys.exit(0)
