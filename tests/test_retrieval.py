"""Index -> search -> re-rank with a tiny model: the first stage equals exact cosine search,
re-ranking equals the model's and the teacher's own scores, a build resumes from its
shards, an index refuses another model, and bad input is one `error:` line (exit 2) with
nothing left behind."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import save_tiny_classifier

from virt_tf.errors import ConfigError, DataError, ExistingFileError
from virt_tf.retrieval import corpus
from virt_tf.retrieval import index as index_lib
from virt_tf.retrieval.searcher import normalize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_SEQ = 32
DOCS = [
    "the cat sat on the mat", "a dog runs fast", "the red house is big",
    "a small blue car", "the green tree", "the cat is not on the mat",
    "a big dog is slow", "the blue house", "a red car runs fast", "the small cat",
    "is the tree green", "a dog sat on the mat", "the big red tree",
    "the car is not slow", "a house on the green", "the slow cat runs",
    "blue and red", "the dog and the cat", "a mat on the car", "big small big small",
]
QUERIES = [("q1", "a cat on a mat"), ("q2", "the fast dog"), ("q3", "a red house"),
           ("q4", "green tree big")]


def _env():
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def _write_corpus(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in rows))
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, vocab_file):
    root = tmp_path_factory.mktemp("retrieval")
    save_tiny_classifier(root / "virt", "virt", vocab_file, MAX_SEQ, seed=1)
    save_tiny_classifier(root / "other", "virt", vocab_file, MAX_SEQ, seed=2)
    save_tiny_classifier(root / "teacher", "cross", vocab_file, MAX_SEQ, seed=3)
    docs = [(f"d{i}", t) for i, t in enumerate(DOCS)]
    corpus_path = _write_corpus(root / "corpus.tsv", docs)
    queries_path = _write_corpus(root / "queries.tsv", QUERIES)
    options = index_lib.IndexOptions(shard_size=7, batch_size=4)  # 3 shards
    info = index_lib.build_index(str(root / "virt"), corpus_path, str(root / "index"), options,
                                 show_progress=False)
    index = index_lib.Index.load(str(root / "index"))
    return {"root": root, "model_dir": str(root / "virt"), "corpus": corpus_path,
            "queries": queries_path, "info": info, "index": index, "docs": docs}


def _exact_vectors(matcher, texts):
    """Mean of each text's states, encoded by the matcher in one call (not through the
    index's shards)."""
    cache = matcher.encode(texts)
    return normalize(np.stack([cache.text_states(i).mean(axis=0) for i in range(len(texts))]))


def test_index_folder_holds_what_it_says(setup):
    folder = setup["root"] / "index"
    assert sorted(os.listdir(folder)) == ["docs.npz", "index.json", "scann", "states.npz"]
    info = setup["info"]
    assert info["documents"] == len(DOCS) and info["searcher"] == {"kind": "brute_force"}
    assert info["state_bytes"] == os.path.getsize(folder / "states.npz")
    assert info["state_bytes_per_document"] == pytest.approx(info["state_bytes"] / len(DOCS))
    index = setup["index"]
    assert index.ids == [i for i, _ in setup["docs"]] and index.states.states.dtype == np.float16
    # the stored vectors are the mean-pooled, normalised states of each text alone
    np.testing.assert_allclose(index.vectors, _exact_vectors(index.matcher, DOCS), atol=1e-5)


def test_first_stage_is_exact_cosine_search(setup):
    index = setup["index"]
    texts = [t for _, t in QUERIES]
    ranked = index.search(texts, top_k=6)
    cosine = _exact_vectors(index.matcher, texts) @ index.vectors.T
    for q, hits in enumerate(ranked):
        expected = np.argsort(-cosine[q], kind="stable")[:6]
        assert [d for d, _ in hits] == [index.ids[r] for r in expected]
        np.testing.assert_allclose([s for _, s in hits], cosine[q, expected], atol=1e-5)
    assert index.recall_against_exact(texts, k=5) == 1.0  # brute force is exact
    # top_k above the corpus size returns the whole corpus, once each
    everything = index.search(texts[:1], top_k=100)[0]
    assert sorted(d for d, _ in everything) == sorted(index.ids)


