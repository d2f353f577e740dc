"""Poly-encoder's head (Humeau et al., 2020), adapted to pair classification."""
import math

import keras
import tensorflow as tf

from virt_tf.heads.base import PairHead
from virt_tf.heads.pooled import default_activation
from virt_tf.modeling.layers.attention import attention_bias
from virt_tf.modeling.layers.fusion import FUSION_FORMS, FusionClassifier
from virt_tf.modeling.layers.pooling import masked_mean


def _attend(queries, keys, key_mask):
    """`softmax(queries keys^T / sqrt(d)) keys`; queries `[b|1, q, d]`, keys `[b, k, d]`."""
    d = keys.shape[-1]
    scores = tf.matmul(queries, keys, transpose_b=True) * (1.0 / math.sqrt(d))
    scores = scores + attention_bias(key_mask, scores.dtype)[:, 0]
    return tf.matmul(tf.nn.softmax(scores, axis=-1), keys)


@keras.saving.register_keras_serializable(package="virt_tf")
class PolyEncoderHead(PairHead):
    """x's states are summarised by ``codes`` learned query vectors (paper setting: 360):
    `C_i = softmax(c_i Hx^T / sqrt(d)) Hx`, `[batch, codes, d]`; y's mean-pooled vector
    `v` attends over them, `u = softmax(v C^T / sqrt(d)) C`; Eq. 9's fusion classifier
    maps `(u, v)` to logits (the original scores `u . v` for ranking; this is a classifier).

    ``first_m=m`` uses x's first m token states as `C` instead of learned codes (the
    authors' released code, m = 64). Shapes as in `PairHead`.
    """
    RUN_OPTIONS = (("codes", "poly_codes"), ("first_m", "poly_first_m"), ("fusion", "fusion"))

    def __init__(self, num_labels, codes=360, first_m=None, fusion="paper", **kwargs):
        super().__init__(num_labels, **kwargs)
        if fusion not in FUSION_FORMS:
            raise ValueError(f"fusion must be one of {FUSION_FORMS}, got {fusion!r}")
        if first_m is not None and int(first_m) < 1 or int(codes) < 1:
            raise ValueError(f"codes and first_m must be >= 1, got {codes}, {first_m}")
        self.codes = int(codes)
        self.first_m = None if first_m is None else int(first_m)
        self.fusion = fusion

    def build(self, input_shape):
        d = int(input_shape[-1])
        if self.first_m is None:
            self.code_vectors = self.add_weight(name="codes", shape=(self.codes, d),
                                                initializer=self.initializer())
        self.classifier = FusionClassifier(
            self.num_labels, form=self.fusion, activation=default_activation(self.fusion),
            dropout_rate=self.dropout_rate, initializer_range=self.initializer_range,
            name="fusion")
        self.classifier.build((None, d))
        super().build(input_shape)

    def context_vectors(self, states_a, mask_a):
        """`[batch, codes | first_m, d]` vectors of x, and their 0/1 mask."""
        if self.first_m is not None:
            return states_a[:, :self.first_m], mask_a[:, :self.first_m]
        codes = tf.cast(self.code_vectors, states_a.dtype)[None]
        ctx = _attend(codes, states_a, mask_a)
        return ctx, tf.ones(tf.shape(ctx)[:2], mask_a.dtype)

    def logits(self, states_a, mask_a, states_b, mask_b, training=False):
        ctx, ctx_mask = self.context_vectors(states_a, mask_a)
        v = masked_mean(states_b, mask_b)
        u = _attend(v[:, None], ctx, ctx_mask)[:, 0]
        return self.classifier(u, v, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(codes=self.codes, first_m=self.first_m, fusion=self.fusion)
        return config
