"""Teacher logits computed once a stage (`virt_tf.data.teacher_logits`) equal the live
teacher's, are reused on a resume, and make the same training step."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from virt_tf.data.pipeline import TokenizedPairs, batch_plan, plan_stream
from virt_tf.data.tasks import Example
from virt_tf.data.teacher_logits import cached_teacher_logits, teacher_logits
from virt_tf.data.tokenization import BertPairPreprocessor
from virt_tf.losses import LogitDistillationLoss, TaskLoss, VirtLoss
from virt_tf.models import registry
from virt_tf.models.virt import VirtModel
from virt_tf.rundir import TEACHER_LOGITS_FILE

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "is", "not", "big", "small", "red", "blue",
         "runs", "fast", "slow", "house", "car", "tree", "green"]


def _examples(n=22, seed=0):
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        a = " ".join(rng.choice(WORDS, size=rng.randint(2, 9)))
        b = " ".join(rng.choice(WORDS, size=rng.randint(1, 6)))
        out.append(Example(a, b, int(rng.randint(-1, 3))))   # some without a gold label
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import write_small_vocab
    from virt_tf.modeling.encoder import EncoderConfig

    folder = tmp_path_factory.mktemp("teacher_logits")
    prep = BertPairPreprocessor(write_small_vocab(folder), True, 24)
    keras.utils.set_random_seed(7)
    config = EncoderConfig(vocab_size=120, hidden_size=16, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=24,
                           max_position_embeddings=64, initializer_range=0.2)
    teacher = registry.build_now(registry.build_classifier("cross", config, 3))
    student = registry.build_now(registry.build_classifier("siamese", config, 3))
    examples = _examples()
    pairs = TokenizedPairs.from_examples(examples, prep)
    return {"folder": folder, "prep": prep, "teacher": teacher, "student": student,
            "examples": examples, "pairs": pairs}


def test_cached_logits_equal_the_live_teacher_on_training_batches(setup):
    """Scored in other batches (other padding), every pair's logits equal what the teacher
    gives it inside each training batch, to 1e-5."""
    pairs, prep, teacher = setup["pairs"], setup["prep"], setup["teacher"]
    cached = teacher_logits(teacher, pairs, prep, batch_size=5)
    assert cached.shape == (len(pairs), 3) and cached.dtype == np.float32
    plan = batch_plan(pairs.lengths, 4, 1, seed=0, bucket=False)
    pairs.teacher_logits = cached
    try:
        seen = 0
        for (features, _), rows in zip(plan_stream(pairs, prep, plan), plan):
            live = teacher(features, training=False).numpy()
            np.testing.assert_allclose(features["teacher_logits"].numpy(), cached[rows])
            np.testing.assert_allclose(live, cached[rows], atol=1e-5, rtol=0)
            seen += len(rows)
    finally:
        pairs.teacher_logits = None
    assert seen == 4 * (len(pairs) // 4)
    # the logits differ across pairs by far more than the tolerance (the check can fail)
    assert float(np.max(np.abs(cached[0] - cached[1:]))) > 1e-2


def test_a_resume_reuses_the_file_and_other_data_recomputes(setup):
    pairs, prep, teacher = setup["pairs"], setup["prep"], setup["teacher"]
    folder = str(setup["folder"] / "stage")
    key = {"train_data": "abc", "teacher": "t1", "max_seq_length": 24}
    first, reused = cached_teacher_logits(folder, teacher, pairs, prep, key)
    assert not reused and os.path.exists(os.path.join(folder, TEACHER_LOGITS_FILE))
    # a resume: the file is read, not recomputed (a teacher that would fail is never run)
    class Exploding:
        num_labels = 3

        def __call__(self, *args, **kwargs):
            raise AssertionError("the teacher ran although its logits were stored")

    again, reused = cached_teacher_logits(folder, Exploding(), pairs, prep, key)
    assert reused and np.array_equal(first, again)
    # another data fingerprint (or teacher, or length) is recomputed and overwrites the file
    other, reused = cached_teacher_logits(folder, teacher, pairs, prep, dict(key, teacher="t2"))
    assert not reused and np.allclose(other, first, atol=1e-5)
    with np.load(os.path.join(folder, TEACHER_LOGITS_FILE)) as saved:
        assert str(saved["key_teacher"]) == "t2"


def test_a_step_on_cached_logits_equals_one_with_the_live_teacher(setup):
    """Same loss and terms with the logits read from the batch; the teacher is not run then.
    A term that needs the teacher's attention scores still runs it."""
    pairs, prep, teacher, student = (setup[k] for k in ("pairs", "prep", "teacher", "student"))
    pairs.teacher_logits = teacher_logits(teacher, pairs, prep)
    try:
        features, labels = next(iter(plan_stream(pairs, prep, np.arange(8)[None, :])))
    finally:
        pairs.teacher_logits = None
    terms = [TaskLoss(0.5), LogitDistillationLoss(2.0, weight=0.5)]
    model = VirtModel(student, teacher, terms=terms)
    live_features = {k: v for k, v in features.items() if k != "teacher_logits"}
    live = model.compute_losses(live_features, labels, training=False)
    cached = model.compute_losses(features, labels, training=False)
    for name in ("loss", "task_loss", "distill_loss"):
        assert float(cached[name]) == pytest.approx(float(live[name]), abs=1e-5)
    assert float(live["distill_loss"]) > 1e-3

    calls = []
    original = teacher.forward
    teacher.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        model.compute_losses(features, labels, training=False)
        assert not calls
        with_virt = VirtModel(student, teacher, terms=terms + [VirtLoss(weight=1.0)])
        with_virt.compute_losses(features, labels, training=False)
        assert calls
    finally:
        del teacher.forward


def test_linear_schedule_decays_the_weight_to_zero(setup):
    student, teacher = setup["student"], setup["teacher"]
    term = VirtLoss(weight=2.0, schedule="linear")
    with pytest.raises(ValueError, match="total_steps"):
        VirtModel(student, teacher, terms=[TaskLoss(), term])
    model = VirtModel(student, teacher, terms=[TaskLoss(), term], total_steps=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(student.trainable_variables)
    for step, want in ((0, 2.0), (5, 1.0), (10, 0.0), (12, 0.0)):
        model.optimizer.iterations.assign(step)
        assert float(model._weight(term)) == pytest.approx(want)
    assert float(model._weight(TaskLoss(0.3))) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="schedule"):
        VirtLoss(schedule="cosine")
    tf.debugging.assert_equal(model.optimizer.iterations, tf.constant(12, tf.int64))
