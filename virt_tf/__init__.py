"""virt_tf: VIRT (virtual interaction) text matching in TensorFlow 2 / Keras 3.

Layout follows Model Garden: ``modeling/layers`` (one Keras layer a file),
``modeling/encoder.py`` (the BERT network, written once), ``heads/`` (one
online head a file), ``models/`` (an encoder plus a head, and the registry),
``losses.py`` (objective terms), ``options.py`` (the schema of the run options),
``data/`` (tokenizer, packer, task readers), ``training/`` (a stage, the
pipeline), ``evaluation/``, ``inference/`` (a trained directory -> model +
preprocessor + task, the state cache, serving).

Use from Python::

    import virt_tf
    matcher = virt_tf.load("runs/rte_virt")          # a trained model directory
    probs = matcher.predict(["A man plays."], ["Someone is playing."])

    run = virt_tf.pipeline_options("rte", "virt", model_dir="runs/rte_virt", epochs=3)
    metrics = virt_tf.train_pipeline(run)            # python -m virt_tf.train, in-process

The names below are imported on first use, so ``import virt_tf`` stays light.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {
    "load": "virt_tf.inference.matcher", "TextMatcher": "virt_tf.inference.matcher",
    "VirtModel": "virt_tf.models.virt",
    "TaskLoss": "virt_tf.losses", "VirtLoss": "virt_tf.losses",
    "LogitDistillationLoss": "virt_tf.losses", "LogitMSELoss": "virt_tf.losses",
    "virt_loss": "virt_tf.losses",
    "recipe": "virt_tf.config", "recipe_names": "virt_tf.config",
    "load_config": "virt_tf.config", "pipeline_options": "virt_tf.config",
    "RunOptions": "virt_tf.options", "PipelineOptions": "virt_tf.options",
    "DebugOptions": "virt_tf.options", "train_pipeline": "virt_tf.training.pipeline",
    "augment_pairs": "virt_tf.data.augment",
    "BertPairPreprocessor": "virt_tf.data.tokenization",
    "MODELS": "virt_tf.models.registry", "build_classifier": "virt_tf.models.registry",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'virt_tf' has no attribute {name!r}")


def from_checkpoint(model, num_labels, **kwargs):
    """A new model with its preprocessor: `TextMatcher.from_checkpoint`."""
    return importlib.import_module("virt_tf.inference.matcher").TextMatcher.from_checkpoint(
        model, num_labels, **kwargs)
