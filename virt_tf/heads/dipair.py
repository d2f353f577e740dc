"""DiPair's head (Chen et al., 2020): a light transformer over a few states of each text."""
import keras
import tensorflow as tf

from virt_tf.heads.base import PairHead
from virt_tf.modeling.layers.pooling import masked_mean
from virt_tf.modeling.layers.transformer import BertTransformerLayer


@keras.saving.register_keras_serializable(package="virt_tf")
class DiPairHead(PairHead):
    """First ``x_tokens`` states of x and first ``y_tokens`` of y, one transformer layer, mean
    pooling, classifier.

    The two slices (`[CLS]` included, so each keeps its own positions) are
    concatenated to `[batch, x_tokens + y_tokens, d]`, a learned segment vector
    marks which text each state comes from, and one BERT layer with
    ``num_heads`` heads and an ``intermediate_size`` FFN runs over them; the
    mean of its valid outputs goes through dropout and a Dense to the labels.
    Only `x_tokens + y_tokens` states a pair are read online. Shapes as in
    `PairHead`; texts shorter than a slice are padded and masked.
    """
    RUN_OPTIONS = (("x_tokens", "dipair_x_tokens"), ("y_tokens", "dipair_y_tokens"))

    def __init__(self, num_labels, x_tokens=8, y_tokens=16, num_heads=12,
                 intermediate_size=None, **kwargs):
        super().__init__(num_labels, **kwargs)
        if x_tokens < 1 or y_tokens < 1:
            raise ValueError(f"x_tokens and y_tokens must be >= 1, got {x_tokens}, {y_tokens}")
        self.x_tokens = int(x_tokens)
        self.y_tokens = int(y_tokens)
        self.num_heads = int(num_heads)
        self.intermediate_size = intermediate_size

    @classmethod
    def from_options(cls, num_labels, encoder_config, options, **kwargs):
        """`PairHead.from_options`; its layer has as many attention heads as the encoder's."""
        return super().from_options(num_labels, encoder_config, options,
                                    num_heads=encoder_config.num_attention_heads, **kwargs)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.segments = self.add_weight(name="segment_embeddings", shape=(2, d),
                                        initializer=self.initializer())
        self.layer = BertTransformerLayer(
            self.num_heads, int(self.intermediate_size or 4 * d), self.dropout_rate,
            self.dropout_rate, self.initializer_range, name="transformer")
        self.layer.build((None, None, d))
        self._dropout = keras.layers.Dropout(self.dropout_rate)
        self.classifier = keras.layers.Dense(self.num_labels, kernel_initializer=self.initializer(),
                                             name="classifier")
        self.classifier.build((None, d))
        super().build(input_shape)

    @staticmethod
    def _first(states, mask, k):
        """The first ``k`` positions, zero-padded when the text is shorter."""
        states, mask = states[:, :k], mask[:, :k]
        pad = k - tf.shape(states)[1]
        states = tf.pad(states, [[0, 0], [0, pad], [0, 0]])
        mask = tf.pad(mask, [[0, 0], [0, pad]])
        return states, mask

    def logits(self, states_a, mask_a, states_b, mask_b, training=False):
        xa, ma = self._first(states_a, mask_a, self.x_tokens)
        xb, mb = self._first(states_b, mask_b, self.y_tokens)
        segments = tf.cast(self.segments, xa.dtype)
        hidden = tf.concat([xa + segments[0], xb + segments[1]], axis=1)
        mask = tf.concat([ma, mb], axis=1)
        out = self.layer(hidden, padding_mask=mask, training=training)["output"]
        pooled = masked_mean(out, mask)
        return self.classifier(self._dropout(pooled, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(x_tokens=self.x_tokens, y_tokens=self.y_tokens, num_heads=self.num_heads,
                      intermediate_size=self.intermediate_size)
        return config
