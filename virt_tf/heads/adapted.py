"""The VIRT-encoder's head: VIRT-adapted interaction (Eq. 8), then fusion (Eq. 9)."""
import keras

from virt_tf.heads.base import PairHead
from virt_tf.heads.pooled import default_activation
from virt_tf.modeling.layers.fusion import FUSION_FORMS, FusionClassifier
from virt_tf.modeling.layers.interaction import VirtAdaptedInteraction


@keras.saving.register_keras_serializable(package="virt_tf")
class VirtAdaptedHead(PairHead):
    """Eq. 8: `u = Pool(softmax(Hx Hy^T / sqrt(d)) Hy)`, `v` symmetric (no weights);
    Eq. 9: `logits = MLP2(MLP1(r) + r)`, `r = [u, v, u - v, max(u, v)]`.

    ``fusion="code"`` and ``pool_padding`` give the released code's forms.
    Shapes as in `PairHead`.
    """

    def __init__(self, num_labels, fusion="paper", pool_padding=False, activation="default",
                 **kwargs):
        super().__init__(num_labels, **kwargs)
        if fusion not in FUSION_FORMS:
            raise ValueError(f"fusion must be one of {FUSION_FORMS}, got {fusion!r}")
        self.fusion = fusion
        self.pool_padding = bool(pool_padding)
        self.activation = activation

    def build(self, input_shape):
        self.interaction = VirtAdaptedInteraction(self.pool_padding, name="interaction")
        self.classifier = FusionClassifier(
            self.num_labels, form=self.fusion,
            activation=default_activation(self.fusion, self.activation),
            dropout_rate=self.dropout_rate, initializer_range=self.initializer_range,
            name="fusion")
        self.classifier.build((None, input_shape[-1]))
        super().build(input_shape)

    def logits(self, states_a, mask_a, states_b, mask_b, training=False):
        u, v = self.interaction(states_a, mask_a, states_b, mask_b)
        return self.classifier(u, v, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(fusion=self.fusion, pool_padding=self.pool_padding,
                      activation=self.activation)
        return config
