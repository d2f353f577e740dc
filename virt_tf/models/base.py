"""What every task model shares: one `BertEncoder`, a label count, dropout, and `call`."""
import keras

from virt_tf.modeling.encoder import BertEncoder, EncoderConfig
from virt_tf.models.inputs import dummy_features


class EncoderClassifier(keras.Model):
    """Base of the task models: holds the encoder; subclasses define `forward`.

    `forward(features, training)` returns a dict with ``"logits"``
    `[batch, num_labels]`; `call` returns those logits.
    """

    def __init__(self, encoder_config, num_labels, dropout_rate=0.1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(encoder_config, dict):
            encoder_config = EncoderConfig.from_dict(encoder_config)
        self.encoder_config = encoder_config
        self.num_labels = num_labels
        self.dropout_rate = dropout_rate

    def _make_encoder(self):
        """The shared encoder; subclasses call this where their layer order wants it."""
        self.encoder = BertEncoder(self.encoder_config, name="encoder")

    def forward(self, features, training=False):
        raise NotImplementedError

    def call(self, features, training=False):
        return self.forward(features, training=training)["logits"]

    def build_from_config(self, config):
        """Create the variables (Keras-format loading) by one call on placeholder ids."""
        del config
        self(dummy_features(), training=False)

    def get_config(self):
        return {"encoder_config": self.encoder_config.to_dict(), "num_labels": self.num_labels,
                "dropout_rate": self.dropout_rate, "name": self.name}
