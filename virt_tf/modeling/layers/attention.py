"""Multi-head self-attention that hands out its raw scores and per-head Q/K."""
import math

import keras
import tensorflow as tf

# Added to the scores of masked keys; large enough that exp() underflows to 0.
MASK_BIAS = -1e9
# float16 has no -1e9 (it would round to -inf, and 0 * -inf is NaN): a bias it holds.
MASK_BIAS_FLOAT16 = -3e4


def attention_bias(mask, dtype=tf.float32):
    """[batch, key] 0/1 mask -> additive bias broadcastable to [batch, heads, query, key]."""
    mask = tf.cast(mask, dtype)
    bias = MASK_BIAS_FLOAT16 if tf.as_dtype(dtype) == tf.float16 else MASK_BIAS
    return (1.0 - mask)[:, None, None, :] * bias


@keras.saving.register_keras_serializable(package="virt_tf")
class ScoresMultiHeadAttention(keras.layers.Layer):
    """BERT multi-head self-attention returning raw pre-softmax scores.

    Inputs:
      hidden: float `[batch, seq, hidden]`.
      padding_mask: 0/1 `[batch, seq]` marking valid key positions.
    Returns a dict:
      ``output``: `[batch, seq, hidden]` (before the residual and LayerNorm).
      ``scores``: `[batch, heads, seq, seq]`, `Q K^T / sqrt(d_head) + mask_bias`
        (the paper's `S^(l)`, Eq. 3).
      ``query``/``key`` (when ``return_qk``): `[batch, heads, seq, d_head]`,
        the per-head projections that Eq. 5 of the paper re-uses across texts.

    Weights are stored as dense `[hidden, hidden]` kernels, the layout of the
    original BERT checkpoints; heads are split by reshaping.
    """

    def __init__(self, num_heads, head_size, dropout_rate=0.1,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_size = head_size
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range
        self._dropout = keras.layers.Dropout(dropout_rate)

    def build(self, input_shape):
        hidden = input_shape[-1]
        inner = self.num_heads * self.head_size
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        for name, shape in (("query", (hidden, inner)), ("key", (hidden, inner)),
                            ("value", (hidden, inner)), ("output", (inner, hidden))):
            setattr(self, name + "_kernel",
                    self.add_weight(name=name + "_kernel", shape=shape, initializer=init))
            setattr(self, name + "_bias",
                    self.add_weight(name=name + "_bias", shape=(shape[1],), initializer="zeros"))
        super().build(input_shape)

    def _split_heads(self, x):
        batch, seq = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, [batch, seq, self.num_heads, self.head_size])
        return tf.transpose(x, [0, 2, 1, 3])

    def project(self, hidden, name):
        """Per-head projection `name` in {query, key, value}: -> [batch, heads, seq, d_head]."""
        kernel = getattr(self, name + "_kernel")
        bias = getattr(self, name + "_bias")
        return self._split_heads(tf.matmul(hidden, kernel) + bias)

    def call(self, hidden, padding_mask=None, training=False, return_qk=False):
        q = self.project(hidden, "query")
        k = self.project(hidden, "key")
        v = self.project(hidden, "value")
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(self.head_size))
        if scores.dtype == tf.float16:  # softmax (and the returned scores) in float32
            scores = tf.cast(scores, tf.float32)
        if padding_mask is not None:
            scores = scores + attention_bias(padding_mask, scores.dtype)
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), v.dtype)
        probs = self._dropout(probs, training=training)
        context = tf.matmul(probs, v)  # [b, h, s, d]
        context = tf.transpose(context, [0, 2, 1, 3])
        batch, seq = tf.shape(context)[0], tf.shape(context)[1]
        context = tf.reshape(context, [batch, seq, self.num_heads * self.head_size])
        out = {"output": tf.matmul(context, self.output_kernel) + self.output_bias,
               "scores": scores}
        if return_qk:
            out["query"] = q
            out["key"] = k
        return out

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, head_size=self.head_size,
                      dropout_rate=self.dropout_rate,
                      initializer_range=self.initializer_range)
        return config
