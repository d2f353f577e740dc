"""virt_tf: VIRT (virtual interaction) text matching in TensorFlow 2 / Keras 3.

Layout follows Model Garden: ``modeling/layers`` (one Keras layer a file),
``modeling/encoder.py`` (the BERT network, written once), ``models/`` (task
models built on that encoder), ``losses.py`` (distillation losses) and
``data/`` (tokenizer, packer, task readers).
"""

__version__ = "0.1.0"
