"""One post-LayerNorm BERT transformer block (paper Eq. 1a-1c)."""
import keras
import tensorflow as tf

from virt_tf.modeling.layers.attention import ScoresMultiHeadAttention


def gelu_erf(x):
    """Exact GELU, as in the original BERT."""
    return 0.5 * x * (1.0 + tf.math.erf(x / tf.sqrt(tf.cast(2.0, x.dtype))))


@keras.saving.register_keras_serializable(package="virt_tf")
class BertTransformerLayer(keras.layers.Layer):
    """Attention -> dropout -> residual -> LN -> FFN(erf GELU) -> dropout -> residual -> LN.

    Inputs: ``hidden`` `[batch, seq, hidden]`, ``padding_mask`` 0/1 `[batch, seq]`.
    Returns a dict with ``output`` `[batch, seq, hidden]` and the attention
    layer's ``scores`` `[batch, heads, seq, seq]` (plus ``query``/``key`` when
    ``return_qk``).
    """

    def __init__(self, num_heads, intermediate_size, dropout_rate=0.1,
                 attention_dropout_rate=0.1, initializer_range=0.02,
                 layer_norm_epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.initializer_range = initializer_range
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, input_shape):
        hidden = input_shape[-1]
        if hidden % self.num_heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of {self.num_heads} heads")
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.attention = ScoresMultiHeadAttention(
            self.num_heads, hidden // self.num_heads, self.attention_dropout_rate,
            self.initializer_range, name="attention")
        self.attention.build(input_shape)
        self.attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_layer_norm")
        self.attention_layer_norm.build(input_shape)
        self.intermediate = keras.layers.Dense(
            self.intermediate_size, activation=gelu_erf, kernel_initializer=init,
            name="intermediate")
        self.intermediate.build(input_shape)
        self.output_dense = keras.layers.Dense(hidden, kernel_initializer=init, name="output")
        self.output_dense.build((None, None, self.intermediate_size))
        self.output_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="output_layer_norm")
        self.output_layer_norm.build(input_shape)
        self._dropout = keras.layers.Dropout(self.dropout_rate)
        super().build(input_shape)

    def call(self, hidden, padding_mask=None, training=False, return_qk=False):
        att = self.attention(hidden, padding_mask=padding_mask, training=training, return_qk=return_qk)
        x = self.attention_layer_norm(
            hidden + self._dropout(att["output"], training=training))
        y = self.output_dense(self.intermediate(x))
        att["output"] = self.output_layer_norm(x + self._dropout(y, training=training))
        return att

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, intermediate_size=self.intermediate_size,
                      dropout_rate=self.dropout_rate,
                      attention_dropout_rate=self.attention_dropout_rate,
                      initializer_range=self.initializer_range,
                      layer_norm_epsilon=self.layer_norm_epsilon)
        return config
