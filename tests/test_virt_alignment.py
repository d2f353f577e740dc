"""virt_tf.evaluation.alignment (tools/virt_alignment.py): per-layer L_virt of a student
against a teacher."""
import numpy as np

from virt_tf.data.pipeline import eval_dataset
from virt_tf.data.tasks import Example
from virt_tf.data.tokenization import BertPairPreprocessor
from virt_tf.evaluation.alignment import per_layer_virt_loss
from virt_tf.losses import virt_loss
from virt_tf.models import registry


def test_per_layer_losses_average_to_the_training_loss(tiny_config, small_vocab):
    import keras
    keras.utils.set_random_seed(3)
    teacher = registry.build_now(registry.build_classifier("cross", tiny_config, 2))
    student = registry.build_now(registry.build_classifier("virt", tiny_config, 2))
    examples = [Example("the cat sat on the mat", "a dog runs", 0),
                Example("the red car is fast", "the blue car is not fast", 1),
                Example("a big tree", "the green house is small .", 0)]
    prep = BertPairPreprocessor(small_vocab, True, 32)
    ds, _ = eval_dataset(examples, prep, batch_size=8)   # one batch: the means are comparable
    encode = lambda t: student.encode(t, return_qk=True)  # noqa: E731
    per_layer = per_layer_virt_loss(teacher, encode, ds, tiny_config.num_hidden_layers)
    assert len(per_layer) == 2 and all(v > 0 for v in per_layer)
    features, _ = next(iter(ds))
    sx, sy = encode(features["text_a"]), encode(features["text_b"])
    full = virt_loss(sx["queries"], sx["keys"], sy["queries"], sy["keys"],
                     teacher.forward(features, return_scores=True)["scores"],
                     features["text_a"]["input_mask"], features["text_b"]["input_mask"])
    np.testing.assert_allclose(np.mean(per_layer), float(full), rtol=1e-5)
    # a different student gives different numbers (the tool measures the student)
    other = registry.build_now(registry.build_classifier("virt", tiny_config, 2))
    moved = per_layer_virt_loss(teacher, lambda t: other.encode(t, return_qk=True), ds, 2)
    assert not np.allclose(moved, per_layer)
