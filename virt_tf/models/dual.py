"""Representation-based (Siamese) classifiers: one shared encoder, any online head."""
import keras
import tensorflow as tf

from virt_tf.heads.adapted import VirtAdaptedHead
from virt_tf.heads.base import PairHead
from virt_tf.models.base import EncoderClassifier

PACKING_KEYS = ("input_word_ids", "input_mask", "input_type_ids")


def _pad_to(packing, length):
    pad = length - tf.shape(packing["input_word_ids"])[1]
    return {k: tf.pad(packing[k], [[0, 0], [0, pad]]) for k in PACKING_KEYS if k in packing}


def stack_packings(a, b):
    """x's and y's packings padded to one length and stacked along the batch: `[2b, L]`."""
    length = tf.maximum(tf.shape(a["input_word_ids"])[1], tf.shape(b["input_word_ids"])[1])
    a, b = _pad_to(a, length), _pad_to(b, length)
    return {k: tf.concat([a[k], b[k]], axis=0) for k in a}


def split_outputs(out, batch, len_a, len_b):
    """Undo `stack_packings` on encoder outputs (states `[2b, L, d]`, Q/K `[2b, h, L, d_h]`)."""
    def side(t, first, length):
        t = t[:batch] if first else t[batch:]
        return t[:, :length] if t.shape.rank == 3 else t[:, :, :length]
    a = {k: (side(v, True, len_a) if k == "sequence_output" else [side(t, True, len_a) for t in v])
         for k, v in out.items()}
    b = {k: (side(v, False, len_b) if k == "sequence_output" else
             [side(t, False, len_b) for t in v]) for k, v in out.items()}
    return a, b


@keras.saving.register_keras_serializable(package="virt_tf")
class DualEncoderClassifier(EncoderClassifier):
    """Siamese BERT (`Trm_x = Trm_y`) with an online head on the cached states.

    ``head`` is a `virt_tf.heads.PairHead` (or its Keras config, as `get_config`
    writes it): `VirtAdaptedHead` (Eq. 8-9: the VIRT-encoder), `PooledFusionHead`
    (Siamese BERT, "w/o VIRT-A"), `DiPairHead`, `PolyEncoderHead`.

    x's states never depend on y (the Siamese property): ``encode`` is the
    offline part, ``score`` (the head) the online part. ``stack_texts=True``
    runs both texts through the encoder in one call, padded to one length and
    stacked along the batch (padding is masked, so the states equal those of two
    calls); it is off by default: on MNLI-like pairs (long premise, short
    hypothesis) the padding of y to x's length costs more than the second call
    (tools/benchmark_speed.py).

    Input: the ``text_a`` and ``text_b`` packings (dicts of `[batch, seq]` ids).
    Output: logits `[batch, num_labels]`.
    """
    offline = True
    input_packings = ("text_a", "text_b")

    def __init__(self, encoder_config, num_labels, head=None, dropout_rate=0.1,
                 stack_texts=False, **kwargs):
        super().__init__(encoder_config, num_labels, dropout_rate, **kwargs)
        self._make_encoder()
        if head is None:
            head = VirtAdaptedHead(num_labels, dropout_rate=dropout_rate,
                                   initializer_range=self.encoder_config.initializer_range)
        elif isinstance(head, dict):
            head = keras.saving.deserialize_keras_object(head)
        if not isinstance(head, PairHead):
            raise TypeError(f"head must be a virt_tf.heads.PairHead, got {type(head).__name__}")
        self.head = head
        self.stack_texts = bool(stack_texts)

    @property
    def separate_layers(self):
        return self.encoder_config.num_hidden_layers

    def encode(self, text, training=False, return_qk=False):
        """Offline part: one text packing -> encoder outputs (``sequence_output`` ...)."""
        return self.encoder(text, training=training, return_qk=return_qk,
                            num_layers=self.separate_layers)

    def encode_pair(self, a, b, training=False, return_qk=False):
        """Both texts apart, in one encoder call when ``stack_texts``: `(out_a, out_b)`."""
        if not self.stack_texts:
            return (self.encode(a, training=training, return_qk=return_qk),
                    self.encode(b, training=training, return_qk=return_qk))
        out = self.encode(stack_packings(a, b), training=training, return_qk=return_qk)
        return split_outputs(out, tf.shape(a["input_word_ids"])[0],
                             tf.shape(a["input_word_ids"])[1], tf.shape(b["input_word_ids"])[1])

    def score(self, states_a, mask_a, states_b, mask_b, training=False):
        """Online part: cached states of both texts -> logits."""
        return self.head(states_a, mask_a, states_b, mask_b, training=training)

    def forward(self, features, training=False, return_qk=False):
        a, b = features["text_a"], features["text_b"]
        out_a, out_b = self.encode_pair(a, b, training=training, return_qk=return_qk)
        logits = self.score(out_a["sequence_output"], a["input_mask"],
                            out_b["sequence_output"], b["input_mask"], training=training)
        return {"logits": logits, "text_a": out_a, "text_b": out_b}

    def get_config(self):
        head = keras.saving.serialize_keras_object(self.head)
        head.pop("build_config", None)  # the head builds on its first call
        return dict(super().get_config(), head=head, stack_texts=self.stack_texts)
