"""Teacher-labelled augmentation (`virt_tf.data.augment`): deterministic, from training
texts only, never a tune or evaluation pair nor a text only those pairs hold."""
import numpy as np
import pytest

from virt_tf.data.augment import (RULES, SOURCES, UNLABELLED, LeakGuard, augment_counts,
                                  augment_pairs, check_disjoint, edit_text, words)
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


def _pairs(examples):
    return [(e.text_a, e.text_b) for e in examples]


# Hand-made: the gold pairs hold texts a1, a2, b1, b2; one evaluation pair re-pairs two
# gold texts (a1, b2), the other holds a gold text (a2) with an evaluation-only text (z).
HAND_GOLD = [Example("a1", "b1", 0), Example("a2", "b2", 1)]
HAND_HELD_OUT = [Example("a1", "b2", 1), Example("a2", "z only in eval", 0)]


@pytest.mark.parametrize("pair, rule", [
    (("a1", "b2"), "eval_pair"),           # both texts train, but it IS an evaluation pair
    (("b2", "a1"), "eval_pair"),           # the swapped pair is the same pair
    (("a1", "z only in eval"), "eval_only_text"),   # a text only the evaluation holds
    (("z only in eval", "b1"), "eval_only_text"),
    (("a2", "z only in eval"), "eval_pair"),        # breaks both: counted under the first
    (("a2", "b1"), None),                  # a2 is an evaluation text and a gold text: kept
    (("a1", "new text"), None),
])
def test_the_leak_guard_rules_on_hand_made_pairs(pair, rule):
    guard = LeakGuard.of(HAND_GOLD, HAND_HELD_OUT)
    assert guard.rule(pair) == rule
    kept, dropped = guard.split([pair])
    assert kept == ([pair] if rule is None else [])
    assert dropped == {r: int(r == rule) for r in RULES}


def test_pool_pairs_are_dropped_by_each_rule_and_counted():
    pool = [Example("a1", "b2", 2),            # rule a: an evaluation pair (texts both train)
            Example("a3", "z only in eval", 2),  # rule b: an evaluation-only text
            Example("a2", "b3", 0),            # a2 occurs in an evaluation pair: kept
            Example("a1", "b1", 0),            # a gold pair: not an extra pair
            Example("a4", "b4", 1)]
    counts = {}
    out = augment_pairs(HAND_GOLD, ["pool"], 5.0, seed=0, pool=pool, held_out=HAND_HELD_OUT,
                        counts=counts)
    assert _pairs(out) == [("a2", "b3"), ("a4", "b4")]
    assert counts == {"pool": {"candidates": 5, "eval_pair": 1, "eval_only_text": 1,
                               "gold_pair": 1, "used": 2}}


def test_a_generated_evaluation_pair_is_dropped():
    """``overlap`` pairs each first text with its best-sharing second text; when that pair
    is an evaluation pair (both texts train), rule a drops it and the others stay."""
    gold = [Example("red cat sat on mat", "a dog runs", 0),
            Example("blue car is fast", "the red cat sat", 1),
            Example("green tree grows", "the blue car", 2),
            Example("small house", "green tree grows tall", 0)]
    free = _pairs(augment_pairs(gold, ["overlap"], 1.0, seed=0))
    assert ("red cat sat on mat", "the red cat sat") in free
    counts = {}
    held_out = [Example("the red cat sat", "red cat sat on mat", 1)]   # swapped
    out = _pairs(augment_pairs(gold, ["overlap"], 1.0, seed=0, held_out=held_out,
                               counts=counts))
    assert out == [p for p in free if p != ("red cat sat on mat", "the red cat sat")]
    assert counts["overlap"] == {"candidates": 4, "eval_pair": 1, "eval_only_text": 0,
                                 "gold_pair": 0, "used": 3}


def test_no_extra_pair_breaks_a_rule_whatever_the_source():
    """Held-out pairs made of gold texts (re-paired, and a gold pair swapped) and of texts
    only they hold: every source keeps to both rules, keeps gold texts that a held-out pair
    shares, and counts what it dropped."""
    held_out = [Example(GOLD[i].text_a, f"eval only {i}", 2) for i in range(1, 40, 4)]
    held_out += [Example(POOL[0].text_a, POOL[3].text_b, 0)]
    # what the sources draw; some of it, swapped, becomes held-out pairs of gold texts
    free = augment_pairs(GOLD, list(SOURCES), 3.0, seed=5, pool=POOL, held_out=held_out)
    repaired = [e for e in free if e.text_b in {g.text_b for g in GOLD}]
    held_out += [Example(e.text_b, e.text_a, 0) for e in repaired[::7]]
    held_out += [Example(GOLD[5].text_b, GOLD[5].text_a, 1)]
    guard = LeakGuard.of(GOLD, held_out)
    assert guard.texts == {f"eval only {i}" for i in range(1, 40, 4)} | {POOL[0].text_a,
                                                                           POOL[3].text_b}
    counts = {}
    out = augment_pairs(GOLD, list(SOURCES), 3.0, seed=5, pool=POOL, held_out=held_out,
                        counts=counts)
    pairs = _pairs(out)
    check_disjoint(pairs, guard)
    held_pairs = {(e.text_a, e.text_b) for e in held_out}
    assert not any(p in held_pairs or p[::-1] in held_pairs for p in pairs)
    assert not any(t in guard.texts for p in pairs for t in p)
    shared = {e.text_a for e in held_out} & {e.text_a for e in GOLD}   # held-out, yet gold
    assert any(p[0] in shared for p in pairs)
    assert sum(c["used"] for c in counts.values()) == len(out)
    for source in ("random", "overlap", "edit"):
        c = counts[source]
        assert c["candidates"] == c["eval_pair"] + c["eval_only_text"] + c["used"]
    assert counts["random"]["eval_pair"] > 0 and counts["overlap"]["eval_pair"] > 0
    assert set(pairs) <= set(_pairs(free)) | set(_pairs(POOL))  # dropped, never replaced
    assert counts["pool"]["eval_only_text"] == 2
    # deterministic under the guard too
    assert augment_pairs(GOLD, list(SOURCES), 3.0, seed=5, pool=POOL, held_out=held_out) == out


def test_check_disjoint_asserts_both_rules():
    guard = LeakGuard.of(HAND_GOLD, HAND_HELD_OUT)
    check_disjoint([("a2", "b1"), ("a1", "b1")], guard)
    with pytest.raises(AssertionError, match="equal a tune or evaluation pair"):
        check_disjoint([("a2", "b1"), ("b2", "a1")], guard)
    with pytest.raises(AssertionError, match="hold a text only the tune or evaluation"):
        check_disjoint([("a1", "z only in eval")], guard)


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
