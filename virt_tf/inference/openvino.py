"""OpenVINO for the offline part: the exported ``encode`` signature run by OpenVINO's CPU runtime.

The model is never written by hand: `convert_encode` loads a model SavedModel written by
`virt_tf.export` (its ``encode`` signature: ids of one text -> ``states``, ``mask``; no
tensorflow-text op) and hands that signature to OpenVINO's own converter
(``openvino.convert_model``); `save_ir` writes the result with ``openvino.save_model``
(weights kept in float32). Layout of ``python -m virt_tf.export --format=openvino``::

    EXPORT_DIR/NAME/<version>/                 the model SavedModel (as without the flag)
    EXPORT_DIR/NAME_preprocessing/<version>/   the preprocessing SavedModel
    EXPORT_DIR/NAME_openvino/<version>/encode.xml, encode.bin, virt_tf_openvino.json

`OpenVinoEncoder` compiles the IR for the CPU and is called like ``ModelServer.encode``
(``input_word_ids``, ``input_mask``, ``input_type_ids`` `[batch, seq]` int32 ->
``states`` `[batch, seq, hidden]` float32, ``mask`` `[batch, seq]` int32, as numpy
arrays), so `virt_tf.inference.state_cache.encode_texts` writes the same state cache through
it (`virt_tf.inference.state_cache` also checks that an exported IR comes from the model
directory it encodes for). Inference precision ``f32`` (the default) keeps OpenVINO's CPU
plugin in float32: its own default on a CPU with bfloat16 instructions (AVX512_BF16, AMX)
is bfloat16.

``openvino`` is an optional dependency (the package extra: ``pip install '.[openvino]'``);
without it every entry here raises `MissingDependencyError` (one ``error:`` line): the
package is imported only inside the functions that run it (`require_openvino`).
"""
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from virt_tf import rundir
from virt_tf.errors import CheckpointError, ConfigError
from virt_tf.inference import OPENVINO_PRECISIONS, require_openvino
from virt_tf.inference.serving import ModelServer

IR_NAME = "encode.xml"
INFO_FILE = "virt_tf_openvino.json"
FOLDER_SUFFIX = "_openvino"  # NAME_openvino/<version>/ beside the model's SavedModels


def convert_encode(saved_model_dir):
    """OpenVINO's conversion of the ``encode`` signature of a model SavedModel: an
    ``openvino.Model`` with inputs ``input_word_ids``, ``input_mask``, ``input_type_ids``
    `[?, ?]` int32 and the ``states`` output `[?, ?, hidden]` float32."""
    ov = require_openvino()
    loaded = tf.saved_model.load(saved_model_dir)
    if "encode" not in loaded.signatures:
        raise ConfigError(f"{saved_model_dir}: the SavedModel has no encode signature (a "
                          "cross-encoder has no offline part to run with OpenVINO)")
    # share_weights=False: the OpenVINO model owns its weights (else it would point into
    # the memory of the loaded SavedModel, freed when ``loaded`` goes)
    model = ov.convert_model(loaded.signatures["encode"], share_weights=False)
    _states_output(model, saved_model_dir)  # fail here, not at the first encode
    return model


def _states_output(model, where):
    for index, output in enumerate(model.outputs):
        if "states" in output.get_names():
            return index
    raise CheckpointError(f"{where}: the OpenVINO model has no 'states' output "
                          f"(outputs: {[sorted(o.get_names()) for o in model.outputs]})")


def save_ir(model, folder, info):
    """Write ``model`` as ``folder/encode.xml`` (+ ``.bin``, float32 weights) and ``info``."""
    ov = require_openvino()
    os.makedirs(folder, exist_ok=True)
    ov.save_model(model, os.path.join(folder, IR_NAME), compress_to_fp16=False)
    rundir.write_json(os.path.join(folder, INFO_FILE), info)
    return os.path.join(folder, IR_NAME)


def read_info(folder):
    """The ``virt_tf_openvino.json`` of an exported IR folder (model kind, fingerprint...)."""
    path = os.path.join(folder, INFO_FILE)
    if not os.path.exists(os.path.join(folder, IR_NAME)) or not os.path.exists(path):
        raise CheckpointError(f"{folder}: not an OpenVINO export of virt_tf (no {IR_NAME} "
                              f"and {INFO_FILE}; write one with python -m virt_tf.export "
                              "--format=openvino)")
    return rundir.read_json(path)


def export_ir(saved_model_dir, folder, info):
    """Convert the ``encode`` signature of ``saved_model_dir`` into ``folder`` (written
    through a temporary folder beside it, then renamed over it). Returns the IR path."""
    model = convert_encode(saved_model_dir)
    with rundir.atomic_target(folder) as tmp:
        save_ir(model, tmp, info)
        if os.path.exists(folder):  # an earlier export of this version (--overwrite)
            shutil.rmtree(folder)
    return os.path.join(folder, IR_NAME)


class OpenVinoEncoder:
    """The offline ``encode`` function run by OpenVINO on the CPU.

    Args:
      model: an ``openvino.Model`` or the path of an ``encode.xml``.
      inference_precision: ``f32`` (states equal TensorFlow's up to float32 rounding),
        ``bf16`` or ``f16`` (faster where the CPU has the instructions, less exact).
      threads: CPU threads of inference (default: OpenVINO's choice, all cores).
    """

    def __init__(self, model, inference_precision="f32", threads=None):
        if inference_precision not in OPENVINO_PRECISIONS:
            raise ConfigError(f"OpenVINO inference precision must be one of "
                              f"{OPENVINO_PRECISIONS}, got {inference_precision!r}")
        ov = require_openvino()
        core = ov.Core()
        if isinstance(model, (str, os.PathLike)):
            model = core.read_model(str(model))
        config = {"INFERENCE_PRECISION_HINT": inference_precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.inference_precision = inference_precision
        self._states = _states_output(model, "OpenVINO model")
        self._names = {name for i in model.inputs for name in i.get_names()}
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()

    def actual_precision(self):
        """The inference precision the CPU plugin uses (it may differ from the hint on a CPU
        without the instructions)."""
        value = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    def __call__(self, input_word_ids, input_mask, input_type_ids):
        """Ids `[batch, seq]` -> ``{"states": [batch, seq, hidden] float32, "mask"}`` (numpy)."""
        feeds = {"input_word_ids": np.asarray(input_word_ids, np.int32),
                 "input_mask": np.asarray(input_mask, np.int32),
                 "input_type_ids": np.asarray(input_type_ids, np.int32)}
        missing = sorted(set(feeds) - self._names)
        if missing:
            raise CheckpointError(f"the OpenVINO model has no inputs {missing}")
        results = self._request.infer(feeds)
        states = np.asarray(results[self._compiled.outputs[self._states]], np.float32)
        return {"states": states, "mask": feeds["input_mask"]}


def encoder_for_classifier(classifier, model_name, inference_precision="f32", threads=None):
    """An `OpenVinoEncoder` of a classifier in memory: its ``encode`` signature is saved to
    a temporary SavedModel and converted now (seconds for MiniLM-L6)."""
    require_openvino()
    if not classifier.offline:
        raise ConfigError(f"a {model_name} model has no offline part to run with OpenVINO")
    server = ModelServer(classifier, model_name)
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(server, tmp, signatures={"encode": server.signatures()["encode"]})
        model = convert_encode(tmp)
    return OpenVinoEncoder(model, inference_precision, threads)
