"""A trained model directory -> SavedModels for TF Serving: the job of ``virt_tf.export``
(whose docstring describes the layout and the signatures for its users).

`export` writes the model SavedModel (`virt_tf.inference.serving.ModelServer`: ids in,
no tensorflow-text op, which is checked after writing) and the preprocessing SavedModel
(`PreprocessingServer`: strings in) as ``EXPORT_DIR/NAME/<version>/`` and
``EXPORT_DIR/NAME_preprocessing/<version>/``, each with ``assets.extra/virt_tf_export.json``
describing the export. Both version folders are written under temporary names (TF Serving
ignores them: not a number) and renamed into place once both are complete, so that TF
Serving never sees a half-written version. ``fmt="openvino"`` also converts the ``encode``
signature into ``EXPORT_DIR/NAME_openvino/<version>/`` (`virt_tf.inference.openvino`).
"""
import json
import os
import shutil

import tensorflow as tf

from virt_tf import rundir
from virt_tf.errors import ConfigError, ExistingFileError
from virt_tf.inference import EXPORT_FORMATS
from virt_tf.inference import openvino as openvino_backend
from virt_tf.inference.matcher import load
from virt_tf.inference.serving import ModelServer, PreprocessingServer, non_core_ops
from virt_tf.inference.state_cache import model_fingerprint
from virt_tf.models.registry import get_spec, read_model_config

EXPORT_INFO = "virt_tf_export.json"  # in assets.extra/ of both SavedModels
PREPROCESSING_SUFFIX = "_preprocessing"  # NAME_preprocessing/<version>/


def next_version(*folders):
    """One above the highest numeric sub-folder of any of ``folders`` (1 when none)."""
    versions = [0]
    for folder in folders:
        if os.path.isdir(folder):
            versions += [int(d) for d in os.listdir(folder) if d.isdigit()]
    return max(versions) + 1


def _check_name(name):
    """Refuse a model name TF Serving's folder layout does not take."""
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"--name must be letters, digits, '_' or '-', got {name!r}")


def _version_folders(export_dir, name, version, fmt):
    """``(version, model_path, prep_path, ov_path)``: ``version`` (default: `next_version`
    of the three model folders) and its folders; ``ov_path`` only for ``fmt="openvino"``."""
    model_base = os.path.join(export_dir, name)
    prep_base = os.path.join(export_dir, name + PREPROCESSING_SUFFIX)
    ov_base = os.path.join(export_dir, name + openvino_backend.FOLDER_SUFFIX)
    version = next_version(model_base, prep_base, ov_base) if version is None else int(version)
    if version <= 0:
        raise ConfigError(f"--version must be a positive integer, got {version}")
    model_path = os.path.join(model_base, str(version))
    prep_path = os.path.join(prep_base, str(version))
    ov_path = os.path.join(ov_base, str(version)) if fmt == "openvino" else None
    return version, model_path, prep_path, ov_path


def _check_openvino(model_name):
    """Refuse ``fmt="openvino"`` without the openvino package, or for a model without
    the offline ``encode`` signature it converts."""
    openvino_backend.require_openvino()
    if not get_spec(model_name).cls.offline:
        raise ConfigError(f"--format=openvino converts the offline encode signature; a "
                          f"{model_name} model has none (it reads both texts together)")


def _refuse_existing(version_folders, overwrite):
    """Refuse an existing version folder (None entries are skipped) unless ``overwrite``."""
    for path in filter(None, version_folders):
        if os.path.exists(path) and not overwrite:
            raise ExistingFileError(f"{path} exists; pass --overwrite or another --version")


def _save_core_only(server, signatures, folder):
    """Save the model SavedModel into ``folder``, refused if it holds a non-core op (the
    caller's temporary folder is then removed)."""
    tf.saved_model.save(server, folder, signatures=signatures)
    foreign = non_core_ops(folder)
    if foreign:  # a guard: the model graph must stay loadable by a TF Serving binary
        raise RuntimeError(f"the model SavedModel would contain non-core ops {foreign}")


def _export_info(matcher, model_name, name, version, server, signatures, prep_server):
    """The export's description, written as ``EXPORT_INFO`` beside both SavedModels."""
    config, prep = matcher.config, matcher.preprocessor
    return {"model": model_name, "name": name, "version": version, "offline": matcher.offline,
            "labels": config.get("labels"), "task": config.get("task"),
            "hidden_size": server.hidden_size, "signatures": sorted(signatures),
            "preprocessing": {"name": name + PREPROCESSING_SUFFIX,
                              "signatures": sorted(prep_server.signatures()),
                              "lower_case": prep.lower_case,
                              "max_seq_length": prep.max_seq_length}}


def _write_export_info(info, saved_models):
    """Write ``info`` into ``assets.extra/EXPORT_INFO`` of each of ``saved_models``."""
    for folder in saved_models:
        rundir.write_text_atomic(os.path.join(folder, "assets.extra", EXPORT_INFO),
                                 json.dumps(info, indent=2))


def _remove_earlier(folders):
    """Remove the existing ones of ``folders`` (``--overwrite``: the renames replace them)."""
    for folder in folders:
        if os.path.exists(folder):
            shutil.rmtree(folder)


def _save_both(matcher, model_name, name, version, model_path, prep_path):
    """Write the model and preprocessing SavedModels of ``matcher`` at ``model_path`` and
    ``prep_path``, both renamed into place only once both are complete. Returns the
    export's description (`_export_info`)."""
    server = ModelServer(matcher.classifier, model_name)
    prep_server = PreprocessingServer(matcher.preprocessor, matcher.offline)
    signatures = server.signatures()
    with rundir.atomic_target(prep_path) as tmp_prep, \
            rundir.atomic_target(model_path) as tmp_model:
        _save_core_only(server, signatures, tmp_model)
        tf.saved_model.save(prep_server, tmp_prep, signatures=prep_server.signatures())
        info = _export_info(matcher, model_name, name, version, server, signatures,
                            prep_server)
        _write_export_info(info, (tmp_model, tmp_prep))
        _remove_earlier((model_path, prep_path))
    return info


def _convert_to_openvino(model_dir, model_path, ov_path, info):
    """Convert the ``encode`` signature of the SavedModel at ``model_path`` into
    ``ov_path`` (`export_ir`), described by ``info`` and the model's fingerprint."""
    openvino = openvino_backend.require_openvino()
    openvino_backend.export_ir(model_path, ov_path, dict(
        info, format="openvino", openvino=openvino.__version__, converted_from=model_path,
        model_fingerprint=model_fingerprint(model_dir)))


def export(model_dir, export_dir, name=None, version=None, overwrite=False,
           fmt="saved_model"):
    """Export ``model_dir`` under ``export_dir``. Returns a dict describing the export.

    Keys: ``model_path``, ``preprocessing_path`` (the version folders),
    ``signatures`` (of the model SavedModel), ``version``, ``model``, ``labels``; with
    ``fmt="openvino"`` also ``openvino_path`` (the folder of ``encode.xml``).
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    model_name = read_model_config(model_dir)["model"]
    name = name or model_name
    _check_name(name)
    version, model_path, prep_path, ov_path = _version_folders(export_dir, name, version, fmt)
    if fmt == "openvino":  # before writing anything
        _check_openvino(model_name)
    _refuse_existing((model_path, prep_path, ov_path), overwrite)

    matcher = load(model_dir)
    info = _save_both(matcher, model_name, name, version, model_path, prep_path)
    result = dict(info, model_path=model_path, preprocessing_path=prep_path)
    if ov_path:
        _convert_to_openvino(model_dir, model_path, ov_path, info)
        result["openvino_path"] = ov_path
    return result
