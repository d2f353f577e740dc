"""Build, save and load the task models by name (no flags read here).

A trained model directory holds ``model_config.json`` (what to build),
``model.weights.h5`` (the weights), ``vocab.txt``, and ``model.keras``, the
same classifier in the Keras format. Nothing is pickled: the config is JSON,
weights are HDF5 arrays, and `load_keras` loads with ``safe_mode=True`` (the
classes are registered serializable and rebuilt from `get_config`).
Every file is written to a temporary name and renamed, so a kill never leaves
a half-written one.
"""
import json
import os
import shutil
import warnings

import keras
import tensorflow as tf

from virt_tf.modeling.checkpoints import CheckpointError
from virt_tf.models.cross import CrossEncoderClassifier
from virt_tf.models.dual import DualEncoderClassifier
from virt_tf.models.inputs import dummy_features  # noqa: F401 (re-exported)

MODEL_CONFIG = "model_config.json"
WEIGHTS = "model.weights.h5"
KERAS_FILE = "model.keras"

# name -> (class, fixed options). Representation-based models all share the
# DualEncoderClassifier; the heads differ.
MODELS = {
    "cross": (CrossEncoderClassifier, {}),
    "siamese": (DualEncoderClassifier, {"head": "simple"}),
    "virt": (DualEncoderClassifier, {}),  # head from cfg["virt_head"]: "simple" = w/o VIRT-A
}


def is_representation_model(name):
    return name != "cross"


def build_classifier(name, encoder_config, num_labels, cfg=None):
    """A classifier of model ``name``; ``cfg`` supplies head options for the dual models."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    cls, fixed = MODELS[name]
    cfg = cfg or {}
    if cls is CrossEncoderClassifier:
        return cls(encoder_config, num_labels, dropout_rate=cfg.get("dropout_rate", 0.1),
                   name=name)
    options = {"head": cfg.get("virt_head") or "adapted", "fusion": cfg.get("fusion", "paper"),
               "pool_padding": cfg.get("pool_padding", False),
               "dropout_rate": cfg.get("dropout_rate", 0.1)}
    options.update(fixed)
    return cls(encoder_config, num_labels, name=name, **options)


def build_now(classifier):
    classifier(dummy_features(), training=False)
    return classifier


def save_classifier(directory, model_name, classifier, meta, vocab_file, keras_format=True):
    """Write weights (`model.weights.h5`), config JSON, vocab and (by default) `model.keras`.

    No pickle anywhere. Each file is written under a temporary name and renamed.
    """
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, WEIGHTS + ".tmp.weights.h5")
    classifier.save_weights(tmp)
    os.replace(tmp, os.path.join(directory, WEIGHTS))
    vocab_dst = os.path.join(directory, "vocab.txt")
    if os.path.abspath(vocab_file) != os.path.abspath(vocab_dst):
        shutil.copyfile(vocab_file, vocab_dst + ".tmp")
        os.replace(vocab_dst + ".tmp", vocab_dst)
    if keras_format:
        save_keras(os.path.join(directory, KERAS_FILE), classifier)
    config = {"model": model_name, "classifier": classifier.get_config(), **meta,
              "vocab_file": "vocab.txt"}
    tmp = os.path.join(directory, MODEL_CONFIG + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    os.replace(tmp, os.path.join(directory, MODEL_CONFIG))


def save_keras(path, classifier):
    """Save ``classifier`` in the Keras format (a zip of config JSON and HDF5 weights)."""
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: a Keras-format file name must end in .keras")
    tmp = path[: -len(".keras")] + ".tmp.keras"
    classifier.save(tmp)
    os.replace(tmp, path)
    return path


def load_keras(path):
    """Load a `save_keras` file with ``safe_mode=True``: no code is deserialized.

    The classes build their variables on the first call, which Keras cannot do
    from the archive's build config alone; so the model is built here on dummy
    ids and every weight is then read (again) from the archive, which fails on
    any missing or mis-shaped variable instead of leaving one at random.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*cannot be built automatically.*")
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
        build_now(model)
        model.load_weights(path)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: cannot load this Keras file: {_summary(e)}") from e
    return model


def _summary(error, limit=400):
    """``error``'s message on one line (Keras spreads the useful part over several)."""
    text = " ".join(l.strip() for l in str(error).splitlines() if l.strip())
    text = text or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_model_config(directory):
    path = os.path.join(directory, MODEL_CONFIG)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: model directory not found")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory}: no {MODEL_CONFIG} (not a trained model directory)")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except ValueError as e:  # invalid JSON or bytes that are not UTF-8
        raise CheckpointError(f"{path}: not a model config ({_summary(e)})") from e
    if not isinstance(config, dict) or config.get("model") not in MODELS or \
            not isinstance(config.get("classifier"), dict):
        raise CheckpointError(f"{path}: not a model config of this program (needs \"model\" "
                              f"in {sorted(MODELS)} and a \"classifier\" mapping)")
    return config


def load_classifier(directory):
    """Rebuild a saved classifier and its weights. Returns (classifier, config).

    A directory of another format, or weights that do not fit the config
    (missing or mis-shaped variables), raise `CheckpointError` naming the file.
    """
    config = read_model_config(directory)
    cls, _ = MODELS[config["model"]]
    options = dict(config["classifier"])
    options.pop("name", None)
    try:
        classifier = build_now(cls(name=config["model"], **options))
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{os.path.join(directory, MODEL_CONFIG)}: cannot build the "
                              f"model it describes: {_summary(e)}") from e
    weights = os.path.join(directory, WEIGHTS)
    if not os.path.exists(weights):
        raise CheckpointError(f"{weights}: file not found (an unfinished model directory?)")
    try:
        classifier.load_weights(weights)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{weights}: does not fit the model of {MODEL_CONFIG}: "
                              f"{_summary(e)}") from e
    return classifier, config
