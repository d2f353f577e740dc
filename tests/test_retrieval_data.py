"""Retrieval without a model: ScaNN against numpy's exact search, the ranking metrics on
hand-computed values, run and qrels files, and the QQP retrieval set builder."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from virt_tf.errors import ConfigError, DataError, ExistingFileError, MissingDependencyError
from virt_tf.retrieval import corpus, metrics, qqp, require, searcher

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- packages
def test_a_missing_optional_package_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"\[retrieval\]"):
        require("scann", "no_such_package_of_virt_tf")


def test_a_search_without_scann_is_one_error_line_before_tensorflow(tmp_path):
    """ScaNN hidden from the import system: the command stops at its check, naming the
    extra, without loading TensorFlow."""
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tthe cat\n", encoding="utf-8")
    code = ("import importlib.util as u, runpy, sys\n"
            "real = u.find_spec\n"
            "u.find_spec = lambda name, *a: None if name == 'scann' else real(name, *a)\n"
            "import atexit\n"
            "atexit.register(lambda: print('tensorflow loaded' if 'tensorflow' in sys.modules"
            " else 'no tensorflow'))\n"
            f"sys.argv = ['search', '--index={tmp_path}', '--queries={queries}', "
            f"'--output={tmp_path / 'run.txt'}']\n"
            "runpy.run_module('virt_tf.search', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "[retrieval]" in errors[0] and "scann" in errors[0]
    assert proc.stdout.strip().endswith("no tensorflow")
    assert not (tmp_path / "run.txt").exists()


# ---------------------------------------------------------------------------- ScaNN
def _vectors(n, d=16, seed=0):
    return searcher.normalize(np.random.RandomState(seed).randn(n, d))


def test_scann_brute_force_returns_numpy_exact_top_k():
    docs, queries = _vectors(300), _vectors(12, seed=1)
    plan = searcher.SearcherOptions(brute_force_below=1000).plan(len(docs))
    assert plan == {"kind": "brute_force"}
    rows, scores = searcher.search(searcher.build_searcher(docs, plan), queries, 10)
    exact_rows, exact_scores = searcher.exact_top_k(docs, queries, 10)
    np.testing.assert_array_equal(rows, exact_rows)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    # k above the corpus size: every document, still in exact order
    rows, _ = searcher.search(searcher.build_searcher(docs[:7], plan), queries, 10)
    np.testing.assert_array_equal(rows, searcher.exact_top_k(docs[:7], queries, 10)[0])


def test_tree_ah_searcher_survives_saving(tmp_path):
    docs, queries = _vectors(400), _vectors(5, seed=2)
    plan = searcher.SearcherOptions(brute_force_below=100, num_leaves=8, leaves_to_search=4,
                                    reorder=40).plan(len(docs))
    assert plan["kind"] == "tree_ah" and plan["num_leaves"] == 8
    built = searcher.build_searcher(docs, plan)
    before = searcher.search(built, queries, 10, plan)
    searcher.save_searcher(built, str(tmp_path / "a"))
    os.rename(tmp_path / "a", tmp_path / "b")  # relative paths: the folder can move
    after = searcher.search(searcher.load_searcher(str(tmp_path / "b")), queries, 10, plan)
    np.testing.assert_array_equal(before[0], after[0])
    # the re-ordered candidates are scored exactly: the scores are true inner products
    np.testing.assert_allclose(after[1], np.take_along_axis(queries @ docs.T, after[0], 1),
                               atol=1e-5)
    with pytest.raises(DataError, match="no ScaNN searcher"):
        searcher.load_searcher(str(tmp_path))


def test_searcher_options_are_checked():
    with pytest.raises(ConfigError):
        searcher.SearcherOptions(reorder=-1).check()
    plan = searcher.SearcherOptions(brute_force_below=10).plan(100)
    assert plan["num_leaves"] == 10 and plan["leaves_to_search"] == 1


# ---------------------------------------------------------------------------- metrics
def test_metrics_equal_hand_computed_values():
    qrels = {"q1": {"a": 1, "b": 1, "z": 0}, "q2": {"c": 2}, "q3": {"d": 1},
             "q4": {"x": 0}}  # q4 has no relevant document: not counted
    run = {"q1": {"z": 0.9, "a": 0.8, "y": 0.7, "b": 0.6},  # relevant at ranks 2 and 4
           "q2": {"c": 0.5, "e": 0.4},                       # relevant at rank 1
           "q4": {"x": 1.0}}                                 # q3 missing: counts 0
    means, per_query = metrics.evaluate_run(qrels, run)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    ndcg_q1 = dcg / idcg
    assert per_query["ndcg@10"]["q1"] == pytest.approx(ndcg_q1, abs=1e-6)
    assert per_query["ndcg@10"]["q2"] == pytest.approx(1.0)
    assert per_query["ndcg@10"]["q3"] == 0.0
    assert "q4" not in per_query["ndcg@10"]
    assert means["ndcg@10"] == pytest.approx((ndcg_q1 + 1.0 + 0.0) / 3, abs=1e-6)
    assert means["mrr@10"] == pytest.approx((1 / 2 + 1 + 0) / 3, abs=1e-6)
    assert means["recall@100"] == pytest.approx((1 + 1 + 0) / 3, abs=1e-6)


def test_mrr_at_10_ignores_a_hit_below_10():
    qrels = {"q": {"d11": 1}}
    run = {"q": {f"d{i}": 1.0 - i / 100 for i in range(1, 21)}}
    means, _ = metrics.evaluate_run(qrels, run)
    assert means["mrr@10"] == 0.0 and means["recall@100"] == 1.0
    assert means["ndcg@10"] == 0.0


def test_run_and_qrels_files_round_trip(tmp_path):
    path = str(tmp_path / "run.txt")
    corpus.write_run(path, ["q1", "q2"], [[("a", 0.9), ("b", 0.5)], [("c", 1.5)]], tag="t")
    with open(path, encoding="utf-8") as f:
        assert f.readline() == "q1 Q0 a 1 0.9 t\n"
    assert corpus.read_run(path) == {"q1": {"a": 0.9, "b": 0.5}, "q2": {"c": 1.5}}
    corpus.write_qrels(str(tmp_path / "qrels.txt"), {"q1": {"a": 1}, "q2": {"c": 2}})
    assert corpus.read_qrels(str(tmp_path / "qrels.txt")) == {"q1": {"a": 1}, "q2": {"c": 2}}
    with pytest.raises(DataError, match="white space"):
        corpus.write_run(str(tmp_path / "bad.txt"), ["q 1"], [[("a", 1.0)]])
    assert not os.path.exists(tmp_path / "bad.txt")


def test_read_texts_forms_and_errors(tmp_path):
    tsv = tmp_path / "c.tsv"
    tsv.write_text("doc\tlang\tbody\n7\ten\thello\n8\tfr\tbonjour\n", encoding="utf-8")
    assert corpus.read_texts(str(tsv), "doc", "body") == (["7", "8"], ["hello", "bonjour"])
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"_id": 1, "text": "a"}\n{"_id": "x", "text": ""}\n', encoding="utf-8")
    assert corpus.read_texts(str(jsonl), "_id") == (["1", "x"], ["a", ""])
    dup = tmp_path / "d.tsv"
    dup.write_text("a\tone\nb\ttwo\na\tthree\n", encoding="utf-8")
    with pytest.raises(DataError, match="appears twice"):
        corpus.read_texts(str(dup))
    empty = tmp_path / "e.tsv"
    empty.write_text("id\ttext\n", encoding="utf-8")
    with pytest.raises(DataError, match="no texts"):
        corpus.read_texts(str(empty))


# ---------------------------------------------------------------------------- QQP
PAIRS = [  # (a, b, label): clusters {A, B, C} (A=B, B=C), {D, E}; F alone; G-H not duplicates
    ("A?", "B?", 1), ("B?", "C?", 1), ("D?", "E?", 1), ("A?", "F?", 0), ("G?", "H?", 0),
    ("B?", "A?", 1),  # the same pair again, reversed: counted once
]


def _write_mini_qqp(tmp_path):
    jsonl = tmp_path / "glue.jsonl"
    jsonl.write_text("".join(json.dumps({"question1": a, "question2": b, "label": l}) + "\n"
                             for a, b, l in PAIRS[:3]), encoding="utf-8")
    tsv = tmp_path / "glue.tsv"
    tsv.write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                   + "".join(f"{n}\t0\t0\t{a}\t{b}\t{l}\n" for n, (a, b, l)
                             in enumerate(PAIRS[3:])), encoding="utf-8")
    return [str(jsonl), str(tsv)]


def test_qqp_set_clusters_queries_and_qrels(tmp_path):
    pairs = []
    for path in _write_mini_qqp(tmp_path):
        pairs.extend(qqp.read_labelled_pairs(path))
    built = qqp.build_retrieval_set(pairs, dev_fraction=0.5, seed=0)
    ids = {text: i for i, text in built["corpus"]}
    assert sorted(ids) == ["A?", "B?", "C?", "D?", "E?", "F?", "G?", "H?"]
    queries = {t for split in ("dev", "train") for _, t in built["queries"][split]}
    assert queries == {"A?", "B?", "C?", "D?", "E?"}  # F, G, H have no duplicate
    qrels = {**built["qrels"]["dev"], **built["qrels"]["train"]}
    # transitive: A and C are duplicates through B; a query is not its own duplicate
    assert qrels[ids["A?"]] == {ids["B?"]: 1, ids["C?"]: 1}
    assert qrels[ids["C?"]] == {ids["A?"]: 1, ids["B?"]: 1}
    assert qrels[ids["E?"]] == {ids["D?"]: 1}
    assert built["info"]["pairs"] == 5 and built["info"]["label_conflicts"] == 0
    assert built["info"]["components"] == 3  # {A, B, C, F}, {D, E}, {G, H}


@pytest.mark.parametrize("seed", range(6))
def test_qqp_dev_queries_and_their_links_stay_out_of_training(tmp_path, seed):
    pairs = []
    for path in _write_mini_qqp(tmp_path):
        pairs.extend(qqp.read_labelled_pairs(path))
    built = qqp.build_retrieval_set(pairs, dev_fraction=0.5, seed=seed)
    dev_ids = set(built["qrels"]["dev"])
    dev_related = dev_ids | {d for docs in built["qrels"]["dev"].values() for d in docs}
    text_of = dict(built["corpus"])
    dev_texts = {text_of[i] for i in dev_related}
    # linked to a dev question by any labelled pair (F is linked to A by a non-duplicate)
    linked = dev_texts | {b for a, b, _ in PAIRS if a in dev_texts} | {
        a for a, b, _ in PAIRS if b in dev_texts}
    assert dev_ids, "two of the three components must make one dev side"
    for a, b, _ in built["train_pairs"]:
        assert a not in linked and b not in linked
    assert not dev_ids & set(built["qrels"]["train"])
    kept = {(a, b) for a, b, _ in built["train_pairs"]}
    every = {(a, b) for a, b, _ in PAIRS[:5]}
    assert kept <= {p for p in every if p[0] not in linked}
    # every pair of a train query is kept
    train_texts = {text_of[i] for i in built["qrels"]["train"]}
    assert {p for p in every if p[0] in train_texts or p[1] in train_texts} <= kept


def test_qqp_writes_the_folder(tmp_path):
    files = _write_mini_qqp(tmp_path)
    out = tmp_path / "set"
    info = qqp.write_retrieval_set(files, str(out), dev_fraction=0.5, seed=1)
    names = sorted(os.listdir(out))
    assert names == ["corpus.jsonl", "info.json", "qrels.dev.txt", "qrels.train.txt",
                     "queries.dev.jsonl", "queries.train.jsonl", "train_pairs.jsonl"]
    ids, texts = corpus.read_texts(str(out / "corpus.jsonl"))
    assert len(ids) == info["questions"] == 8
    qids, _ = corpus.read_texts(str(out / "queries.dev.jsonl")) if info["queries"]["dev"] \
        else ([], [])
    if qids:
        assert set(corpus.read_qrels(str(out / "qrels.dev.txt"))) == set(qids)
    with pytest.raises(ExistingFileError):
        qqp.write_retrieval_set(files, str(out))
    with pytest.raises(DataError, match="0 or 1"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"text_a": "x", "text_b": "y", "label": 2}\n', encoding="utf-8")
        qqp.read_labelled_pairs(str(bad))
