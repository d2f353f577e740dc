"""Teacher-labelled extra pairs: made from the training texts, or the user's unlabelled pairs.

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
  neighbouring words swapped);
* an unlabelled file (``--unlabelled``, `read_unlabelled`): in-domain pairs the user
  has without labels (query logs, candidate lists); `guard_unlabelled` checks them.

The leak guard (`LeakGuard`) keeps the held-out pairs (tune and evaluation splits) out of
every extra pair, whatever its source, by two rules:

* ``eval_pair``: an extra pair equal to a held-out pair is dropped. ``(b, a)`` counts as
  the same pair as ``(a, b)``: on a symmetric task (QQP, MRPC) the swapped pair is the same
  question, and the guard does not know which tasks are symmetric; on an ordered task (NLI)
  dropping the swapped pair costs a handful of pairs at most;
* ``eval_only_text``: an extra pair holding a text that only held-out pairs hold is dropped.
  A held-out text that a gold training pair also holds (in either position) is no leak: the
  student trains on it with its gold label anyway, so it may appear in extra pairs.

A pair that breaks both rules is counted under ``eval_pair``. `check_disjoint` asserts both
rules on the result.
"""
import dataclasses
import re

import numpy as np
from scipy import sparse

from virt_tf.data import tasks
from virt_tf.data.tasks import Example
from virt_tf.errors import DataError

SOURCES = ("pool", "random", "overlap", "edit")
UNLABELLED = -1
# The leak guard's rules, in the order a dropped pair is counted (see the module docstring).
RULES = ("eval_pair", "eval_only_text")
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


# The generating sources: ``(gold, count, rng) -> [(text_a, text_b), ...]``.
_GENERATORS = {"random": _random_pairs, "overlap": _overlap_pairs, "edit": _edit_pairs}


@dataclasses.dataclass(frozen=True)
class LeakGuard:
    """The held-out pairs and texts no extra pair may hold (the module docstring's rules).

    ``pairs``: every held-out ``(text_a, text_b)`` and its swap; ``texts``: the held-out
    texts that no gold training pair holds. `LeakGuard.of` builds one."""
    pairs: frozenset = frozenset()
    texts: frozenset = frozenset()

    @classmethod
    def of(cls, gold, held_out):
        """The guard of the gold training `Example`s ``gold`` against ``held_out`` (the tune
        and evaluation `Example`s)."""
        gold_texts = {t for e in gold for t in (e.text_a, e.text_b)}
        pairs, texts = set(), set()
        for e in held_out:
            pairs.update({(e.text_a, e.text_b), (e.text_b, e.text_a)})
            texts.update(t for t in (e.text_a, e.text_b) if t not in gold_texts)
        return cls(frozenset(pairs), frozenset(texts))

    def rule(self, pair):
        """The first of `RULES` that ``pair`` (``(text_a, text_b)``) breaks, or None."""
        if pair in self.pairs:
            return "eval_pair"
        if pair[0] in self.texts or pair[1] in self.texts:
            return "eval_only_text"
        return None

    def split(self, pairs):
        """``(kept, dropped)``: the pairs that break no rule, in order, and
        ``{rule: count}`` of the others."""
        kept, dropped = [], dict.fromkeys(RULES, 0)
        for pair in pairs:
            broken = self.rule(pair)
            if broken is None:
                kept.append(pair)
            else:
                dropped[broken] += 1
        return kept, dropped


def check_disjoint(pairs, guard):
    """Raise `AssertionError` if any of ``pairs`` (``(text_a, text_b)`` tuples) breaks a
    rule of ``guard`` (a `LeakGuard`): equals a held-out pair, or holds a held-out-only
    text."""
    same = [p for p in pairs if p in guard.pairs]
    assert not same, (f"{len(same)} extra pairs equal a tune or evaluation pair, "
                      f"e.g. {same[0]}")
    held = [p for p in pairs if p[0] in guard.texts or p[1] in guard.texts]
    assert not held, (f"{len(held)} extra pairs hold a text only the tune or evaluation "
                      f"pairs hold, e.g. {held[0]}")


def _account(candidates, dropped, used, gold_pair=0):
    """One source's counts: pairs it offered, dropped by each rule (and as gold pairs)
    and used."""
    return {"candidates": candidates, **dropped, "gold_pair": gold_pair, "used": used}


