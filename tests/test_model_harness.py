"""One shared harness over the model registry (as keras-hub's shared task tests).

Every row of `virt_tf.models.registry.MODELS` gets these checks; a new model
gets them by adding its row. What a check asks of a model comes from the
capabilities the model declares (``offline``, ``separate_layers``,
``signatures``), never from its name.
"""
import numpy as np
import pytest
import tensorflow as tf
import keras

from virt_tf.config import load_config, model_names
from virt_tf.data.tokenization import BertPairPreprocessor
from virt_tf.losses import TaskLoss, VirtLoss, objective_from_config
from virt_tf.models import registry
from virt_tf.models.virt import VirtModel

ALL = sorted(registry.MODELS)
A = ["the cat sat on the mat", "a dog runs fast", "the red car is not big", "a tree is green",
     "the house is small", "a blue car runs slow"]
B = ["a cat sat", "the dog is slow", "a big red car", "the tree is not green",
     "a small house", "the car runs fast"]
Y = [0, 1, 0, 1, 0, 1]


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    from conftest import write_small_vocab
    return BertPairPreprocessor(write_small_vocab(tmp_path_factory.mktemp("vocab")),
                                max_seq_length=32)


@pytest.fixture(scope="module")
def batch(prep):
    return prep(tf.constant(A), tf.constant(B)), tf.constant(Y)


def _build(name, config, seed=0, **options):
    keras.utils.set_random_seed(seed)
    return registry.build_now(registry.build_classifier(name, config, 2, options))


def test_every_model_has_a_config_file_and_a_flag():
    """The train flag's choices, the config files and the registry rows are one list."""
    assert model_names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_builds_and_round_trips_config_weights_and_keras_file(name, tiny_config, batch, prep,
                                                              tmp_path):
    clf = _build(name, tiny_config, fusion="paper")
    logits = clf(batch[0], training=False).numpy()
    assert logits.shape == (len(Y), 2) and np.all(np.isfinite(logits))
    # config round trip: same class and options, weights copied -> same outputs
    twin = registry.build_now(type(clf).from_config(clf.get_config()))
    assert twin.get_config() == clf.get_config()
    twin.set_weights(clf.get_weights())
    np.testing.assert_allclose(twin(batch[0]).numpy(), logits, atol=1e-6)
    # model directory (weights + JSON config) and Keras file, loaded with safe_mode
    registry.save_classifier(str(tmp_path / "dir"), name, clf,
                             {"task": "rte", "labels": ["a", "b"], "lower_case": True,
                              "max_seq_length": 32}, prep.vocab_file)
    loaded, config = registry.load_classifier(str(tmp_path / "dir"))
    assert config["model"] == name and type(loaded) is type(clf)
    np.testing.assert_allclose(loaded(batch[0]).numpy(), logits, atol=1e-6)
    from_keras = registry.load_keras(str(tmp_path / "dir" / registry.KERAS_FILE))
    np.testing.assert_allclose(from_keras(batch[0]).numpy(), logits, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_overfits_a_tiny_batch_with_its_own_objective(name, tiny_config, batch):
    """Trained on the objective its config implies (DSE: task + logit distillation)."""
    features, labels = batch
    cfg = load_config("rte", name, overrides={"virt_alpha": None})
    terms = objective_from_config(cfg)
    teacher = _build("cross", tiny_config, seed=1) if any(t.needs_teacher for t in terms) \
        else None
    student = _build(name, tiny_config)
    model = VirtModel(student, teacher, terms=terms)
    # 3e-3: at 1e-2 Adam overfits the batch, then, with near-zero gradients, spikes
    # (seen for DiPair's post-LN head layer after 40 steps)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    first = float(model.compute_losses(features, labels, training=False)["task_loss"])
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(50), epochs=1, verbose=0)
    last = float(model.compute_losses(features, labels, training=False)["task_loss"])
    assert last < 0.5 * first, (first, last)
    pred = np.argmax(student(features, training=False).numpy(), axis=-1)
    assert np.mean(pred == Y) == 1.0


def _offline_models():
    return [n for n in ALL if registry.get_spec(n).cls.offline]


