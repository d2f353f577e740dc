"""What every task model shares: one `BertEncoder`, a label count, dropout, `call`, and
the capabilities it declares (read by training, serving, caching and profiling)."""
import keras

from virt_tf.modeling.encoder import BertEncoder, EncoderConfig
from virt_tf.modeling.layers.pooling import masked_mean
from virt_tf.models.inputs import dummy_features

SIGNATURES_OFFLINE = ("encode", "score", "serving_default")
SIGNATURES_JOINT = ("serving_default",)


class EncoderClassifier(keras.Model):
    """Base of the task models: holds the encoder; subclasses define `forward`.

    `forward(features, training)` returns a dict with ``"logits"``
    `[batch, num_labels]`; `call` returns those logits.

    Capabilities (declared by each subclass, never inferred from a model's name):
      ``offline``: the texts are encoded apart (`encode`), so their states can be
        cached and the pair scored online from them (`score`);
      ``input_packings``: the id packings `forward` reads (``pair`` or
        ``text_a``/``text_b``);
      `separate_layers`: how many encoder layers see one text alone (where L_virt
        applies; 0 for the cross-encoder);
      `signatures`: the serving signatures an export has.
    """
    offline = False
    input_packings = ("pair",)

    def __init__(self, encoder_config, num_labels, dropout_rate=0.1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(encoder_config, dict):
            encoder_config = EncoderConfig.from_dict(encoder_config)
        self.encoder_config = encoder_config
        self.num_labels = num_labels
        self.dropout_rate = dropout_rate

    @property
    def separate_layers(self):
        return 0

    @property
    def signatures(self):
        return SIGNATURES_OFFLINE if self.offline else SIGNATURES_JOINT

    def _make_encoder(self):
        """The shared encoder; subclasses call this where their layer order wants it."""
        self.encoder = BertEncoder(self.encoder_config, name="encoder")

    def _make_pooled_classifier(self):
        """Dropout and a linear classifier over mean-pooled joint states (`pooled_logits`)."""
        self.dropout = keras.layers.Dropout(self.dropout_rate)
        self.classifier = keras.layers.Dense(
            self.num_labels, name="classifier",
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=self.encoder_config.initializer_range))

    def pooled_logits(self, states, mask, training=False):
        """Logits `[batch, num_labels]` from the mean of ``states`` `[batch, seq, d]` over
        the valid positions of ``mask`` `[batch, seq]`."""
        return self.classifier(self.dropout(masked_mean(states, mask), training=training))

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
