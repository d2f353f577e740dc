"""Checkpoint import: tiny HF, TF1 and Model Garden checkpoints load back exactly."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from virt_tf.modeling import checkpoints as ck
from virt_tf.modeling.encoder import BertEncoder


def _random_canonical(config, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.1, s).astype(np.float32)
            for k, s in ck.canonical_names(config).items()}


def _bert_config(config):
    return {"vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "intermediate_size": config.intermediate_size, "hidden_act": "gelu",
            "max_position_embeddings": config.max_position_embeddings,
            "type_vocab_size": config.type_vocab_size}


def _write_dir(path, config, vocab_file, name):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "w") as f:
        json.dump(_bert_config(config), f)
    with open(vocab_file) as src, open(os.path.join(path, "vocab.txt"), "w") as dst:
        dst.write(src.read())


def _hf_names(canon):
    """Canonical -> Hugging Face BERT names (torch Linear weights are [out, in])."""
    out = {"embeddings.position_ids": np.arange(8, dtype=np.int64)[None]}
    for k, v in canon.items():
        if k.startswith("embeddings/"):
            rest = k.split("/", 1)[1]
            name = {"word_embeddings": "embeddings.word_embeddings.weight",
                    "position_embeddings": "embeddings.position_embeddings.weight",
                    "type_embeddings": "embeddings.token_type_embeddings.weight",
                    "layer_norm/gamma": "embeddings.LayerNorm.weight",
                    "layer_norm/beta": "embeddings.LayerNorm.bias"}[rest]
            out["bert." + name] = v
            continue
        layer, rest = k.split("/", 1)
        l = layer.split("_")[1]
        p = f"bert.encoder.layer.{l}."
        table = {"attention/query_kernel": ("attention.self.query.weight", True),
                 "attention/query_bias": ("attention.self.query.bias", False),
                 "attention/key_kernel": ("attention.self.key.weight", True),
                 "attention/key_bias": ("attention.self.key.bias", False),
                 "attention/value_kernel": ("attention.self.value.weight", True),
                 "attention/value_bias": ("attention.self.value.bias", False),
                 "attention/output_kernel": ("attention.output.dense.weight", True),
                 "attention/output_bias": ("attention.output.dense.bias", False),
                 "attention_layer_norm/gamma": ("attention.output.LayerNorm.weight", False),
                 "attention_layer_norm/beta": ("attention.output.LayerNorm.bias", False),
                 "intermediate/kernel": ("intermediate.dense.weight", True),
                 "intermediate/bias": ("intermediate.dense.bias", False),
                 "output/kernel": ("output.dense.weight", True),
                 "output/bias": ("output.dense.bias", False),
                 "output_layer_norm/gamma": ("output.LayerNorm.weight", False),
                 "output_layer_norm/beta": ("output.LayerNorm.bias", False)}
        name, transpose = table[rest]
        out[p + name] = np.ascontiguousarray(v.T) if transpose else v
    out["bert.pooler.dense.weight"] = np.zeros((config_h := canon["embeddings/layer_norm/gamma"].shape[0], config_h), np.float32)
    return out


def _tf1_names(canon):
    out = {}
    for k, v in canon.items():
        if k.startswith("embeddings/"):
            rest = k.split("/", 1)[1]
            name = {"word_embeddings": "word_embeddings", "position_embeddings":
                    "position_embeddings", "type_embeddings": "token_type_embeddings",
                    "layer_norm/gamma": "LayerNorm/gamma", "layer_norm/beta": "LayerNorm/beta"}[rest]
            out["bert/embeddings/" + name] = v
            continue
        layer, rest = k.split("/", 1)
        p = f"bert/encoder/{layer}/"
        table = {"attention/query_kernel": "attention/self/query/kernel",
                 "attention/query_bias": "attention/self/query/bias",
                 "attention/key_kernel": "attention/self/key/kernel",
                 "attention/key_bias": "attention/self/key/bias",
                 "attention/value_kernel": "attention/self/value/kernel",
                 "attention/value_bias": "attention/self/value/bias",
                 "attention/output_kernel": "attention/output/dense/kernel",
                 "attention/output_bias": "attention/output/dense/bias",
                 "attention_layer_norm/gamma": "attention/output/LayerNorm/gamma",
                 "attention_layer_norm/beta": "attention/output/LayerNorm/beta",
                 "intermediate/kernel": "intermediate/dense/kernel",
                 "intermediate/bias": "intermediate/dense/bias",
                 "output/kernel": "output/dense/kernel", "output/bias": "output/dense/bias",
                 "output_layer_norm/gamma": "output/LayerNorm/gamma",
                 "output_layer_norm/beta": "output/LayerNorm/beta"}
        out[p + table[rest]] = v
    h = canon["embeddings/layer_norm/gamma"].shape[0]
    out["bert/pooler/dense/kernel"] = np.zeros((h, h), np.float32)
    out["cls/predictions/output_bias"] = np.zeros((3,), np.float32)
    return out


def _save_tf1(prefix, named):
    with tf.Graph().as_default():
        for name, value in named.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
        tf.compat.v1.get_variable("global_step", initializer=tf.constant(7, tf.int64))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix)


def _assert_loaded(path, canon):
    enc, pre = ck.load_encoder(path)
    for name, var in ck.encoder_variables(enc).items():
        np.testing.assert_array_equal(var.numpy(), canon[name], err_msg=name)
    return pre


def test_hf_directory_roundtrip(tmp_path, tiny_config, small_vocab):
    from safetensors.numpy import save_file
    canon = _random_canonical(tiny_config)
    d = str(tmp_path / "hf")
    _write_dir(d, tiny_config, small_vocab, "config.json")
    save_file(_hf_names(canon), os.path.join(d, "model.safetensors"))
    pre = _assert_loaded(d, canon)
    assert pre.fmt == "hf" and pre.lower_case


def test_tf1_checkpoint_roundtrip(tmp_path, tiny_config, small_vocab):
    canon = _random_canonical(tiny_config, seed=1)
    d = str(tmp_path / "uncased_tiny")
    _write_dir(d, tiny_config, small_vocab, "bert_config.json")
    _save_tf1(os.path.join(d, "bert_model.ckpt"), _tf1_names(canon))
    pre = _assert_loaded(d, canon)
    assert pre.fmt == "tf1"
    # a checkpoint prefix works as well as its directory
    assert ck.read_pretrained(os.path.join(d, "bert_model.ckpt")).fmt == "tf1"


def test_model_garden_checkpoint_roundtrip(tmp_path, tiny_config, small_vocab):
    enc = ck.build_model_garden_encoder(tiny_config)
    rng = np.random.default_rng(2)
    for w in enc.weights:
        w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
    canon = ck.model_garden_weights_to_canonical(enc)
    d = str(tmp_path / "mg")
    _write_dir(d, tiny_config, small_vocab, "bert_config.json")
    tf.train.Checkpoint(encoder=enc).write(os.path.join(d, "bert_model.ckpt"))
    pre = _assert_loaded(d, canon)
    assert pre.fmt == "model_garden"


@pytest.mark.parametrize("model_name", ["cross", "virt"])
def test_trained_model_directory_starts_another_task(tmp_path, small_vocab, model_name):
    """A classifier directory of this package (e.g. an MNLI teacher) gives its encoder,
    not its head, as the starting point of another task."""
    from conftest import save_tiny_classifier
    d = tmp_path / model_name
    classifier = save_tiny_classifier(d, model_name, small_vocab, max_seq_length=32)
    from virt_tf.inference.matcher import read_init_checkpoint
    canon = {n: v.numpy() for n, v in ck.encoder_variables(classifier.encoder).items()}
    pre = read_init_checkpoint(str(d))
    assert sorted(pre.weights) == sorted(canon)
    for name, value in canon.items():
        np.testing.assert_array_equal(pre.weights[name], value, err_msg=name)
    assert pre.fmt == "virt_tf" and pre.lower_case
    assert pre.config.hidden_size == 16 and os.path.samefile(pre.vocab_file, d / "vocab.txt")
    # modeling/ knows no trained directories (they belong above the models): a clear pointer
    with pytest.raises(ck.CheckpointError, match="read_init_checkpoint"):
        ck.read_pretrained(str(d))
    os.remove(d / "model.weights.h5")
    with pytest.raises(ck.CheckpointError, match="model.weights.h5"):
        read_init_checkpoint(str(d))


def test_default_checkpoint_is_minilm():
    pre = ck.read_pretrained()
    assert pre.fmt == "hf" and pre.config.hidden_size == 384 and pre.config.num_hidden_layers == 6
    assert pre.lower_case


@pytest.mark.parametrize("fault", ["missing", "extra", "shape"])
def test_bad_variables_are_named(tmp_path, tiny_config, small_vocab, fault):
    canon = _random_canonical(tiny_config)
    named = _tf1_names(canon)
    target = "bert/encoder/layer_1/intermediate/dense/kernel"
    if fault == "missing":
        del named[target]
    elif fault == "extra":
        named["bert/encoder/layer_1/surprise/kernel"] = np.zeros((2,), np.float32)
    else:
        named[target] = np.zeros((3, 3), np.float32)
    d = str(tmp_path / "bad")
    _write_dir(d, tiny_config, small_vocab, "bert_config.json")
    _save_tf1(os.path.join(d, "bert_model.ckpt"), named)
    with pytest.raises(ck.CheckpointError) as err:
        ck.load_encoder(d)
    expected = {"missing": "layer_1/intermediate/kernel", "extra": "surprise",
                "shape": "layer_1/intermediate/kernel"}[fault]
    assert expected in str(err.value)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ck.CheckpointError):
        ck.read_pretrained(str(tmp_path))
    with pytest.raises(ck.CheckpointError):
        ck.read_pretrained(str(tmp_path / "nowhere"))


def test_assign_into_fresh_encoder_changes_output(tiny_config):
    """Assigning changes a built encoder's output, and the assigned weights alone determine it:
    two encoders with different random inits give the same output once loaded."""
    canon = _random_canonical(tiny_config, seed=5)
    a, b = BertEncoder(tiny_config), BertEncoder(tiny_config)
    ids = tf.constant([[2, 5, 6, 3], [2, 7, 3, 0]])
    inputs = {"input_word_ids": ids, "input_mask": tf.cast(ids > 0, tf.int32)}
    fresh_a = a(inputs)["sequence_output"].numpy()
    fresh_b = b(inputs)["sequence_output"].numpy()
    assert np.max(np.abs(fresh_a - fresh_b)) > 1e-2  # the two random inits differ
    ck.assign_weights(a, canon)
    loaded_a = a(inputs)["sequence_output"].numpy()
    assert np.max(np.abs(loaded_a - fresh_a)) > 1e-2  # the assignment reached the computation
    ck.assign_weights(b, canon)
    np.testing.assert_allclose(b(inputs)["sequence_output"].numpy(), loaded_a, rtol=0, atol=1e-6)
    # the output does depend on the assigned values, not only on which names were assigned
    other = dict(canon)
    last = f"layer_{tiny_config.num_hidden_layers - 1}/output_layer_norm/beta"  # the last op
    other[last] = canon[last] + 0.5
    ck.assign_weights(b, other)
    np.testing.assert_allclose(b(inputs)["sequence_output"].numpy(), loaded_a + 0.5, atol=1e-5)


def test_invalid_config_json_names_the_file(tmp_path, small_vocab):
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ck.CheckpointError, match="config.json"):
        ck.read_pretrained(str(tmp_path))