def augment_pairs(gold, sources, multiple=1.0, seed=0, pool=(), held_out=(), counts=None):
    """Extra teacher-labelled pairs: `Example`s with label ``-1``.

    Args:
      gold: the run's gold training `Example`s (their texts are re-paired and edited).
      sources: names of `SOURCES` to draw from.
      multiple: extra pairs per gold pair (``round(multiple * len(gold))`` in all).
      seed: the draws' seed (same seed, same pairs, same order).
      pool: other training `Example`s (source ``pool``; their labels are dropped).
      held_out: the tune and evaluation `Example`s: the leak guard's (`LeakGuard`). Pool
        pairs that break a rule are left out before the draw, generated pairs that break
        one are dropped after it (not replaced), and the result is checked
        (`check_disjoint`).
      counts: a dict to fill with each source's counts, ``{source: {"candidates",
        "eval_pair", "eval_only_text", "gold_pair", "used"}}`` (``candidates``: the whole
        pool, or the pairs a generator drew; ``gold_pair``: pool pairs that are gold pairs).
    Returns: a list of `Example(text_a, text_b, -1)`, sources in the order of `SOURCES`;
      shorter than asked when the pool runs out and no generating source is given,
      or when drawn pairs were dropped.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown augmentation sources {unknown}; known: {SOURCES}")
    counts = {} if counts is None else counts
    if not gold:
        return []
    guard = LeakGuard.of(gold, held_out)
    gold_pairs = {(e.text_a, e.text_b) for e in gold}
    offered = [(e.text_a, e.text_b) for e in pool] if "pool" in sources else []
    pool_pairs, pool_dropped = guard.split(p for p in offered if p not in gold_pairs)
    pool_gold = sum(p in gold_pairs for p in offered)
    total = int(round(multiple * len(gold)))
    counts_of = _share(total, [s for s in SOURCES if s in sources], len(pool_pairs))
    out = []
    for k, source in enumerate(SOURCES):
        if source not in sources:
            continue
        count = counts_of.get(source, 0)
        rng = np.random.RandomState([seed, k])
        if source == "pool":
            picks = rng.permutation(len(pool_pairs))[:count]
            pairs = [pool_pairs[i] for i in sorted(picks)]
            counts[source] = _account(len(offered), pool_dropped, len(pairs), pool_gold)
        else:
            drawn = _GENERATORS[source](gold, count, rng) if count else []
            pairs, dropped = guard.split(drawn)
            counts[source] = _account(len(drawn), dropped, len(pairs))
        out.extend(pairs)
    check_disjoint(out, guard)
    return [Example(a, b, UNLABELLED) for a, b in out]


def read_unlabelled(path, a_field="text_a", b_field="text_b", skip_bad_rows=False,
                    stats=None):
    """The pairs of an unlabelled file: `Example(text_a, text_b, -1)`s, in order.

    ``path`` is a TSV file with a header (``.tsv``) or JSON lines (any other name), as the
    ``pairs`` task reads them, with the texts in ``a_field`` and ``b_field``; any other
    field (a label too) is ignored. A row missing a field raises `DataError` naming file,
    line and field, unless ``skip_bad_rows`` (then it is skipped and counted in ``stats``,
    a `virt_tf.data.tasks.ReadStats`); a missing or empty file, or one without a usable
    pair, raises `DataError`."""
    stats = stats if stats is not None else tasks.ReadStats()
    # the pairs task's row readers: its file formats and its error messages
    # pylint: disable=protected-access
    rows = (tasks._rows_tsv(path, skip_bad_rows, stats) if path.endswith(".tsv")
            else tasks._rows_jsonl(path, skip_bad_rows, stats))
    out = []
    for line, row in rows:
        where = f"{path}:{line}"
        try:
            missing = [f for f in (a_field, b_field) if f not in row]
            if missing:
                raise DataError(f"{where}: missing field(s) {missing}")
            out.append(Example(tasks._check_text(row[a_field], where, stats),
                               tasks._check_text(row[b_field], where, stats), UNLABELLED))
        except DataError:
            if not skip_bad_rows:
                raise
            stats.skipped += 1
    # pylint: enable=protected-access
    if not out:
        raise DataError(f"{path}: no usable pairs (fields {a_field!r} and {b_field!r})")
    return out


def guard_unlabelled(pairs, gold, held_out):
    """``(kept, counts)``: the unlabelled `Example`s ``pairs`` that are no gold training pair
    of ``gold`` and break no rule of the leak guard against ``held_out`` (the tune and
    evaluation `Example`s), in order, with label ``-1``; ``counts`` as `augment_pairs`'
    (``candidates``: the pairs read)."""
    guard = LeakGuard.of(gold, held_out)
    gold_pairs = {(e.text_a, e.text_b) for e in gold}
    offered = [(e.text_a, e.text_b) for e in pairs]
    kept, dropped = guard.split(p for p in offered if p not in gold_pairs)
    check_disjoint(kept, guard)
    counts = _account(len(offered), dropped, len(kept),
                      sum(p in gold_pairs for p in offered))
    return [Example(a, b, UNLABELLED) for a, b in kept], counts


def augment_counts(examples):
    """How many of ``examples`` carry a gold label and how many do not."""
    unlabelled = sum(1 for e in examples if e.label < 0)
    return {"gold": len(examples) - unlabelled, "augmented": unlabelled}
