"""Encoder parity with TF Model Garden's BertEncoder and its score outputs."""
import numpy as np
import tensorflow as tf

from virt_tf.modeling.checkpoints import (assign_weights, build_model_garden_encoder,
                                          model_garden_weights_to_canonical)
from virt_tf.modeling.encoder import BertEncoder


def _inputs():
    ids = tf.constant([[2, 17, 33, 8, 3, 55, 3, 0, 0], [2, 9, 3, 41, 42, 43, 44, 45, 3]])
    mask = tf.cast(ids > 0, tf.int32)
    types = tf.constant([[0, 0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1, 1, 1]])
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


def test_matches_model_garden_bert_encoder(tiny_config):
    tfm_encoder = build_model_garden_encoder(tiny_config)
    # Give every weight a non-trivial value (LayerNorm defaults would hide bugs).
    rng = np.random.default_rng(0)
    for w in tfm_encoder.weights:
        w.assign(rng.normal(0, 0.2, w.shape).astype(np.float32))
    ours = BertEncoder(tiny_config)
    assign_weights(ours, model_garden_weights_to_canonical(tfm_encoder))
    inputs = _inputs()
    ref = tfm_encoder(inputs, training=False)
    out = ours(inputs, return_scores=True)
    mask = inputs["input_mask"].numpy().astype(bool)
    diff = np.abs(out["sequence_output"].numpy() - ref["sequence_output"].numpy())[mask]
    assert diff.max() < 1e-4
    assert len(out["scores"]) == tiny_config.num_hidden_layers
    for ours_s, ref_p in zip(out["scores"], ref["attention_scores"]):
        probs = tf.nn.softmax(ours_s, axis=-1).numpy()
        np.testing.assert_allclose(probs, ref_p.numpy(), atol=1e-5)


def test_returns_per_layer_qk(tiny_config):
    enc = BertEncoder(tiny_config)
    out = enc(_inputs(), return_scores=True, return_qk=True)
    heads = tiny_config.num_attention_heads
    d = tiny_config.hidden_size // heads
    assert len(out["queries"]) == len(out["keys"]) == tiny_config.num_hidden_layers
    for q, k, s in zip(out["queries"], out["keys"], out["scores"]):
        assert q.shape == (2, heads, 9, d) and s.shape == (2, heads, 9, 9)
        raw = tf.matmul(q, k, transpose_b=True) / np.sqrt(d)
        np.testing.assert_allclose(raw[1].numpy(), s[1].numpy(), atol=1e-5)  # no padding in row 1


def test_encoder_get_config_roundtrip(tiny_config):
    enc = BertEncoder(tiny_config)
    clone = BertEncoder.from_config(enc.get_config())
    assert clone.config == enc.config
