"""Ranking metrics of a run against judgements, computed by ``ir-measures`` (trec_eval's
definitions through ``pytrec_eval``): nDCG@10, MRR@10 and Recall@100 by default.

Each metric is the mean over the judged queries that have at least one relevant document;
a judged query missing from the run counts 0 (as BEIR does: a query the system could not
answer is a miss, not a query left out). Ties between equal scores are broken as trec_eval
breaks them (by document id), so runs should give distinct scores where order matters.
"""
from virt_tf.errors import ConfigError
from virt_tf.retrieval import require

# our names -> ir-measures' names (MRR is trec_eval's reciprocal rank, RR)
METRICS = {"ndcg@10": "nDCG@10", "mrr@10": "RR@10", "recall@100": "R@100"}


def _measure(name):
    """The ir-measures measure of one of our names, or of any name ir-measures parses."""
    import ir_measures  # pylint: disable=import-outside-toplevel  (optional package)
    try:
        return ir_measures.parse_measure(METRICS.get(name.lower(), name))
    except (ValueError, NameError, AttributeError, TypeError, SyntaxError) as e:
        raise ConfigError(f"unknown metric {name!r} (e.g. {', '.join(METRICS)})") from e


def evaluate_run(qrels, run, metrics=tuple(METRICS)):
    """``{metric: mean}`` and ``{metric: {qid: value}}`` of ``run`` against ``qrels``.

    Args:
      qrels: ``{qid: {docid: relevance}}`` (`virt_tf.retrieval.corpus.read_qrels`).
      run: ``{qid: {docid: score}}`` (`read_run`, or `Index.search` as a dict).
      metrics: names: ``ndcg@10``, ``mrr@10``, ``recall@100``, or ir-measures names.
    Returns:
      ``(means, per_query)``; every mean is over the same queries (see the module
      docstring).
    """
    require("ir_measures")
    import ir_measures  # pylint: disable=import-outside-toplevel  (optional package)
    measures = {name: _measure(name) for name in metrics}
    judged = sorted(q for q, docs in qrels.items() if any(r > 0 for r in docs.values()))
    if not judged:
        raise ConfigError("the judgements have no relevant document")
    per_query = {name: dict.fromkeys(judged, 0.0) for name in metrics}
    by_measure = {str(m): name for name, m in measures.items()}
    run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in qrels}
    if run:
        for row in ir_measures.iter_calc(list(measures.values()), qrels, run):
            name = by_measure[str(row.measure)]
            if row.query_id in per_query[name]:
                per_query[name][row.query_id] = float(row.value)
    means = {name: sum(values.values()) / len(values) for name, values in per_query.items()}
    return means, per_query
