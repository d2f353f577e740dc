"""Layers: shapes, masking, get_config round trips."""
import numpy as np
import pytest
import tensorflow as tf

from virt_tf.modeling.layers import (BertEmbeddings, BertTransformerLayer, FusionClassifier,
                                     MaskedMeanPooling, ScoresMultiHeadAttention,
                                     VirtAdaptedInteraction)
from virt_tf.modeling.layers.fusion import fusion_features


def _roundtrip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    return clone


def test_attention_scores_shape_mask_and_qk():
    layer = ScoresMultiHeadAttention(num_heads=2, head_size=4, dropout_rate=0.0)
    x = tf.random.normal((3, 5, 8))
    mask = tf.constant([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    out = layer(x, padding_mask=mask, return_qk=True)
    assert out["output"].shape == (3, 5, 8)
    assert out["scores"].shape == (3, 2, 5, 5)
    assert out["query"].shape == (3, 2, 5, 4)
    # raw scores are Q K^T / sqrt(d) plus the mask bias
    expected = tf.matmul(out["query"], out["key"], transpose_b=True) / 2.0
    valid = tf.cast(mask, tf.bool)[:, None, None, :]
    np.testing.assert_allclose(tf.boolean_mask(out["scores"], tf.broadcast_to(valid, out["scores"].shape)),
                               tf.boolean_mask(expected, tf.broadcast_to(valid, expected.shape)),
                               atol=1e-5)
    probs = tf.nn.softmax(out["scores"], -1).numpy()
    assert np.all(probs[0, :, :, 3:] == 0.0)
    _roundtrip(layer)


def test_attention_output_ignores_padded_keys():
    layer = ScoresMultiHeadAttention(num_heads=2, head_size=4, dropout_rate=0.0)
    x = tf.random.normal((1, 6, 8))
    mask = tf.constant([[1, 1, 1, 1, 0, 0]])
    a = layer(x, padding_mask=mask)["output"][:, :4]
    x2 = tf.concat([x[:, :4], 100 * tf.random.normal((1, 2, 8))], axis=1)
    b = layer(x2, padding_mask=mask)["output"][:, :4]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_embeddings_and_transformer_shapes():
    emb = BertEmbeddings(vocab_size=30, hidden_size=8, max_position_embeddings=16)
    h = emb(tf.constant([[1, 2, 3]]), tf.constant([[0, 0, 1]]))
    assert h.shape == (1, 3, 8)
    _roundtrip(emb)
    block = BertTransformerLayer(num_heads=2, intermediate_size=12)
    out = block(h, padding_mask=tf.ones((1, 3), tf.int32))
    assert out["output"].shape == (1, 3, 8) and out["scores"].shape == (1, 2, 3, 3)
    _roundtrip(block)


def test_masked_mean_pooling():
    states = tf.constant([[[1.0], [3.0], [100.0]]])
    mask = tf.constant([[1, 1, 0]])
    assert float(MaskedMeanPooling()(states, mask)[0, 0]) == pytest.approx(2.0)
    assert float(MaskedMeanPooling(include_padding=True)(states, mask)[0, 0]) == pytest.approx(4 / 3)


def test_virt_adapted_interaction_eq8():
    hx = tf.random.normal((2, 4, 6))
    hy = tf.random.normal((2, 5, 6))
    mx = tf.constant([[1, 1, 1, 0], [1, 1, 1, 1]])
    my = tf.constant([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    layer = VirtAdaptedInteraction()
    u, v = layer(hx, mx, hy, my)
    assert u.shape == (2, 6) and v.shape == (2, 6)
    # reference for example 0 in numpy
    x, y = hx[0, :3].numpy(), hy[0, :2].numpy()
    att = x @ y.T / np.sqrt(6)
    att = np.exp(att - att.max(1, keepdims=True))
    att /= att.sum(1, keepdims=True)
    np.testing.assert_allclose(u[0], (att @ y).mean(0), atol=1e-5)
    # padded positions never matter
    hx2 = tf.concat([hx[:, :3], 50 + hx[:, 3:]], axis=1)
    u2, _ = layer(hx2, mx, hy, my)
    np.testing.assert_allclose(u2[0], u[0], atol=1e-5)
    _roundtrip(layer)


def test_fusion_forms_and_classifier():
    u = tf.constant([[1.0, -2.0]])
    v = tf.constant([[3.0, -1.0]])
    np.testing.assert_allclose(fusion_features(u, v, "paper"), [[1, -2, 3, -1, -2, -1, 3, -1]])
    np.testing.assert_allclose(fusion_features(u, v, "code"), [[1, -2, 3, -1, 2, 1, 9, 1]])
    with pytest.raises(ValueError):
        fusion_features(u, v, "bogus")
    head = FusionClassifier(num_labels=3)
    assert head(u, v).shape == (1, 3)
    _roundtrip(head)
