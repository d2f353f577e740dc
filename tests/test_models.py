"""VirtModel: gradient flow, the Siamese property, overfitting, save/load."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from virt_tf.data.tokenization import BertPairPreprocessor
from virt_tf.losses import LogitDistillationLoss, TaskLoss, VirtLoss
from virt_tf.models import registry
from virt_tf.models.virt import VirtModel

A = ["the cat sat on the mat", "a dog runs fast", "the red car is not big", "a tree is green",
     "the house is small", "a blue car runs slow"]
B = ["a cat sat", "the dog is slow", "a big red car", "the tree is not green",
     "a small house", "the car runs fast"]
Y = [0, 1, 0, 1, 0, 1]


@pytest.fixture()
def batch(small_vocab):
    prep = BertPairPreprocessor(small_vocab, max_seq_length=16)
    return prep(tf.constant(A), tf.constant(B)), tf.constant(Y)


def _models(tiny_config, head="adapted", alpha=1.0, seed=0):
    keras.utils.set_random_seed(seed)
    teacher = registry.build_now(registry.build_classifier("cross", tiny_config, 2))
    student = registry.build_now(registry.build_classifier("virt", tiny_config, 2,
                                                           {"virt_head": head}))
    return teacher, student, VirtModel(student, teacher,
                                       terms=[TaskLoss(), VirtLoss(weight=alpha)])


def test_virt_gradient_reaches_every_query_key_and_never_the_teacher(tiny_config, batch):
    teacher, student, model = _models(tiny_config)
    features, labels = batch
    with tf.GradientTape(persistent=True) as tape:
        losses = model.compute_losses(features, labels, training=False)
    assert float(losses["virt_loss"]) > 0
    for layer in student.encoder.transformer_layers:
        for var in (layer.attention.query_kernel, layer.attention.key_kernel):
            g = tape.gradient(losses["virt_loss"], var)
            assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, var.path
    # value/output weights of the last layer do not shape any map: no gradient from L_virt
    assert tape.gradient(losses["virt_loss"], student.encoder.transformer_layers[-1]
                         .attention.value_kernel) is None
    teacher_grads = tape.gradient(losses["loss"], teacher.weights)
    assert all(g is None for g in teacher_grads)
    assert not teacher.trainable_weights


def test_siamese_encoding_of_x_is_independent_of_y(tiny_config, small_vocab):
    _, student, _ = _models(tiny_config)
    prep = BertPairPreprocessor(small_vocab, max_seq_length=64)
    f1 = prep(tf.constant(A[:3]), tf.constant(B[:3]))
    f2 = prep(tf.constant(A[:3]), tf.constant(["house", "a very long other text that is not "
                                               "short at all and goes on", "w1 w2"]))
    out1 = student.forward(f1)
    out2 = student.forward(f2)
    np.testing.assert_array_equal(f1["text_a"]["input_word_ids"], f2["text_a"]["input_word_ids"])
    # training stacks x and y in one encoder call (padded to the longer one): the padding
    # is masked, so x's states are those of encoding x alone, whatever y is
    alone = student.encode(f1["text_a"])["sequence_output"].numpy()
    for out in (out1, out2):
        np.testing.assert_allclose(out["text_a"]["sequence_output"].numpy(), alone, atol=2e-6)
    assert not np.allclose(out1["logits"], out2["logits"])


def test_inference_graph_has_no_cross_attention_in_the_encoder(tiny_config, small_vocab):
    _, student, _ = _models(tiny_config)
    lx, ly = 7, 11
    spec = lambda n: {"input_word_ids": tf.TensorSpec([2, n], tf.int32),
                      "input_mask": tf.TensorSpec([2, n], tf.int32),
                      "input_type_ids": tf.TensorSpec([2, n], tf.int32)}
    fn = tf.function(lambda f: student(f, training=False)).get_concrete_function(
        {"pair": spec(lx + ly - 1), "text_a": spec(lx), "text_b": spec(ly)})
    encoder_ops = [op for op in fn.graph.get_operations() if "bert_encoder" in op.name
                   and op.type == "BatchMatMulV2"]
    assert encoder_ops, "the encoder's attention should be in the graph"
    for op in encoder_ops:
        shape = op.outputs[0].shape.as_list()
        if shape[-1] in (lx, ly) and shape[-2] in (lx, ly):
            assert shape[-1] == shape[-2], f"{op.name} mixes x and y: {shape}"
    # the pair input is never read at inference
    pair_inputs = [t for t in fn.inputs if "pair" in t.name]
    for t in pair_inputs:
        assert not t.consumers(), f"inference path reads {t.name}"


@pytest.mark.parametrize("head", ["adapted", "simple"])
def test_tiny_model_overfits_and_both_losses_fall(tiny_config, batch, head):
    teacher, student, model = _models(tiny_config, head=head, alpha=1.0)
    features, labels = batch
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    ds = tf.data.Dataset.from_tensors((features, labels)).repeat(60)
    first = model.compute_losses(features, labels, training=False)
    model.fit(ds, epochs=1, verbose=0)
    last = model.compute_losses(features, labels, training=False)
    assert float(last["task_loss"]) < 0.5 * float(first["task_loss"])
    assert float(last["virt_loss"]) < 0.8 * float(first["virt_loss"])
    acc = np.mean(np.argmax(model.predict(ds.take(1), verbose=0), -1) == Y)
    assert acc == 1.0
    # evaluation runs the student alone: its loss is the plain cross-entropy of the logits
    result = model.evaluate(ds.take(1), verbose=0, return_dict=True)
    assert set(result) == {"loss", "accuracy"}
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        labels, student(features, training=False))
    np.testing.assert_allclose(result["loss"], float(ce), rtol=1e-5)


def test_objective_decides_the_teacher_and_rejects_bad_weights(tiny_config, batch):
    student = registry.build_now(registry.build_classifier("siamese", tiny_config, 2))
    teacher = registry.build_now(registry.build_classifier("cross", tiny_config, 2))
    model = VirtModel(student, teacher)  # task loss only: the teacher is not kept
    assert model.teacher is None
    losses = model.compute_losses(*batch)
    assert set(losses) == {"loss", "task_loss", "logits"}
    np.testing.assert_allclose(float(losses["loss"]), float(losses["task_loss"]), rtol=1e-6)
    with pytest.raises(ValueError, match="needs a teacher"):
        VirtModel(student, terms=[TaskLoss(), VirtLoss(weight=1.0)])
    with pytest.raises(ValueError, match="needs a teacher"):
        VirtModel(student, terms=[TaskLoss(), LogitDistillationLoss(weight=0.5)])
    with pytest.raises(ValueError, match=">= 0"):
        VirtLoss(weight=-1.0)
    with pytest.raises(ValueError, match="no layer of x and y apart"):
        VirtModel(teacher, teacher, terms=[TaskLoss(), VirtLoss()])


def test_logit_distillation_runs_in_a_train_step(tiny_config, batch):
    """The beta term: its value is beta * KL(teacher || student) x T^2, and a train step on it
    alone moves the student's predictions towards the teacher's."""
    features, labels = batch
    keras.utils.set_random_seed(3)
    teacher = registry.build_now(registry.build_classifier("cross", tiny_config, 2))
    # a confident teacher, so that the student has something to move towards
    teacher.classifier.kernel.assign(teacher.classifier.kernel * 40.0)
    student = registry.build_now(registry.build_classifier("dse", tiny_config, 2))
    t, beta = 2.0, 0.5
    model = VirtModel(student, teacher, terms=[TaskLoss(weight=0.5),
                                               LogitDistillationLoss(t, weight=beta)])
    losses = model.compute_losses(features, labels, training=False)
    p_t = tf.nn.softmax(teacher(features) / t).numpy()
    log_p_s = tf.nn.log_softmax(student(features) / t).numpy()
    kl = np.mean(np.sum(p_t * (np.log(p_t) - log_p_s), axis=-1)) * t * t
    np.testing.assert_allclose(float(losses["distill_loss"]), kl, rtol=1e-4)
    np.testing.assert_allclose(float(losses["loss"]),
                               0.5 * float(losses["task_loss"]) + beta * kl, rtol=1e-4)
    only_kd = VirtModel(student, teacher, terms=[LogitDistillationLoss(t, weight=1.0)])
    only_kd.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = only_kd.fit(tf.data.Dataset.from_tensors((features, labels)).repeat(20),
                          epochs=1, verbose=0)
    assert "distill_loss" in history.history
    after = float(only_kd.compute_losses(features, labels, training=False)["distill_loss"])
    assert after < 0.5 * kl, (kl, after)


def test_save_and_load_roundtrip(tmp_path, tiny_config, batch, small_vocab):
    for name in ("cross", "siamese", "virt"):
        clf = registry.build_now(registry.build_classifier(name, tiny_config, 2))
        registry.save_classifier(str(tmp_path / name), name, clf,
                                 {"task": "rte", "labels": ["a", "b"], "lower_case": True,
                                  "max_seq_length": 16}, small_vocab)
        loaded, cfg = registry.load_classifier(str(tmp_path / name))
        assert cfg["model"] == name
        np.testing.assert_allclose(loaded(batch[0]), clf(batch[0]), atol=1e-6)


def test_plain_keras_load_restores_every_weight(tmp_path, tiny_config, batch):
    for name in ("cross", "virt"):
        clf = registry.build_now(registry.build_classifier(name, tiny_config, 2))
        path = str(tmp_path / f"{name}.keras")
        clf.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
        np.testing.assert_allclose(loaded(batch[0]), clf(batch[0]), atol=1e-6)


def test_virt_head_option_selects_the_ablation(tiny_config):
    """--virt_head=simple must reach the VIRT model (w/o VIRT-A); Siamese is always simple."""
    from virt_tf.models import registry
    from virt_tf.heads import PooledFusionHead, VirtAdaptedHead
    ablation = registry.build_classifier("virt", tiny_config, 2, {"virt_head": "simple"})
    assert type(ablation.head) is PooledFusionHead
    assert type(registry.build_classifier("virt", tiny_config, 2, {}).head) is VirtAdaptedHead
    assert type(registry.build_classifier("virt", tiny_config, 2,
                                          {"virt_head": "adapted"}).head) is VirtAdaptedHead
    assert type(registry.build_classifier("siamese", tiny_config, 2,
                                          {"virt_head": "adapted"}).head) is PooledFusionHead


def test_models_trained_differently_share_one_online_part(tiny_config, batch):
    """DSE is the Siamese model (same classifier and head): one online-cost measurement;
    every other model is its own."""
    from virt_tf.models import registry
    from virt_tf.reproduction import grid as grid_lib, report
    assert registry.same_online_part("dse") == "siamese"
    others = [n for n in registry.MODELS if n != "dse"]
    assert [registry.same_online_part(n) for n in others] == others
    dse = registry.build_now(registry.build_classifier("dse", tiny_config, 2))
    siamese = registry.build_now(registry.build_classifier("siamese", tiny_config, 2))
    assert type(dse) is type(siamese) and type(dse.head) is type(siamese.head)
    assert dse.count_params() == siamese.count_params()
    grid = grid_lib.load_grid(profile="sample")
    assert report.online_variant(grid, "dse")[0] == report.online_variant(grid, "siamese")[0]
    assert report.online_variant(grid, "virt")[0] != report.online_variant(grid, "siamese")[0]
