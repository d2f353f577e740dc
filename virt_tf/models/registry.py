"""Build, save and load the task models by name (no flags read here)."""
import json
import os
import shutil

import tensorflow as tf

from virt_tf.models.cross import CrossEncoderClassifier
from virt_tf.models.dual import DualEncoderClassifier

MODEL_CONFIG = "model_config.json"
WEIGHTS = "model.weights.h5"

# name -> (class, fixed options). Representation-based models all share the
# DualEncoderClassifier; the heads differ.
MODELS = {
    "cross": (CrossEncoderClassifier, {}),
    "siamese": (DualEncoderClassifier, {"head": "simple"}),
    "virt": (DualEncoderClassifier, {"head": "adapted"}),
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
    options = {"head": cfg.get("virt_head", "adapted"), "fusion": cfg.get("fusion", "paper"),
               "pool_padding": cfg.get("pool_padding", False),
               "dropout_rate": cfg.get("dropout_rate", 0.1)}
    options.update(fixed)
    return cls(encoder_config, num_labels, name=name, **options)


def dummy_features(batch=2, seq=5):
    ids = tf.ones((batch, seq), tf.int32) * 100
    packing = {"input_word_ids": ids, "input_mask": tf.ones_like(ids),
               "input_type_ids": tf.zeros_like(ids)}
    return {"pair": packing, "text_a": packing, "text_b": packing}


def build_now(classifier):
    classifier(dummy_features(), training=False)
    return classifier


def save_classifier(directory, model_name, classifier, meta, vocab_file):
    """Write weights (`model.weights.h5`), config JSON and vocab: no pickle anywhere."""
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, WEIGHTS + ".tmp.weights.h5")
    classifier.save_weights(tmp)
    os.replace(tmp, os.path.join(directory, WEIGHTS))
    vocab_dst = os.path.join(directory, "vocab.txt")
    if os.path.abspath(vocab_file) != os.path.abspath(vocab_dst):
        shutil.copyfile(vocab_file, vocab_dst)
    config = {"model": model_name, "classifier": classifier.get_config(), **meta,
              "vocab_file": "vocab.txt"}
    tmp = os.path.join(directory, MODEL_CONFIG + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    os.replace(tmp, os.path.join(directory, MODEL_CONFIG))


def read_model_config(directory):
    path = os.path.join(directory, MODEL_CONFIG)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory}: no {MODEL_CONFIG} (not a trained model directory)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_classifier(directory):
    """Rebuild a saved classifier and its weights. Returns (classifier, config)."""
    config = read_model_config(directory)
    cls, _ = MODELS[config["model"]]
    options = dict(config["classifier"])
    options.pop("name", None)
    classifier = build_now(cls(name=config["model"], **options))
    classifier.load_weights(os.path.join(directory, WEIGHTS))
    return classifier, config
