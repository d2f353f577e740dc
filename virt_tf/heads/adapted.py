"""The VIRT-encoder's head: VIRT-adapted interaction (Eq. 8), then fusion (Eq. 9)."""
import keras

from virt_tf.heads.pooled import PooledFusionHead
from virt_tf.modeling.layers.interaction import VirtAdaptedInteraction


@keras.saving.register_keras_serializable(package="virt_tf")
class VirtAdaptedHead(PooledFusionHead):
    """Eq. 8: `u = Pool(softmax(Hx Hy^T / sqrt(d)) Hy)`, `v` symmetric (no weights);
    Eq. 9: `logits = MLP2(MLP1(r) + r)`, `r = [u, v, u - v, max(u, v)]`.

    `PooledFusionHead` with Eq. 8's `u`, `v` in place of the two mean-pooled texts;
    ``fusion="code"`` and ``pool_padding`` give the released code's forms.
    Shapes as in `PairHead`.
    """

    def build(self, input_shape):
        self.interaction = VirtAdaptedInteraction(self.pool_padding, name="interaction")
        super().build(input_shape)

    def pool(self, states_a, mask_a, states_b, mask_b):
        return self.interaction(states_a, mask_a, states_b, mask_b)
