"""The interaction-based teacher: BERT over `[CLS] x [SEP] y [SEP]`, mean pooling, classifier."""
import keras

from virt_tf.models.base import EncoderClassifier


@keras.saving.register_keras_serializable(package="virt_tf")
class CrossEncoderClassifier(EncoderClassifier):
    """Cross-encoder (paper Table 1, row 1; mean pooling as in section 4.3.1).

    Input: the ``pair`` packing of `BertPairPreprocessor` (a dict of
    `[batch, seq]` ids). Output: logits `[batch, num_labels]`.
    """

    def __init__(self, encoder_config, num_labels, dropout_rate=0.1, **kwargs):
        super().__init__(encoder_config, num_labels, dropout_rate, **kwargs)
        self._make_encoder()
        self._make_pooled_classifier()

    def forward(self, features, training=False, return_scores=False, return_qk=False):
        pair = features["pair"]
        out = self.encoder(pair, training=training, return_scores=return_scores,
                           return_qk=return_qk)
        out["logits"] = self.pooled_logits(out["sequence_output"], pair["input_mask"],
                                           training=training)
        return out

