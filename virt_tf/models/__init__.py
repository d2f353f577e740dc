"""Task models built on the one `BertEncoder` (imported lazily: `registry` needs no TF)."""
import importlib

_LAZY = {"CrossEncoderClassifier": "virt_tf.models.cross",
         "DualEncoderClassifier": "virt_tf.models.dual",
         "DeformerClassifier": "virt_tf.models.deformer",
         "VirtModel": "virt_tf.models.virt"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'virt_tf.models' has no attribute {name!r}")
