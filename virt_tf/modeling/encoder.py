"""The BERT encoder network, written once and reused by every model."""
import dataclasses
import json

import keras
import tensorflow as tf

from virt_tf.modeling.layers.embeddings import BertEmbeddings
from virt_tf.modeling.layers.transformer import BertTransformerLayer


@dataclasses.dataclass
class EncoderConfig:
    """BERT dimensions. Field names follow the original `bert_config.json`."""
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        if "layer_norm_epsilon" in d:
            d["layer_norm_eps"] = d.pop("layer_norm_epsilon")
        act = d.get("hidden_act", "gelu")
        if act not in ("gelu", "gelu_python"):
            raise ValueError(f"unsupported hidden_act {act!r}: this encoder implements exact GELU")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self):
        return dataclasses.asdict(self)


@keras.saving.register_keras_serializable(package="virt_tf")
class BertEncoder(keras.layers.Layer):
    """BERT (post-LN, erf GELU) whose every layer can report its attention scores.

    Inputs: a dict with ``input_word_ids``, ``input_mask`` and optionally
    ``input_type_ids``, all int `[batch, seq]`.
    Returns a dict:
      ``sequence_output``: `[batch, seq, hidden]`, the last layer's states.
      ``scores`` (when ``return_scores``): list of L tensors `[batch, heads, seq, seq]`,
        the raw pre-softmax scores with mask bias (paper Eq. 3).
      ``queries``/``keys`` (when ``return_qk``): lists of L tensors
        `[batch, heads, seq, d_head]` (the `Q~`, `K~` of paper Eq. 5).
    ``num_layers=k`` stops after the first k layers (lists of k tensors);
    `run_layers` continues from any layer.
    The encoder knows no task head and takes ids, not text.
    """

    def __init__(self, config=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = EncoderConfig.from_dict(config)
        self.config = config or EncoderConfig()
        c = self.config
        self.embeddings = BertEmbeddings(
            c.vocab_size, c.hidden_size, c.max_position_embeddings, c.type_vocab_size,
            c.hidden_dropout_prob, c.initializer_range, c.layer_norm_eps, name="embeddings")
        self.transformer_layers = [
            BertTransformerLayer(c.num_attention_heads, c.intermediate_size,
                                 c.hidden_dropout_prob, c.attention_probs_dropout_prob,
                                 c.initializer_range, c.layer_norm_eps, name=f"layer_{i}")
            for i in range(c.num_hidden_layers)]

    @property
    def num_layers(self):
        return self.config.num_hidden_layers

    def build(self, input_shape=None):
        shape = (None, None)
        self.embeddings.build(shape)
        for layer in self.transformer_layers:
            layer.build((None, None, self.config.hidden_size))
        super().build(input_shape)

    def call(self, inputs, training=False, return_scores=False, return_qk=False,
             num_layers=None):
        """Embeddings, then transformer layers ``[0, num_layers)`` (default: all)."""
        word_ids = inputs["input_word_ids"]
        type_ids = inputs.get("input_type_ids")
        with tf.name_scope("bert_encoder"):
            x = self.embeddings(word_ids, type_ids, training=training)
            return self.run_layers(x, inputs["input_mask"], 0, num_layers, training=training,
                                   return_scores=return_scores, return_qk=return_qk)

    def run_layers(self, hidden, mask, start=0, stop=None, training=False,
                   return_scores=False, return_qk=False):
        """Transformer layers ``[start, stop)`` on ``hidden`` `[batch, seq, hidden]`.

        What a model that encodes its texts apart in the lower layers and jointly
        in the upper ones (DeFormer) needs; the same dict as `call`, with one
        entry in ``scores``/``queries``/``keys`` per layer run.
        """
        stop = self.num_layers if stop is None else stop
        if not 0 <= start <= stop <= self.num_layers:
            raise ValueError(f"layer range [{start}, {stop}) outside the encoder's "
                             f"{self.num_layers} layers")
        scores, queries, keys = [], [], []
        for layer in self.transformer_layers[start:stop]:
            out = layer(hidden, padding_mask=mask, training=training, return_qk=return_qk)
            hidden = out["output"]
            scores.append(out["scores"])
            if return_qk:
                queries.append(out["query"])
                keys.append(out["key"])
        result = {"sequence_output": hidden}
        if return_scores:
            result["scores"] = scores
        if return_qk:
            result["queries"] = queries
            result["keys"] = keys
        return result

    def get_config(self):
        config = super().get_config()
        config["config"] = self.config.to_dict()
        return config
