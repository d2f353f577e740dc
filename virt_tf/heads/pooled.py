"""Siamese BERT's head: fusion of the two mean-pooled texts (paper Eq. 9 without Eq. 8)."""
import keras

from virt_tf.heads.base import PairHead
from virt_tf.modeling.layers.fusion import FUSION_FORMS, FusionClassifier
from virt_tf.modeling.layers.pooling import masked_mean


def default_activation(fusion, activation="default"):
    """MLP1's activation: GELU for the paper's features, linear for ``code`` and ``concat``
    (the released code's MLP has none; with ``concat`` that keeps the logits `f(u) + g(v)`)."""
    if activation != "default":
        return activation
    return "gelu" if fusion == "paper" else None


@keras.saving.register_keras_serializable(package="virt_tf")
class PooledFusionHead(PairHead):
    """`u = mean(Hx)`, `v = mean(Hy)` over valid positions, then Eq. 9's classifier.

    ``fusion="paper"``: `r = [u, v, u - v, max(u, v)]` (the fair Siamese baseline and
    the "w/o VIRT-A" ablation); ``"code"``: the released code's features;
    ``"concat"``: `r = [u; v]`, the paper's literal Siamese BERT.
    Shapes as in `PairHead`.
    """
    RUN_OPTIONS = (("fusion", "fusion"), ("pool_padding", "pool_padding"))

    def __init__(self, num_labels, fusion="paper", pool_padding=False, activation="default",
                 **kwargs):
        super().__init__(num_labels, **kwargs)
        if fusion not in FUSION_FORMS:
            raise ValueError(f"fusion must be one of {FUSION_FORMS}, got {fusion!r}")
        self.fusion = fusion
        self.pool_padding = bool(pool_padding)
        self.activation = activation

    def build(self, input_shape):
        self.classifier = FusionClassifier(
            self.num_labels, form=self.fusion,
            activation=default_activation(self.fusion, self.activation),
            dropout_rate=self.dropout_rate, initializer_range=self.initializer_range,
            name="fusion")
        self.classifier.build((None, input_shape[-1]))
        super().build(input_shape)

    def pool(self, states_a, mask_a, states_b, mask_b):
        """`(u, v)`, each `[batch, d]`: what the fusion classifier reads."""
        return (masked_mean(states_a, mask_a, self.pool_padding),
                masked_mean(states_b, mask_b, self.pool_padding))

    def logits(self, states_a, mask_a, states_b, mask_b, training=False):
        u, v = self.pool(states_a, mask_a, states_b, mask_b)
        return self.classifier(u, v, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(fusion=self.fusion, pool_padding=self.pool_padding,
                      activation=self.activation)
        return config
