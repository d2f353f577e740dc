"""Fusion features and the residual MLP classifier (paper Eq. 9)."""
import keras
import tensorflow as tf

FUSION_FORMS = ("paper", "code", "concat")


def fusion_features(u, v, form="paper"):
    """Eq. 9's `r` from two `[batch, d]` vectors -> `[batch, 4d]`.

    ``paper``: `[u, v, u - v, max(u, v)]`.
    ``code``: `[u, v, |u - v|, max(u, v)^2]` (the authors' released code).
    ``concat``: `[u, v]` -> `[batch, 2d]`, the paper's literal Siamese BERT ("the pooled
    output embeddings of two sequences are concatenated"): no interaction term.
    """
    if form == "paper":
        parts = [u, v, u - v, tf.maximum(u, v)]
    elif form == "code":
        parts = [u, v, tf.abs(u - v), tf.square(tf.maximum(u, v))]
    elif form == "concat":
        parts = [u, v]
    else:
        raise ValueError(f"fusion form must be one of {FUSION_FORMS}, got {form!r}")
    return tf.concat(parts, axis=-1)


@keras.saving.register_keras_serializable(package="virt_tf")
class FusionClassifier(keras.layers.Layer):
    """Eq. 9: `logits = MLP2(MLP1(r) + r)` with `r = fusion_features(u, v)`.

    Inputs: ``u``, ``v`` `[batch, d]`. Output: logits `[batch, num_labels]`
    (the softmax of Eq. 9 is left to the loss / to `predict`).
    MLP1 maps 4d -> 4d (dropout, Dense with ``activation``); MLP2 is dropout
    and a Dense to the labels. With ``form="concat"`` r is `[u, v]` (2d wide).
    ``activation=None`` makes the classifier linear in r (the released code's MLP);
    with ``concat`` the logits are then `f(u) + g(v)`.
    """

    def __init__(self, num_labels, form="paper", activation="gelu", dropout_rate=0.1,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if form not in FUSION_FORMS:
            raise ValueError(f"fusion form must be one of {FUSION_FORMS}, got {form!r}")
        self.num_labels = num_labels
        self.form = form
        self.activation = activation
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range
        self._dropout = keras.layers.Dropout(dropout_rate)

    def build(self, input_shape):
        d4 = (2 if self.form == "concat" else 4) * input_shape[-1]
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.mlp1 = keras.layers.Dense(d4, activation=self.activation, kernel_initializer=init,
                                       name="mlp1")
        self.mlp1.build((None, d4))
        self.mlp2 = keras.layers.Dense(self.num_labels, kernel_initializer=init, name="mlp2")
        self.mlp2.build((None, d4))
        super().build(input_shape)

    def call(self, u, v, training=False):
        r = fusion_features(u, v, self.form)
        h = self.mlp1(self._dropout(r, training=training)) + r
        return self.mlp2(self._dropout(h, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(num_labels=self.num_labels, form=self.form, activation=self.activation,
                      dropout_rate=self.dropout_rate, initializer_range=self.initializer_range)
        return config
