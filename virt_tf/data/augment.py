"""Teacher-labelled augmentation: extra training pairs made from the training texts alone.

The idea of AugSBERT: a cross-encoder labels pairs a bi-encoder would never see with a
gold label, and the bi-encoder learns from its soft labels. Here the extra pairs carry
the label ``-1`` (no gold label): the task loss skips them and the teacher's outputs
(logit distillation, L_virt) are their only signal.

Sources (each deterministic for a seed):

* ``pool``: training pairs that are not among the gold pairs of the run (with
  ``--max_train_examples``, the pairs past the first N); their gold labels are dropped;
* ``random``: each first text of the gold pairs with the second text of another
  pair, drawn at random;
* ``overlap``: each first text with the other pair's second text that shares the most
  words with it (cosine of binary bags of words; its own pairs excluded);
* ``edit``: a gold pair's second text with one light edit (a word deleted, or two
  neighbouring words swapped).

No pair may contain a text of the tune or evaluation splits: pass them as
``forbidden_texts`` and every generated pair is checked (`check_disjoint`).
"""
import re

import numpy as np
from scipy import sparse

from virt_tf.data.tasks import Example

SOURCES = ("pool", "random", "overlap", "edit")
UNLABELLED = -1
_WORD = re.compile(r"\w+", re.UNICODE)


def words(text):
    """Lower-cased word tokens of ``text`` (for overlap)."""
    return _WORD.findall(text.lower())


def _share(total, sources, pool_size):
    """How many pairs each source gives: ``pool`` first (up to its size), the rest split
    evenly over the generating sources in the order given."""
    counts = {}
    left = total
    if "pool" in sources:
        counts["pool"] = min(pool_size, left)
        left -= counts["pool"]
    generators = [s for s in sources if s != "pool"]
    for i, s in enumerate(generators):
        counts[s] = left // len(generators) + (1 if i < left % len(generators) else 0)
    if not generators and left > 0:
        counts["pool"] = counts.get("pool", 0)  # the pool is all there is
    return counts


def _random_pairs(gold, count, rng):
    n = len(gold)
    firsts = rng.randint(0, n, size=count)
    shift = rng.randint(1, max(n, 2), size=count)   # another pair, never the same one
    seconds = (firsts + shift) % n
    return [(gold[i].text_a, gold[j].text_b) for i, j in zip(firsts, seconds)]


def _bag_matrix(texts, vocab):
    """Rows of 0/1 word indicators, L2-normalised: sparse `[len(texts), len(vocab)]`."""
    rows, cols, vals = [], [], []
    for i, t in enumerate(texts):
        ids = sorted({vocab[w] for w in words(t) if w in vocab})
        rows.extend([i] * len(ids))
        cols.extend(ids)
        vals.extend([1.0 / np.sqrt(len(ids))] * len(ids))
    return sparse.csr_matrix((np.array(vals, np.float32), (rows, cols)),
                             shape=(len(texts), len(vocab)))


def _overlap_pairs(gold, count, rng, chunk=512):
    """Each chosen first text with the most word-overlapping second text of the gold pairs
    whose first text differs from it (so never one of its own pairs)."""
    firsts = rng.permutation(len(gold))[:count]
    if count > len(gold):  # more than one pass: repeat the order
        reps = int(np.ceil(count / len(gold)))
        firsts = np.concatenate([rng.permutation(len(gold)) for _ in range(reps)])[:count]
    vocab = {}
    for e in gold:
        for w in set(words(e.text_a)) | set(words(e.text_b)):
            vocab.setdefault(w, len(vocab))
    seconds_texts = [e.text_b for e in gold]
    b = _bag_matrix(seconds_texts, vocab)                     # [n, V]
    a_texts = np.array([e.text_a for e in gold], dtype=object)
    out = []
    seen = {}
    for start in range(0, len(firsts), chunk):
        idx = firsts[start:start + chunk]
        a = _bag_matrix([gold[i].text_a for i in idx], vocab)  # [c, V]
        sim = (a @ b.T).toarray()                              # [c, n]
        same = a_texts[None, :] == a_texts[idx][:, None]       # its own pairs
        sim[same] = -1.0
        # repeated first texts take the next-best second text each time
        order = np.argsort(-sim, axis=1, kind="stable")
        for row, i in enumerate(idx):
            k = seen.get(i, 0)
            seen[i] = k + 1
            j = order[row, min(k, order.shape[1] - 1)]
            out.append((gold[i].text_a, seconds_texts[j]))
    return out