def _positive(matcher):
    return index_lib.positive_column(matcher.labels)


def test_model_rerank_scores_the_head_with_the_model_own_probabilities(setup):
    index = setup["index"]
    texts = [t for _, t in QUERIES]
    first = index.search(texts, top_k=8)
    reranked = index.search(texts, top_k=8, rerank="model", rerank_depth=5)
    column = _positive(index.matcher)
    # each head score is the model's end-to-end probability (float16 states: ~1e-3)
    pairs = [(texts[q], DOCS[index.ids.index(d)]) for q, hits in enumerate(reranked)
             for d, _ in hits[:5]]
    probs = index.matcher.predict(*zip(*pairs))[:, column].reshape(len(texts), 5)
    for q, (before, after) in enumerate(zip(first, reranked)):
        head = [d for d, _ in before[:5]]
        assert sorted(d for d, _ in after[:5]) == sorted(head)  # the same five, re-ordered
        assert [d for d, _ in after[5:]] == [d for d, _ in before[5:]]  # the rest kept
        scores = [s for _, s in after]
        assert scores == sorted(scores, reverse=True)  # a run's scores fall with the rank
        np.testing.assert_allclose(scores[:5], probs[q], atol=2e-3)


def test_teacher_rerank_uses_the_cross_encoder_scores(setup):
    import virt_tf
    index = setup["index"]
    teacher_dir = str(setup["root"] / "teacher")
    teacher = virt_tf.load(teacher_dir)
    texts = [t for _, t in QUERIES]
    first = index.search(texts, top_k=4)
    reranked = index.search(texts, top_k=4, rerank="teacher", rerank_depth=4,
                            teacher_dir=teacher_dir)
    column = _positive(teacher)
    pairs = [(texts[q], DOCS[index.ids.index(d)]) for q, hits in enumerate(first)
             for d, _ in hits]
    all_probs = teacher.predict(*zip(*pairs))[:, column].reshape(len(texts), 4)
    for q, (before, after) in enumerate(zip(first, reranked)):
        probs = all_probs[q]
        expected = [before[i][0] for i in np.argsort(-probs, kind="stable")]
        assert [d for d, _ in after] == expected
        np.testing.assert_allclose([s for _, s in after], np.sort(probs)[::-1], atol=1e-6)


def test_exclude_self_leaves_out_the_query_own_id(setup):
    index = setup["index"]
    hits = index.search([DOCS[3]], top_k=3, query_ids=["d3"], exclude_self=True)[0]
    assert "d3" not in [d for d, _ in hits] and len(hits) == 3
    assert index.search([DOCS[3]], top_k=1)[0][0][0] == "d3"  # else it is its own best match


def test_an_index_refuses_another_model(setup):
    with pytest.raises(ConfigError, match="another model"):
        index_lib.Index.load(str(setup["root"] / "index"), str(setup["root"] / "other"))


