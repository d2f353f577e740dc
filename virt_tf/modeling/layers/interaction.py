"""VIRT-adapted interaction over cached last-layer states (paper Eq. 8)."""

import keras
import tensorflow as tf

from virt_tf.modeling.layers.attention import attention_bias
from virt_tf.modeling.layers.pooling import masked_mean


@keras.saving.register_keras_serializable(package="virt_tf")
class VirtAdaptedInteraction(keras.layers.Layer):
    """Paper Eq. 8: one parameter-free cross attention on the last-layer states.

    `Mh_xy = softmax(Hx Hy^T / sqrt(d))` over y's valid positions,
    `u = Pool(Mh_xy Hy)` over x's valid positions; `v` symmetrically.

    Inputs: ``states_x`` `[batch, m, d]`, ``mask_x`` `[batch, m]`,
    ``states_y`` `[batch, n, d]`, ``mask_y`` `[batch, n]`.
    Returns ``(u, v)``, each `[batch, d]`.

    ``pool_padding=True`` divides by the padded length (the released code's
    pooling) instead of by the number of valid positions (the paper's mean).
    """

    def __init__(self, pool_padding=False, **kwargs):
        super().__init__(**kwargs)
        self.pool_padding = pool_padding

    def attend(self, states_q, mask_q, states_k, mask_k):
        """Pooled `softmax(Hq Hk^T/sqrt(d)) Hk`: `[batch, d]`."""
        d = tf.cast(tf.shape(states_q)[-1], states_q.dtype)
        scores = tf.matmul(states_q, states_k, transpose_b=True) / tf.sqrt(d)
        scores = scores + attention_bias(mask_k, scores.dtype)[:, 0]  # [b, 1, n]
        attended = tf.matmul(tf.nn.softmax(scores, axis=-1), states_k)
        return masked_mean(attended, mask_q, self.pool_padding)

    def call(self, states_x, mask_x, states_y, mask_y):
        with tf.name_scope("virt_adapted_interaction"):
            u = self.attend(states_x, mask_x, states_y, mask_y)
            v = self.attend(states_y, mask_y, states_x, mask_x)
        return u, v

    def get_config(self):
        config = super().get_config()
        config["pool_padding"] = self.pool_padding
        return config


