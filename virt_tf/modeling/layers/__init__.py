"""Reusable Keras layers; one concept a file."""
from virt_tf.modeling.layers.attention import ScoresMultiHeadAttention  # noqa: F401
from virt_tf.modeling.layers.embeddings import BertEmbeddings  # noqa: F401
from virt_tf.modeling.layers.transformer import BertTransformerLayer  # noqa: F401
from virt_tf.modeling.layers.pooling import MaskedMeanPooling  # noqa: F401
from virt_tf.modeling.layers.interaction import VirtAdaptedInteraction  # noqa: F401
from virt_tf.modeling.layers.fusion import FusionClassifier  # noqa: F401
