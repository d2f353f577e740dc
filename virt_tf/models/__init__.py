"""Task models built on the one `BertEncoder`."""
from virt_tf.models.cross import CrossEncoderClassifier  # noqa: F401
from virt_tf.models.dual import DualEncoderClassifier  # noqa: F401
from virt_tf.models.virt import VirtModel  # noqa: F401