def test_a_stopped_build_resumes_from_its_shards(setup, tmp_path, monkeypatch):
    calls = []
    real = index_lib.encode_cache

    def failing_encode(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill during the second shard
        return real(*args, **kwargs)

    monkeypatch.setattr(index_lib, "encode_cache", failing_encode)
    out = str(tmp_path / "index")
    options = index_lib.IndexOptions(shard_size=7, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        index_lib.build_index(setup["model_dir"], setup["corpus"], out, options, False)
    assert os.listdir(os.path.join(out, "shards")) == ["shard-00000.npz"]
    with pytest.raises(DataError, match="has not finished"):
        index_lib.Index.load(out)
    calls.clear()
    monkeypatch.setattr(index_lib, "encode_cache", real)
    monkeypatch.setattr(index_lib, "encode_cache", lambda *a, **k: calls.append(1) or real(*a, **k))
    index_lib.build_index(setup["model_dir"], setup["corpus"], out, options, False)
    assert len(calls) == 2  # shards 2 and 3 only
    assert sorted(os.listdir(out)) == ["docs.npz", "index.json", "scann", "states.npz"]
    resumed = index_lib.Index.load(out)
    np.testing.assert_array_equal(resumed.vectors, setup["index"].vectors)
    np.testing.assert_array_equal(resumed.states.states, setup["index"].states.states)
    # a build with other settings is not mixed with the stopped one; a finished index stays
    with pytest.raises(ExistingFileError):
        index_lib.build_index(setup["model_dir"], setup["corpus"], out, options, False)


def test_index_without_states_refuses_model_rerank(setup, tmp_path):
    out = str(tmp_path / "index")
    options = index_lib.IndexOptions(keep_states=False)
    info = index_lib.build_index(setup["model_dir"], setup["corpus"], out, options, False)
    assert info["states"] is None and "states.npz" not in os.listdir(out)
    index = index_lib.Index.load(out)
    np.testing.assert_allclose(index.vectors, setup["index"].vectors, atol=1e-6)
    with pytest.raises(ConfigError, match="token states"):
        index.search(["a cat"], top_k=2, rerank="model", rerank_depth=2)


# ---------------------------------------------------------------------------- commands
def _command(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, cwd=REPO, env=_env(), timeout=300)


def _one_error_line(proc):
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.rstrip().splitlines()[-1] == errors[0], \
        proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return errors[0]


def test_commands_index_then_search_with_metrics(setup, tmp_path):
    out = str(tmp_path / "index")
    proc = _command("virt_tf.index", f"--model_dir={setup['model_dir']}",
                    f"--corpus={setup['corpus']}", f"--output={out}", "--shard_size=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bytes a document" in proc.stdout
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d0 1\nq2 0 d1 1\nq3 0 d7 1\nq4 0 d4 1\n", encoding="utf-8")
    run = str(tmp_path / "run.txt")
    proc = _command("virt_tf.search", f"--index={out}", f"--queries={setup['queries']}",
                    f"--output={run}", "--top_k=5", "--rerank=model", "--rerank_depth=3",
                    f"--qrels={qrels}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ndcg@10" in proc.stdout
    written = corpus.read_run(run)
    expected = setup["index"].search([t for _, t in QUERIES], top_k=5, rerank="model",
                                     rerank_depth=3)
    for (qid, _), hits in zip(QUERIES, expected):
        assert list(written[qid]) == [d for d, _ in hits]


@pytest.mark.parametrize("case", ["empty_corpus", "duplicate_ids", "not_empty_output"])
def test_index_bad_input_is_one_error_line_and_nothing_written(setup, tmp_path, case):
    bad = tmp_path / "corpus.tsv"
    out = tmp_path / "index"
    if case == "empty_corpus":
        bad.write_text("id\ttext\n", encoding="utf-8")
    elif case == "duplicate_ids":
        bad.write_text("a\tthe cat\nb\tthe dog\na\tthe mat\n", encoding="utf-8")
    else:
        bad.write_text("a\tthe cat\n", encoding="utf-8")
        out.mkdir()
        (out / "notes.txt").write_text("mine", encoding="utf-8")
    proc = _command("virt_tf.index", f"--model_dir={setup['model_dir']}", f"--corpus={bad}",
                    f"--output={out}")
    line = _one_error_line(proc)
    expected = {"empty_corpus": "no texts", "duplicate_ids": "appears twice",
                "not_empty_output": "not empty"}[case]
    assert expected in line
    if case == "not_empty_output":
        assert os.listdir(out) == ["notes.txt"]
    else:
        assert not out.exists()


@pytest.mark.parametrize("case", ["missing_queries", "top_k_zero", "not_an_index"])
def test_search_bad_input_is_one_error_line_and_no_run(setup, tmp_path, case):
    run = tmp_path / "run.txt"
    args = [f"--index={setup['root'] / 'index'}", f"--queries={setup['queries']}",
            f"--output={run}"]
    if case == "missing_queries":
        args[1] = f"--queries={tmp_path / 'nothing.tsv'}"
    elif case == "top_k_zero":
        args.append("--top_k=0")
    else:
        args[0] = f"--index={setup['model_dir']}"  # a folder from elsewhere
    line = _one_error_line(_command("virt_tf.search", *args))
    expected = {"missing_queries": "nothing.tsv", "top_k_zero": "--top_k",
                "not_an_index": "not an index"}[case]
    assert expected in line
    assert not run.exists() and os.listdir(tmp_path) == []
