"""The word-embedding table's training options (`virt_tf.training.optimization`): its gradient
is sparse, `LazyAdam` updates only the rows a batch reads (as dense Adam on rows read at every
step, untouched rows unchanged), and `freeze_word_embeddings` takes it out of training; both
options are the student's only and off by default (then the optimizer is Keras' Adam)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from virt_tf.models.registry import build_classifier, build_now
from virt_tf.models.virt import VirtModel
from virt_tf.options import RunOptions
from virt_tf.training.optimization import (LazyAdam, create_optimizer,
                                           freeze_word_embeddings)
from virt_tf.training.pipeline import teacher_options
from virt_tf.training.precision import precision_scope

# rows 1, 2 and 3 are read at every step (2 twice), row 7 at the first step only
STEP_IDS = [[1, 2, 2, 3, 7], [3, 2, 1, 2, 2], [2, 1, 3, 3, 1]]
ALWAYS, ONCE, NEVER = [1, 2, 3], 7, [0, 4, 5, 6, 8, 9]


def _train(optimizer, steps):
    """A `[10, 4]` table read by `tf.gather` (sparse gradient) and a dense `[4, 2]` kernel,
    trained ``steps`` steps; returns the variables, their values after each step and the
    table's gradient type."""
    table = keras.Variable(np.arange(40, dtype=np.float32).reshape(10, 4) / 40, name="table")
    kernel = keras.Variable(np.ones((4, 2), np.float32) / 3, name="kernel")
    optimizer.build([table, kernel])
    after, kinds = [], set()
    for ids in STEP_IDS[:steps]:
        with tf.GradientTape() as tape:
            states = tf.gather(table, tf.constant(ids))
            loss = tf.reduce_sum(tf.sin(tf.matmul(states, kernel)) * tf.range(1.0, 3.0))
        grads = tape.gradient(loss, [table, kernel])
        kinds.add(type(grads[0]).__name__)
        optimizer.apply_gradients(zip(grads, [table, kernel]))
        after.append((table.numpy().copy(), kernel.numpy().copy()))
    return optimizer, after, kinds


def test_lazy_adam_matches_dense_adam_on_rows_read_and_leaves_the_others():
    dense_opt, dense, kinds = _train(keras.optimizers.Adam(0.1), 3)
    lazy_opt, lazy, _ = _train(LazyAdam(0.1), 3)
    assert kinds == {"IndexedSlices"}
    for (d_table, d_kernel), (l_table, l_kernel) in zip(dense, lazy):
        # rows read at every step and the dense kernel: dense Adam's numbers
        np.testing.assert_allclose(l_table[ALWAYS], d_table[ALWAYS], rtol=1e-6, atol=0)
        np.testing.assert_array_equal(l_kernel, d_kernel)
    initial = np.arange(40, dtype=np.float32).reshape(10, 4) / 40
    # rows never read: unchanged, their moments zero, in both
    np.testing.assert_array_equal(lazy[-1][0][NEVER], initial[NEVER])
    np.testing.assert_array_equal(dense[-1][0][NEVER], initial[NEVER])
    index = lazy_opt._get_variable_index(lazy_opt._trainable_variables[0])  # pylint: disable=protected-access
    assert not np.any(lazy_opt._momentums[index].numpy()[NEVER])  # pylint: disable=protected-access
    # a row read once: moved at that step; then lazy keeps it, dense drifts on its momentum
    assert not np.array_equal(lazy[0][0][ONCE], initial[ONCE])
    np.testing.assert_array_equal(lazy[0][0][ONCE], dense[0][0][ONCE])
    np.testing.assert_array_equal(lazy[2][0][ONCE], lazy[0][0][ONCE])
    assert not np.allclose(dense[2][0][ONCE], dense[0][0][ONCE])
    assert dense_opt.iterations.numpy() == lazy_opt.iterations.numpy() == 3


def test_default_optimizer_is_keras_adam_and_the_options_are_off():
    assert type(create_optimizer(1e-3, 10)) is keras.optimizers.Adam  # pylint: disable=unidiomatic-typecheck
    assert type(create_optimizer(1e-3, 10, embedding_updates="lazy")) is LazyAdam  # pylint: disable=unidiomatic-typecheck
    fields = RunOptions.__dataclass_fields__
    assert fields["freeze_word_embeddings"].default is False
    assert fields["embedding_updates"].default == "dense"
    assert fields["embedding_updates"].metadata["choices"] == ("dense", "lazy")


def test_the_teacher_stage_trains_its_table_densely(tiny_config):
    del tiny_config
    options = RunOptions(learning_rate=1e-3, batch_size=4, warmup_ratio=0.1, adam_epsilon=1e-8,
                         adam_beta_1=0.9, adam_beta_2=0.999, max_seq_length=16, epochs=1,
                         dropout_rate=0.1, tune_fraction=0.1, virt_alpha=1.0, task="rte",
                         model="virt", freeze_word_embeddings=True, embedding_updates="lazy")
    teacher = teacher_options(options)
    assert (teacher.freeze_word_embeddings, teacher.embedding_updates) == (False, "dense")
    assert (options.freeze_word_embeddings, options.embedding_updates) == (True, "lazy")


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_word_embedding_gradient_is_sparse_and_freezing_removes_it(tiny_config, precision):
    """The table's gradient arrives as `tf.IndexedSlices` (also through bfloat16's cast);
    frozen, it has none, keeps its values through a training step, and the rest trains."""
    ids = tf.constant([[5, 6, 7, 8], [9, 10, 11, 12]])
    packing = {"input_word_ids": ids, "input_mask": tf.ones_like(ids),
               "input_type_ids": tf.zeros_like(ids)}
    features = {"text_a": packing, "text_b": packing}
    labels = tf.constant([0, 1])
    with precision_scope(precision):
        keras.utils.set_random_seed(0)
        student = build_now(build_classifier("siamese", tiny_config, 2, {}))
        table = student.encoder.embeddings.word_embeddings
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.cast(student(features, training=True), tf.float32) ** 2)
        grads = dict(zip([v.path for v in student.trainable_variables],
                         tape.gradient(loss, student.trainable_variables)))
        assert isinstance(grads[table.path], tf.IndexedSlices)
        count = len(student.trainable_variables)
        assert freeze_word_embeddings(student) == [table]
        assert len(student.trainable_variables) == count - 1
        assert table.path not in [v.path for v in student.trainable_variables]
        model = VirtModel(student)
        model.compile(optimizer=create_optimizer(1e-2, 10, warmup_ratio=0.0))
        before = {v.path: v.numpy().copy() for v in student.weights}
        model.train_on_batch(features, labels)
    np.testing.assert_array_equal(table.numpy(), before[table.path])
    moved = [v.path for v in student.trainable_variables
             if not np.array_equal(v.numpy(), before[v.path])]
    assert len(moved) > count // 2

