"""BERT encoder with attention scores exposed (see layers/attention.py)."""
from virt_tf.modeling.encoder import BertEncoder, EncoderConfig  # noqa: F401