def edit_text(text, rng):
    """One light edit of ``text``: a word deleted, or two neighbouring words swapped.
    A text of fewer than two words is returned unchanged."""
    tokens = text.split()
    if len(tokens) < 2:
        return text
    if rng.rand() < 0.5:
        k = rng.randint(len(tokens))
        tokens = tokens[:k] + tokens[k + 1:]
    else:
        k = rng.randint(len(tokens) - 1)
        tokens[k], tokens[k + 1] = tokens[k + 1], tokens[k]
    return " ".join(tokens)


def _edit_pairs(gold, count, rng):
    picks = rng.randint(0, len(gold), size=count)
    return [(gold[i].text_a, edit_text(gold[i].text_b, rng)) for i in picks]


def check_disjoint(pairs, forbidden_texts):
    """Raise `AssertionError` if any pair holds a text of ``forbidden_texts``."""
    forbidden = set(forbidden_texts)
    bad = [p for p in pairs if p[0] in forbidden or p[1] in forbidden]
    assert not bad, f"{len(bad)} augmented pairs hold tune or evaluation texts, e.g. {bad[0]}"


def augment_pairs(gold, sources, multiple=1.0, seed=0, pool=(), forbidden_texts=()):
    """Extra teacher-labelled pairs: `Example`s with label ``-1``.

    Args:
      gold: the run's gold training `Example`s (their texts are re-paired and edited).
      sources: names of `SOURCES` to draw from.
      multiple: extra pairs per gold pair (``round(multiple * len(gold))`` in all).
      seed: the draws' seed (same seed, same pairs, same order).
      pool: other training `Example`s (source ``pool``; their labels are dropped).
      forbidden_texts: texts of the tune and evaluation splits. Pool pairs holding one
        are left out, generated pairs holding one are dropped, and the result is
        checked to hold none.
    Returns: a list of `Example(text_a, text_b, -1)`, sources in the order of `SOURCES`;
      shorter than asked when the pool runs out and no generating source is given,
      or when drawn pairs were dropped.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown augmentation sources {unknown}; known: {SOURCES}")
    if not gold:
        return []
    forbidden = set(forbidden_texts)
    gold_pairs = {(e.text_a, e.text_b) for e in gold}
    pool = [e for e in pool if e.text_a not in forbidden and e.text_b not in forbidden
            and (e.text_a, e.text_b) not in gold_pairs]
    total = int(round(multiple * len(gold)))
    counts = _share(total, [s for s in SOURCES if s in sources], len(pool))
    out = []
    for k, source in enumerate(SOURCES):
        count = counts.get(source, 0)
        if not count:
            continue
        rng = np.random.RandomState([seed, k])
        if source == "pool":
            picks = rng.permutation(len(pool))[:count]
            pairs = [(pool[i].text_a, pool[i].text_b) for i in sorted(picks)]
        elif source == "random":
            pairs = _random_pairs(gold, count, rng)
        elif source == "overlap":
            pairs = _overlap_pairs(gold, count, rng)
        else:
            pairs = _edit_pairs(gold, count, rng)
        pairs = [p for p in pairs if p[0] not in forbidden and p[1] not in forbidden]
        out.extend(pairs)
    check_disjoint(out, forbidden)
    return [Example(a, b, UNLABELLED) for a, b in out]


def augment_counts(examples):
    """How many of ``examples`` carry a gold label and how many do not."""
    unlabelled = sum(1 for e in examples if e.label < 0)
    return {"gold": len(examples) - unlabelled, "augmented": unlabelled}