@pytest.mark.parametrize("name", _offline_models())
def test_cached_states_of_x_do_not_depend_on_y(name, tiny_config, prep):
    """The Siamese property, where the model declares an offline part: x's states (what a
    cache holds) are the same whatever y is, and scoring them equals the full model."""
    clf = _build(name, tiny_config)
    f1 = prep(tf.constant(A[:3]), tf.constant(B[:3]))
    f2 = prep(tf.constant(A[:3]), tf.constant(["house", "a very long other text that is not "
                                               "short at all and goes on", "w1 w2"]))
    np.testing.assert_array_equal(f1["text_a"]["input_word_ids"], f2["text_a"]["input_word_ids"])
    out1, out2 = clf.forward(f1), clf.forward(f2)
    alone = clf.encode(f1["text_a"])["sequence_output"].numpy()
    for out in (out1, out2):
        np.testing.assert_allclose(out["text_a"]["sequence_output"].numpy(), alone, atol=2e-6)
    # y matters online: the logits change with y
    assert not np.allclose(out1["logits"].numpy(), out2["logits"].numpy(), atol=1e-4)
    # score() on separately encoded states is the model's own output
    sa = clf.encode(f2["text_a"])["sequence_output"]
    sb = clf.encode(f2["text_b"])["sequence_output"]
    online = clf.score(sa, f2["text_a"]["input_mask"], sb, f2["text_b"]["input_mask"])
    np.testing.assert_allclose(online.numpy(), out2["logits"].numpy(), atol=2e-5)


def test_deformer_upper_layers_see_both_texts(tiny_config, prep):
    """DeFormer: y changes the joint layers' outputs over x's positions (not only a head)."""
    clf = _build("deformer", tiny_config)
    assert clf.separate_layers == tiny_config.num_hidden_layers - 1
    f1 = prep(tf.constant(A[:2]), tf.constant(B[:2]))
    f2 = prep(tf.constant(A[:2]), tf.constant(B[2:4]))
    x = clf.encode(f1["text_a"])["sequence_output"]
    mask_x = f1["text_a"]["input_mask"]
    joint = []
    for f in (f1, f2):
        y = clf.encode(f["text_b"])["sequence_output"]
        hidden = tf.concat([x, y[:, 1:]], axis=1)
        mask = tf.concat([mask_x, f["text_b"]["input_mask"][:, 1:]], axis=1)
        out = clf.encoder.run_layers(hidden, mask, clf.separate_layers)["sequence_output"]
        joint.append(out[:, :x.shape[1]].numpy())
    assert np.max(np.abs(joint[0] - joint[1])) > 1e-3


@pytest.mark.parametrize("name", [n for n in ALL if registry.get_spec(n).cls.offline])
def test_virt_gradient_reaches_the_query_key_of_every_separate_layer(name, tiny_config, batch):
    """alpha > 0 works for every model that encodes x and y apart; L_virt's gradient
    reaches Q/K of exactly the layers run apart (DeFormer's joint layers get none)."""
    features, labels = batch
    teacher = _build("cross", tiny_config, seed=1)
    student = _build(name, tiny_config)
    model = VirtModel(student, teacher, terms=[TaskLoss(), VirtLoss(weight=1.0)])
    with tf.GradientTape(persistent=True) as tape:
        losses = model.compute_losses(features, labels, training=False)
    assert float(losses["virt_loss"]) > 0
    layers = student.encoder.transformer_layers
    for i, layer in enumerate(layers):
        for var in (layer.attention.query_kernel, layer.attention.key_kernel):
            g = tape.gradient(losses["virt_loss"], var)
            if i < student.separate_layers:
                assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, (i, var.path)
            else:
                assert g is None or float(tf.reduce_max(tf.abs(g))) == 0, (i, var.path)
    assert all(g is None for g in tape.gradient(losses["loss"], teacher.weights))


@pytest.mark.parametrize("name", ALL)
def test_export_has_the_declared_signatures(name, tiny_config, tmp_path, vocab_file):
    from conftest import save_tiny_classifier
    from virt_tf.inference import exporting as export
    from virt_tf.inference.serving import ExportedModel

    clf = save_tiny_classifier(tmp_path / "model", name, vocab_file, 24)
    info = export.export(str(tmp_path / "model"), str(tmp_path / "serving"))
    assert tuple(sorted(info["signatures"])) == tuple(sorted(clf.signatures))
    loaded = ExportedModel(info["model_path"])
    assert sorted(loaded.signatures) == sorted(clf.signatures)
    assert loaded.dual == clf.offline
