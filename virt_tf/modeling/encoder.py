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

    def call(self, inputs, training=False, return_scores=False, return_qk=False):
        word_ids = inputs["input_word_ids"]
        mask = inputs["input_mask"]
        type_ids = inputs.get("input_type_ids")
        with tf.name_scope("bert_encoder"):
            x = self.embeddings(word_ids, type_ids, training=training)
            scores, queries, keys = [], [], []
            for layer in self.transformer_layers:
                out = layer(x, padding_mask=mask, training=training, return_qk=return_qk)
                x = out["output"]
                scores.append(out["scores"])
                if return_qk:
                    queries.append(out["query"])
                    keys.append(out["key"])
        result = {"sequence_output": x}
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
