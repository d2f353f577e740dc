"""Teacher-labelled augmentation (`virt_tf.data.augment`): deterministic, from training
texts only, never a tune or evaluation text."""
import numpy as np
import pytest

from virt_tf.data.augment import (SOURCES, UNLABELLED, augment_counts, augment_pairs,
                                  check_disjoint, edit_text, words)
from virt_tf.data.tasks import Example


def _gold(n=40, seed=0):
    rng = np.random.RandomState(seed)
    vocab = [f"word{i}" for i in range(30)]
    out = []
    for i in range(n):
        a = " ".join(rng.choice(vocab, size=6)) + f" premise{i}"
        b = " ".join(rng.choice(vocab, size=4)) + f" hypothesis{i}"
        out.append(Example(a, b, int(rng.randint(3))))
    return out


GOLD = _gold()
POOL = _gold(25, seed=1)
POOL = [Example(e.text_a + " pool", e.text_b + " pool", e.label) for e in POOL]


@pytest.mark.parametrize("sources", [["pool"], ["random"], ["overlap"], ["edit"],
                                     list(SOURCES)])
def test_deterministic_for_a_seed_and_different_across_seeds(sources):
    one = augment_pairs(GOLD, sources, 1.5, seed=3, pool=POOL)
    again = augment_pairs(GOLD, sources, 1.5, seed=3, pool=POOL)
    assert one == again and len(one) > 0
    assert all(e.label == UNLABELLED for e in one)
    if sources != ["pool"] or len(POOL) > len(one):
        assert augment_pairs(GOLD, sources, 1.5, seed=4, pool=POOL) != one


def test_counts_pool_first_then_generators_evenly():
    out = augment_pairs(GOLD, list(SOURCES), 2.0, seed=0, pool=POOL)
    assert len(out) == 80
    pool_pairs = {(e.text_a, e.text_b) for e in POOL}
    assert sum((e.text_a, e.text_b) in pool_pairs for e in out) == len(POOL)   # all of it
    # the pool alone cannot give more than it holds
    assert len(augment_pairs(GOLD, ["pool"], 2.0, seed=0, pool=POOL)) == len(POOL)
    assert augment_counts(GOLD + out) == {"gold": 40, "augmented": 80}


def test_pool_labels_are_dropped_and_gold_pairs_left_out():
    pool = POOL + GOLD[:5]  # gold pairs in the pool are not extra pairs
    out = augment_pairs(GOLD, ["pool"], 1.0, seed=0, pool=pool)
    gold_pairs = {(e.text_a, e.text_b) for e in GOLD}
    assert not any((e.text_a, e.text_b) in gold_pairs for e in out)
    assert {e.label for e in out} == {UNLABELLED}


def test_generated_pairs_use_training_texts_only():
    firsts = {e.text_a for e in GOLD}
    seconds = {e.text_b for e in GOLD}
    gold_pairs = {(e.text_a, e.text_b) for e in GOLD}
    for source in ("random", "overlap"):
        out = augment_pairs(GOLD, [source], 1.0, seed=0)
        assert all(e.text_a in firsts and e.text_b in seconds for e in out)
        assert not any((e.text_a, e.text_b) in gold_pairs for e in out)  # re-paired
    out = augment_pairs(GOLD, ["edit"], 1.0, seed=0)
    assert all(e.text_a in firsts for e in out)
    assert sum(e.text_b not in seconds for e in out) > len(out) // 2  # edited


def test_no_tune_or_evaluation_text_ever_appears():
    """Texts shared with the tune/dev splits are never used, whatever the source."""
    forbidden = [GOLD[i].text_a for i in range(0, 40, 3)] + [GOLD[i].text_b for i in range(1, 40, 4)]
    forbidden += [POOL[0].text_a, POOL[3].text_b]
    fs = set(forbidden)
    out = augment_pairs(GOLD, list(SOURCES), 3.0, seed=5, pool=POOL, forbidden_texts=forbidden)
    assert out and not any(e.text_a in fs or e.text_b in fs for e in out)
    with pytest.raises(AssertionError, match="tune or evaluation"):
        check_disjoint([(GOLD[0].text_a, "x")], fs)


def test_overlap_picks_the_most_word_sharing_second_text():
    gold = [Example("red cat sat on mat", "a dog runs", 0),
            Example("blue car is fast", "the red cat sat", 1),
            Example("green tree grows", "the blue car", 2),
            Example("small house", "green tree grows tall", 0)]
    out = augment_pairs(gold, ["overlap"], 1.0, seed=0)
    got = {e.text_a: e.text_b for e in out}
    assert got["red cat sat on mat"] == "the red cat sat"
    assert got["blue car is fast"] == "the blue car"
    assert got["green tree grows"] == "green tree grows tall"
    assert words("The RED, cat!") == ["the", "red", "cat"]


def test_edit_is_one_deletion_or_one_swap():
    rng = np.random.RandomState(0)
    text = "one two three four five"
    for _ in range(50):
        edited = edit_text(text, rng).split()
        original = text.split()
        if len(edited) == len(original) - 1:
            assert any(original[:k] + original[k + 1:] == edited for k in range(5))
        else:
            assert sorted(edited) == sorted(original)
            assert sum(a != b for a, b in zip(edited, original)) == 2
    assert edit_text("single", rng) == "single"


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation sources"):
        augment_pairs(GOLD, ["paraphrase"], 1.0)
