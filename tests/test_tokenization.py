"""tensorflow-text preprocessing: pair packing, truncation, token alignment."""
import numpy as np
import pytest
import tensorflow as tf

from virt_tf.data.tokenization import BertPairPreprocessor


@pytest.fixture(scope="module")
def prep_factory(vocab_file):
    return lambda n: BertPairPreprocessor(vocab_file, lower_case=True, max_seq_length=n)


def _content(packing, i):
    ids = packing["input_word_ids"][i].numpy()
    mask = packing["input_mask"][i].numpy().astype(bool)
    return ids[mask][1:-1]  # without [CLS] and the final [SEP]


@pytest.mark.parametrize("max_len", [128, 16, 9])
def test_pair_contains_exactly_the_single_pieces(prep_factory, max_len):
    prep = prep_factory(max_len)
    a = tf.constant(["The quick brown fox jumps over the lazy dog near the riverbank.",
                     "Short one.", "", "Unaffordable housing, unbelievably!"])
    b = tf.constant(["A dog sleeps.", "A considerably longer hypothesis that goes on and on "
                     "for a while to force truncation of the second text", "Only b.", "  "])
    out = prep(a, b)
    for i in range(4):
        x, y = _content(out["text_a"], i), _content(out["text_b"], i)
        pair_ids = out["pair"]["input_word_ids"][i].numpy()
        pair_mask = out["pair"]["input_mask"][i].numpy().astype(bool)
        types = out["pair"]["input_type_ids"][i].numpy()[pair_mask]
        ids = pair_ids[pair_mask]
        m, n = len(x), len(y)
        assert ids[0] == prep.cls_id and ids[m + 1] == prep.sep_id and ids[-1] == prep.sep_id
        np.testing.assert_array_equal(ids[1:1 + m], x)
        np.testing.assert_array_equal(ids[m + 2:m + 2 + n], y)
        assert len(ids) == m + n + 3 <= max_len
        assert (types[:m + 2] == 0).all() and (types[m + 2:] == 1).all()


def test_truncation_is_longest_first(prep_factory):
    prep = prep_factory(12)  # 9 content pieces
    out = prep(tf.constant(["one two three four five six seven eight nine ten"]),
               tf.constant(["yes no"]))
    assert len(_content(out["text_a"], 0)) == 7 and len(_content(out["text_b"], 0)) == 2


def test_single_and_padding_to_batch_longest(prep_factory):
    prep = prep_factory(128)
    out = prep.single(tf.constant(["hello world", "hello"]))
    assert out["input_word_ids"].shape == (2, 4)
    np.testing.assert_array_equal(out["input_mask"].numpy(), [[1, 1, 1, 1], [1, 1, 1, 0]])


def test_count_truncated(prep_factory):
    prep = prep_factory(8)
    n = prep.count_truncated(tf.constant(["a b c d e f", "a"]), tf.constant(["g", "b"]))
    assert n == 1


def test_rejects_tiny_budget(vocab_file):
    with pytest.raises(ValueError):
        BertPairPreprocessor(vocab_file, max_seq_length=3)
