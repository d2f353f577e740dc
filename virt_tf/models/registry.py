"""The model registry (one row a model) and saving/loading of classifiers. No flags here.

A row names the classifier class (whose attributes declare the model's
capabilities) and its online head; the head's class declares the run options it
is built from (``RUN_OPTIONS``, `virt_tf.heads.base.PairHead`), whose defaults
are the schema's (`virt_tf.options`). Run options a model implies (e.g. the
baselines train without L_virt) are data, in ``configs/models/<name>.yaml``.

Importing this module does not import TensorFlow: rows name their classes as
``module:Class`` paths, imported when a model is built, and the two functions
that need Keras or TensorFlow themselves import it (the grid report and the
commands read the rows before any heavy import).

A trained model directory holds ``model_config.json`` (what to build),
``model.weights.h5`` (the weights), ``vocab.txt``, and ``model.keras``, the
same classifier in the Keras format (`virt_tf.rundir` names them). Nothing is
pickled: the config is JSON, weights are HDF5 arrays, and `load_keras` loads
with ``safe_mode=True`` (the classes are registered serializable and rebuilt
from `get_config`). Every file is written through `virt_tf.rundir`'s atomic
writer, so a kill never leaves a half-written one.
"""
import dataclasses
import importlib
import json
import os
import shutil
import warnings

from virt_tf import rundir
from virt_tf.config import defaults
from virt_tf.errors import CheckpointError, MissingFileError
from virt_tf.options import RunOptions
from virt_tf.rundir import KERAS_FILE, MODEL_CONFIG, VOCAB, WEIGHTS


def _import(path):
    """The object of a ``module:name`` path."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One registry row.

    ``cls_path`` (``module:Class``) is the classifier class; its attributes
    declare the capabilities (``offline``, ``signatures``, ``separate_layers``,
    ``input_packings``). ``head`` (``module:Class``, a `PairHead`) is its online
    head, or None for a model that builds its own (the cross-encoder, DeFormer);
    ``simple_head`` the head that ``virt_head: simple`` puts in its place ("w/o
    VIRT-A"). ``options`` maps constructor arguments of the classifier to the run
    options they come from.
    """
    name: str
    cls_path: str
    summary: str
    head: str = None
    simple_head: str = None
    options: tuple = ()

    @property
    def cls(self):
        """The classifier class (imported on first use)."""
        return _import(self.cls_path)

    def head_class(self, options):
        """The `PairHead` class the run ``options`` ask for (None: no separate head)."""
        if self.simple_head and options.get("virt_head") == "simple":
            return _import(self.simple_head)
        return _import(self.head) if self.head else None


_DUAL = "virt_tf.models.dual:DualEncoderClassifier"
_POOLED = "virt_tf.heads.pooled:PooledFusionHead"
_ROWS = [
    ModelSpec("cross", "virt_tf.models.cross:CrossEncoderClassifier",
              "cross-encoder over [CLS] x [SEP] y [SEP] (the teacher)"),
    ModelSpec("siamese", _DUAL, "Siamese BERT: Eq. 9 on mean-pooled states "
              "(--fusion=concat: the paper's [u; v])", _POOLED),
    ModelSpec("virt", _DUAL, "VIRT-encoder: Eq. 8 + Eq. 9 on cached states, "
              "trained with alpha * L_virt", "virt_tf.heads.adapted:VirtAdaptedHead",
              simple_head=_POOLED),
    ModelSpec("deformer", "virt_tf.models.deformer:DeformerClassifier",
              "DeFormer: lower layers apart, upper --deformer_joint_layers jointly",
              options=(("joint_layers", "deformer_joint_layers"),)),
    ModelSpec("dipair", _DUAL, "DiPair: first 8 / 16 states of x / y, one light "
              "transformer layer", "virt_tf.heads.dipair:DiPairHead"),
    ModelSpec("poly", _DUAL, "Poly-encoder: 360 learned codes over x, y's pooled vector "
              "attends over them", "virt_tf.heads.poly:PolyEncoderHead"),
    ModelSpec("dse", _DUAL, "DSE: Siamese BERT trained on task loss + logit distillation "
              "(0.5 / 0.5)", _POOLED),
]
MODELS = {row.name: row for row in _ROWS}


def same_online_part(name):
    """The first registry row built like ``name`` (same classifier class, head and options):
    models that differ only in how they are trained (DSE is the Siamese model trained with
    logit distillation) share their online part, so their online cost is one measurement."""
    spec = get_spec(name)
    built = (spec.cls_path, spec.head, spec.simple_head, spec.options)
    return next(row.name for row in _ROWS
                if (row.cls_path, row.head, row.simple_head, row.options) == built)


def get_spec(name):
    """The registry row of ``name``; `CheckpointError` naming the known ones."""
    if name not in MODELS:
        raise CheckpointError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]


def build_classifier(name, encoder_config, num_labels, cfg=None):
    """A classifier of model ``name``; ``cfg`` (a `RunOptions`, or a mapping of some run
    options over `virt_tf.config.defaults`) supplies the head's options and the dropout."""
    spec = get_spec(name)
    options = cfg if isinstance(cfg, RunOptions) else {**defaults(), **(cfg or {})}
    kwargs = {arg: options[key] for arg, key in spec.options if options.get(key) is not None}
    head = spec.head_class(options)
    if head is not None:
        kwargs["head"] = head.from_options(num_labels, encoder_config, options)
    return spec.cls(encoder_config, num_labels, dropout_rate=options["dropout_rate"],
                    name=name, **kwargs)


def build_now(classifier):
    """Create ``classifier``'s variables by one call on placeholder ids."""
    classifier(dummy_features(), training=False)
    return classifier


def save_classifier(directory, model_name, classifier, meta, vocab_file, keras_format=True):
    """Write weights (`model.weights.h5`), config JSON, vocab and (by default) `model.keras`.

    No pickle anywhere. Each file is written under a temporary name and renamed.
    """
    os.makedirs(directory, exist_ok=True)
    with rundir.atomic_target(rundir.path(directory, WEIGHTS), ".weights.h5") as tmp:
        classifier.save_weights(tmp)
    vocab_dst = rundir.path(directory, VOCAB)
    if os.path.abspath(vocab_file) != os.path.abspath(vocab_dst):
        with rundir.atomic_target(vocab_dst) as tmp:
            shutil.copyfile(vocab_file, tmp)
    if keras_format:
        save_keras(rundir.path(directory, KERAS_FILE), classifier)
    config = {"model": model_name, "classifier": classifier.get_config(), **meta,
              "vocab_file": VOCAB}
    rundir.write_text_atomic(rundir.path(directory, MODEL_CONFIG), json.dumps(config, indent=2))


def save_keras(path, classifier):
    """Save ``classifier`` in the Keras format (a zip of config JSON and HDF5 weights)."""
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: a Keras-format file name must end in .keras")
    with rundir.atomic_target(path, ".keras") as tmp:
        classifier.save(tmp)
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
    import keras  # pylint: disable=import-outside-toplevel  (tensorflow: this module stays light)
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
    """The ``model_config.json`` of a trained model directory, checked to be one of ours."""
    path = rundir.path(directory, MODEL_CONFIG)
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
        raise CheckpointError(f"{rundir.path(directory, MODEL_CONFIG)}: cannot build the "
                              f"model it describes: {_summary(e)}") from e
    weights = rundir.path(directory, WEIGHTS)
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
    from virt_tf.models.inputs import dummy_features as make  # pylint: disable=import-outside-toplevel  (tensorflow: this module stays light)
    return make(batch, seq)
