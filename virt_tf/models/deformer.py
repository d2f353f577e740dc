"""DeFormer (Cao et al., 2020): lower layers encode each text apart, upper layers jointly."""
import keras
import tensorflow as tf

from virt_tf.models.base import EncoderClassifier
from virt_tf.models.dual import DualEncoderClassifier


@keras.saving.register_keras_serializable(package="virt_tf")
class DeformerClassifier(DualEncoderClassifier):
    """The lower `L - k` encoder layers run on `[CLS] x [SEP]` and `[CLS] y [SEP]` apart
    (y's positions start at 0, so y's lower states can be cached); the upper
    ``joint_layers = k`` layers run over the concatenation `[CLS] x [SEP] y [SEP]` of the
    lower states (y's `[CLS]` dropped), then mean pooling and a classifier, as the
    cross-encoder. Paper setting: k = 1 (11 + 1 for 12 layers, 5 + 1 for MiniLM-L6).

    ``encode`` gives the lower states (the offline part); ``score`` runs the upper
    layers, so the online cost is k full layers over the pair.
    Input: ``text_a``/``text_b`` packings; output: logits `[batch, num_labels]`.
    """

    def __init__(self, encoder_config, num_labels, joint_layers=1, dropout_rate=0.1,
                 stack_texts=False, head=None, **kwargs):
        del head  # the upper encoder layers are this model's head
        EncoderClassifier.__init__(self, encoder_config, num_labels, dropout_rate, **kwargs)
        layers = self.encoder_config.num_hidden_layers
        if not 1 <= int(joint_layers) < layers:
            raise ValueError(f"joint_layers must be in [1, {layers - 1}] for a {layers}-layer "
                             f"encoder, got {joint_layers}")
        self.joint_layers = int(joint_layers)
        self.stack_texts = bool(stack_texts)
        self._make_encoder()
        self._make_pooled_classifier()

    @property
    def separate_layers(self):
        return self.encoder_config.num_hidden_layers - self.joint_layers

    def score(self, states_a, mask_a, states_b, mask_b, training=False):
        """Lower states of x `[batch, m, d]` and y `[batch, n, d]` -> logits."""
        hidden = tf.concat([tf.cast(states_a, self.compute_dtype),
                            tf.cast(states_b[:, 1:], self.compute_dtype)], axis=1)
        mask = tf.concat([mask_a, mask_b[:, 1:]], axis=1)
        out = self.encoder.run_layers(hidden, mask, self.separate_layers, None,
                                      training=training)["sequence_output"]
        return self.pooled_logits(out, mask, training=training)

    def get_config(self):
        return dict(EncoderClassifier.get_config(self), joint_layers=self.joint_layers,
                    stack_texts=self.stack_texts)
