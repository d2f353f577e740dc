"""`predict_probs`: one traced function a model, no retracing warning, the same bits again.

An evaluation runs after every epoch and once more at the end of a stage; each call used to
build a new `tf.function`, which TensorFlow traced again and, after a few calls, warned
about ("triggered tf.function retracing"). A model now keeps one function whose signature
leaves batch and length free, so its probabilities do not depend on what it evaluated
before.
"""
import logging

import keras
import numpy as np
import tensorflow as tf

from conftest import write_small_vocab
from virt_tf.data.pipeline import eval_dataset
from virt_tf.data.tasks import Example
from virt_tf.data.tokenization import BertPairPreprocessor
from virt_tf.evaluation import metrics
from virt_tf.modeling.encoder import EncoderConfig
from virt_tf.models import registry

WORDS = "the a cat dog sat on mat is not big small red blue runs fast slow house car".split()


def _sets():
    """Pair lists of different sizes and text lengths (batches of several shapes)."""
    rng = np.random.RandomState(0)

    def text(longest):
        return " ".join(rng.choice(WORDS, rng.randint(1, longest + 1)))

    return [[Example(text(n), text(n), 0) for _ in range(size)]
            for size, n in ((5, 3), (9, 8), (3, 20), (6, 12), (2, 2), (7, 25))]


def _tiny(model_name, seed=1):
    """A tiny random classifier (the same weights for the same seed)."""
    keras.utils.set_random_seed(seed)
    config = EncoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=24, max_position_embeddings=64,
                           initializer_range=0.2)
    return registry.build_now(registry.build_classifier(model_name, config, 2))


class _Records(logging.Handler):
    """Every record of a logger, kept."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_repeated_calls_trace_once_and_give_the_same_probabilities(tmp_path):
    prep = BertPairPreprocessor(write_small_vocab(tmp_path), True, 32)
    classifier = _tiny("virt")
    records = _Records()
    tf_logger = tf.get_logger()
    tf_logger.addHandler(records)
    try:
        first = [metrics.predict_probs(classifier, s, prep, batch_size=4) for s in _sets()]
        again = [metrics.predict_probs(classifier, s, prep, batch_size=4) for s in _sets()]
    finally:
        tf_logger.removeHandler(records)
    assert not [m for m in records.messages if "retracing" in m], records.messages
    spec = eval_dataset(_sets()[0], prep, 4)[0].element_spec[0]
    assert metrics._predictor(classifier, spec).experimental_get_tracing_count() == 1  # pylint: disable=protected-access
    for a, b, pairs in zip(first, again, _sets()):
        assert a.shape == (len(pairs), 2) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert np.ptp(np.concatenate(first)[:, 0]) > 1e-3  # the pairs get different probabilities

    # The same weights in a fresh model, whose first call is the last set: the same bits
    # as the model that evaluated five other sets before it.
    fresh = _tiny("virt")
    np.testing.assert_array_equal(metrics.predict_probs(fresh, _sets()[-1], prep, batch_size=4),
                                  first[-1])
