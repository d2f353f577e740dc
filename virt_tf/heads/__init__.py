"""Online heads: one Keras layer a file, `(states_a, mask_a, states_b, mask_b) -> logits`.

A head is all a representation-based model runs online: it reads the cached
last-layer states of the two texts, which were encoded apart. A new Siamese
model is a new head plus a registry row (`virt_tf.models.registry`).
"""
from virt_tf.heads.base import PairHead  # noqa: F401
from virt_tf.heads.pooled import PooledFusionHead  # noqa: F401
from virt_tf.heads.adapted import VirtAdaptedHead  # noqa: F401
from virt_tf.heads.dipair import DiPairHead  # noqa: F401
from virt_tf.heads.poly import PolyEncoderHead  # noqa: F401
