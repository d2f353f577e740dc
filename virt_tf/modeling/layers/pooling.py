"""Mean pooling over valid positions."""
import keras
import tensorflow as tf


def masked_mean(states, mask, include_padding=False):
    """Mean of `states` `[batch, seq, d]` over the positions where `mask` `[batch, seq]` is 1.

    With ``include_padding`` the sum of valid states is divided by the padded
    length instead (the authors' released code; a length-dependent scale).
    """
    mask = tf.cast(mask, states.dtype)[:, :, None]
    total = tf.reduce_sum(states * mask, axis=1)
    if include_padding:
        count = tf.cast(tf.shape(states)[1], states.dtype)
    else:
        count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    return total / count


@keras.saving.register_keras_serializable(package="virt_tf")
class MaskedMeanPooling(keras.layers.Layer):
    """`[batch, seq, d]` states and `[batch, seq]` mask -> `[batch, d]` mean over valid positions."""

    def __init__(self, include_padding=False, **kwargs):
        super().__init__(**kwargs)
        self.include_padding = include_padding

    def call(self, states, mask):
        return masked_mean(states, mask, self.include_padding)

    def get_config(self):
        config = super().get_config()
        config["include_padding"] = self.include_padding
        return config
