"""The interaction-based teacher: BERT over `[CLS] x [SEP] y [SEP]`, mean pooling, classifier."""
import keras

from virt_tf.modeling.encoder import BertEncoder, EncoderConfig
from virt_tf.modeling.layers.pooling import masked_mean
from virt_tf.models.inputs import dummy_features


@keras.saving.register_keras_serializable(package="virt_tf")
class CrossEncoderClassifier(keras.Model):
    """Cross-encoder (paper Table 1, row 1; mean pooling as in section 4.3.1).

    Input: the ``pair`` packing of `BertPairPreprocessor` (a dict of
    `[batch, seq]` ids). Output: logits `[batch, num_labels]`.
    """

    def __init__(self, encoder_config, num_labels, dropout_rate=0.1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(encoder_config, dict):
            encoder_config = EncoderConfig.from_dict(encoder_config)
        self.encoder_config = encoder_config
        self.num_labels = num_labels
        self.dropout_rate = dropout_rate
        self.encoder = BertEncoder(encoder_config, name="encoder")
        self.dropout = keras.layers.Dropout(dropout_rate)
        self.classifier = keras.layers.Dense(
            num_labels, name="classifier",
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=encoder_config.initializer_range))

    def forward(self, features, training=False, return_scores=False):
        pair = features["pair"]
        out = self.encoder(pair, training=training, return_scores=return_scores)
        pooled = masked_mean(out["sequence_output"], pair["input_mask"])
        out["logits"] = self.classifier(self.dropout(pooled, training=training))
        return out

    def call(self, features, training=False):
        return self.forward(features, training=training)["logits"]

    def build_from_config(self, config):
        """Create the variables (Keras-format loading) by one call on placeholder ids."""
        del config
        self(dummy_features(), training=False)

    def get_config(self):
        return {"encoder_config": self.encoder_config.to_dict(), "num_labels": self.num_labels,
                "dropout_rate": self.dropout_rate, "name": self.name}
