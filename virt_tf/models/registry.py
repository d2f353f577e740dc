"""The model registry (one row a model) and saving/loading of classifiers. No flags here.

A row names the classifier class (whose attributes declare the model's
capabilities) and how to build it from a run configuration; run options a
model implies (e.g. the baselines train without L_virt) are data, in
``configs/models/<name>.yaml``. Importing this module does not import
TensorFlow: the entry points read the model names before any heavy import.

A trained model directory holds ``model_config.json`` (what to build),
``model.weights.h5`` (the weights), ``vocab.txt``, and ``model.keras``, the
same classifier in the Keras format. Nothing is pickled: the config is JSON,
weights are HDF5 arrays, and `load_keras` loads with ``safe_mode=True`` (the
classes are registered serializable and rebuilt from `get_config`).
Every file is written to a temporary name and renamed, so a kill never leaves
a half-written one.
"""
import dataclasses
import importlib
import json
import os
import shutil
import warnings
from typing import Callable

from virt_tf.errors import CheckpointError, MissingFileError

MODEL_CONFIG = "model_config.json"
WEIGHTS = "model.weights.h5"
KERAS_FILE = "model.keras"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One registry row.

    ``cls_path`` (``module:Class``) is the classifier class; its attributes
    declare the capabilities (``offline``, ``signatures``, ``separate_layers``,
    ``input_packings``). ``head`` builds the online head from
    ``(encoder_config, num_labels, cfg)``, or is None for a model that builds
    its own (the cross-encoder, DeFormer); ``options`` maps constructor
    arguments to the run-config keys they come from.
    """
    name: str
    cls_path: str
    summary: str
    head: Callable = None
    options: tuple = ()

    @property
    def cls(self):
        module, name = self.cls_path.split(":")
        return getattr(importlib.import_module(module), name)


def _common(encoder_config, cfg):
    return {"dropout_rate": cfg.get("dropout_rate", 0.1),
            "initializer_range": encoder_config.initializer_range}


def pooled_head(encoder_config, num_labels, cfg):
    from virt_tf.heads.pooled import PooledFusionHead  # pylint: disable=import-outside-toplevel
    return PooledFusionHead(num_labels, fusion=cfg.get("fusion", "paper"),
                            pool_padding=cfg.get("pool_padding", False),
                            **_common(encoder_config, cfg))


def virt_head(encoder_config, num_labels, cfg):
    """Eq. 8-9; ``virt_head: simple`` gives the pooled head ("w/o VIRT-A")."""
    from virt_tf.heads.adapted import VirtAdaptedHead  # pylint: disable=import-outside-toplevel
    if (cfg.get("virt_head") or "adapted") == "simple":
        return pooled_head(encoder_config, num_labels, cfg)
    return VirtAdaptedHead(num_labels, fusion=cfg.get("fusion", "paper"),
                           pool_padding=cfg.get("pool_padding", False),
                           **_common(encoder_config, cfg))


def dipair_head(encoder_config, num_labels, cfg):
    from virt_tf.heads.dipair import DiPairHead  # pylint: disable=import-outside-toplevel
    return DiPairHead(num_labels, x_tokens=cfg.get("dipair_x_tokens", 8),
                      y_tokens=cfg.get("dipair_y_tokens", 16),
                      num_heads=encoder_config.num_attention_heads,
                      **_common(encoder_config, cfg))


def poly_head(encoder_config, num_labels, cfg):
    from virt_tf.heads.poly import PolyEncoderHead  # pylint: disable=import-outside-toplevel
    return PolyEncoderHead(num_labels, codes=cfg.get("poly_codes", 360),
                           first_m=cfg.get("poly_first_m"), fusion=cfg.get("fusion", "paper"),
                           **_common(encoder_config, cfg))


_DUAL = "virt_tf.models.dual:DualEncoderClassifier"
_ROWS = [
    ModelSpec("cross", "virt_tf.models.cross:CrossEncoderClassifier",
              "cross-encoder over [CLS] x [SEP] y [SEP] (the teacher)"),
    ModelSpec("siamese", _DUAL, "Siamese BERT: Eq. 9 on mean-pooled states "
              "(--fusion=concat: the paper's [u; v])", pooled_head),
    ModelSpec("virt", _DUAL, "VIRT-encoder: Eq. 8 + Eq. 9 on cached states, "
              "trained with alpha * L_virt", virt_head),
    ModelSpec("deformer", "virt_tf.models.deformer:DeformerClassifier",
              "DeFormer: lower layers apart, upper --deformer_joint_layers jointly",
              options=(("joint_layers", "deformer_joint_layers"),)),
    ModelSpec("dipair", _DUAL, "DiPair: first 8 / 16 states of x / y, one light "
              "transformer layer", dipair_head),
    ModelSpec("poly", _DUAL, "Poly-encoder: 360 learned codes over x, y's pooled vector "
              "attends over them", poly_head),
    ModelSpec("dse", _DUAL, "DSE: Siamese BERT trained on task loss + logit distillation "
              "(0.5 / 0.5)", pooled_head),
]
MODELS = {row.name: row for row in _ROWS}


def same_online_part(name):
    """The first registry row built like ``name`` (same classifier class, head and options):
    models that differ only in how they are trained (DSE is the Siamese model trained with
    logit distillation) share their online part, so their online cost is one measurement."""
    spec = get_spec(name)
    return next(row.name for row in _ROWS
                if (row.cls_path, row.head, row.options) == (spec.cls_path, spec.head,
                                                             spec.options))


def get_spec(name):
    if name not in MODELS:
        raise CheckpointError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]


def build_classifier(name, encoder_config, num_labels, cfg=None):
    """A classifier of model ``name``; ``cfg`` (a run config) supplies the head options."""
    spec = get_spec(name)
    cfg = cfg or {}
    kwargs = {arg: cfg[key] for arg, key in spec.options if cfg.get(key) is not None}
    if spec.head is not None:
        kwargs["head"] = spec.head(encoder_config, num_labels, cfg)
    return spec.cls(encoder_config, num_labels, dropout_rate=cfg.get("dropout_rate", 0.1),
                    name=name, **kwargs)


def build_now(classifier):
    """Create ``classifier``'s variables by one call on placeholder ids."""
    from virt_tf.models.inputs import dummy_features  # pylint: disable=import-outside-toplevel
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
        raise MissingFileError(f"{path}: file not found")
    import keras  # pylint: disable=import-outside-toplevel
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
        raise MissingFileError(f"{directory}: model directory not found")
    if not os.path.exists(path):
        raise MissingFileError(f"{directory}: no {MODEL_CONFIG} (not a trained model directory)")
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
    cls = MODELS[config["model"]].cls
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


def dummy_features(batch=2, seq=5):
    """Placeholder packings (`virt_tf.models.inputs.dummy_features`)."""
    from virt_tf.models.inputs import dummy_features as make  # pylint: disable=import-outside-toplevel
    return make(batch, seq)
