"""Statistics of comparisons between runs: spread over seeds, gap closed, paired tests.

Predictions are int arrays `[pairs]` of predicted classes, labels the same shape.
"""
import itertools
import statistics

import numpy as np


def mean_spread(values):
    """(mean, sample standard deviation; 0 for one value) of a list of numbers."""
    values = list(values)
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def gap_closed(student, bottom, top):
    """Share of the ``bottom`` -> ``top`` gap a ``student`` closes: `(s - b) / (t - b)`."""
    if top == bottom:
        return float("nan")
    return (student - bottom) / (top - bottom)


def mcnemar_exact(only_a, only_b):
    """Two-sided exact McNemar p-value from the two discordant counts: the exact binomial
    test of ``only_a`` successes in ``only_a + only_b`` trials at p = 1/2 (scipy)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    # scipy.stats takes about a second to import, more than all else `tools/reproduce.py
    # --help` or `--plan`, `compare_runs.py` and `screen_table.py` load through this module
    from scipy.stats import binomtest  # pylint: disable=import-outside-toplevel  (heavy, fast --help)
    return float(binomtest(int(only_a), int(n), 0.5).pvalue)


def paired(pred_a, pred_b, labels):
    """Discordant counts and McNemar p of two models' predictions on the same pairs."""
    labels = np.asarray(labels)
    ra, rb = np.asarray(pred_a) == labels, np.asarray(pred_b) == labels
    only_a, only_b = int(np.sum(ra & ~rb)), int(np.sum(rb & ~ra))
    return {"only_a_right": only_a, "only_b_right": only_b,
            "mcnemar_p": mcnemar_exact(only_a, only_b)}


def compare(predictions, labels):
    """predictions: {name: int array}. Returns per-model and per-pair statistics.

    The first model is the reference (put the teacher first): each model's agreement
    with it, and for every pair of the others, the same paired test on agreeing with
    it instead of on being right (does a distillation term make a student follow its
    teacher more, whether or not accuracy moves?).
    """
    labels = np.asarray(labels)
    names = list(predictions)
    first = predictions[names[0]]
    first_right = first == labels
    models = {n: {"accuracy": float(np.mean(p == labels)),
                  "agreement_with_" + names[0]: float(np.mean(p == first)),
                  f"accuracy_where_{names[0]}_right": _mean_or_nan(p[first_right] ==
                                                                  labels[first_right]),
                  f"accuracy_where_{names[0]}_wrong": _mean_or_nan(p[~first_right] ==
                                                                  labels[~first_right])}
              for n, p in ((n, np.asarray(p)) for n, p in predictions.items())}
    pairs = [dict(a=a, b=b, **paired(predictions[a], predictions[b], labels))
             for a, b in itertools.combinations(names, 2)]
    for pair in pairs:
        if pair["a"] != names[0]:
            agree = paired(predictions[pair["a"]], predictions[pair["b"]], first)
            pair.update(only_a_agrees=agree["only_a_right"], only_b_agrees=agree["only_b_right"],
                        agreement_p=agree["mcnemar_p"])
    return {"models": models, "pairs": pairs}


def _mean_or_nan(values):
    """The mean of a boolean array; nan when it is empty."""
    return float(sum(values) / len(values)) if len(values) else float("nan")
