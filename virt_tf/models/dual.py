"""Representation-based (Siamese) classifiers: one shared encoder, a light online head."""
import keras

from virt_tf.modeling.layers.fusion import FusionClassifier
from virt_tf.modeling.layers.interaction import VirtAdaptedInteraction
from virt_tf.modeling.layers.pooling import masked_mean
from virt_tf.models.base import EncoderClassifier

HEADS = ("adapted", "simple")


@keras.saving.register_keras_serializable(package="virt_tf")
class DualEncoderClassifier(EncoderClassifier):
    """Siamese BERT (`Trm_x = Trm_y`) with an interaction head on cached states.

    ``head="adapted"``: VIRT-adapted interaction (Eq. 8) then fusion (Eq. 9),
    the VIRT-encoder. ``head="simple"``: Eq. 9 on the mean-pooled states, the
    Siamese BERT baseline and the "w/o VIRT-A" ablation.

    The two texts are encoded by separate calls of the same encoder, so x's
    states never depend on y (the Siamese property). ``encode`` is the
    offline part, ``score`` the online part.

    Input: the ``text_a`` and ``text_b`` packings (dicts of `[batch, seq]` ids).
    Output: logits `[batch, num_labels]`.
    """

    def __init__(self, encoder_config, num_labels, head="adapted", fusion="paper",
                 pool_padding=False, mlp_activation="default", dropout_rate=0.1, **kwargs):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        super().__init__(encoder_config, num_labels, dropout_rate, **kwargs)
        self.head = head
        self.fusion = fusion
        self.pool_padding = pool_padding
        self.mlp_activation = mlp_activation
        if mlp_activation == "default":
            mlp_activation = None if fusion == "code" else "gelu"
        self._make_encoder()
        self.interaction = (VirtAdaptedInteraction(pool_padding, name="interaction")
                            if head == "adapted" else None)
        self.classifier = FusionClassifier(num_labels, form=fusion, activation=mlp_activation,
                                           dropout_rate=dropout_rate,
                                           initializer_range=self.encoder_config.initializer_range,
                                           name="fusion")

    def encode(self, text, training=False, return_qk=False):
        """Offline part: one text packing -> encoder outputs (``sequence_output`` ...)."""
        return self.encoder(text, training=training, return_qk=return_qk)

    def score(self, states_a, mask_a, states_b, mask_b, training=False):
        """Online part: cached last-layer states of both texts -> logits."""
        if self.interaction is not None:
            u, v = self.interaction(states_a, mask_a, states_b, mask_b)
        else:
            u = masked_mean(states_a, mask_a, self.pool_padding)
            v = masked_mean(states_b, mask_b, self.pool_padding)
        return self.classifier(u, v, training=training)

    def forward(self, features, training=False, return_qk=False):
        a, b = features["text_a"], features["text_b"]
        out_a = self.encode(a, training=training, return_qk=return_qk)
        out_b = self.encode(b, training=training, return_qk=return_qk)
        logits = self.score(out_a["sequence_output"], a["input_mask"],
                            out_b["sequence_output"], b["input_mask"], training=training)
        return {"logits": logits, "text_a": out_a, "text_b": out_b}

    def get_config(self):
        return dict(super().get_config(), head=self.head, fusion=self.fusion,
                    pool_padding=self.pool_padding, mlp_activation=self.mlp_activation)
