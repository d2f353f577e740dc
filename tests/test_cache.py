"""Offline state cache: `virt_tf.encode` writes states, `virt_tf.score` scores cached pairs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from conftest import save_tiny_classifier  # noqa: E402

LABELS = ["entailment", "not_entailment"]
MAX_SEQ = 40
TEXTS = {
    "q1": "Is the cat on the mat?",
    "q2": "Does the dog run fast in the green park near the big red house?",
    "q3": "Why?",
    "d1": "A cat sat on the mat.",
    "d2": "The dog is not slow at all; it runs very fast.",
    "d3": "Nobody knows who wrote the small book on the table.",
    "d4": "",
}
PAIRS = [("q1", "d1"), ("q2", "d2"), ("q3", "d3"), ("q1", "d2"), ("q2", "d4"), ("q3", "d1"),
         ("d1", "q1")]


# float16 keeps 11 significant bits: rounding a state to it changes the state by at most
# 2^-11 of its size (half an ulp; 2^-25 absolute below float16's smallest normal number).
# Probabilities scored from rounded states may move by one such step, 2^-11 ~ 4.9e-4
# (measured: ~5e-5 on the tiny model); different pairs must differ by far more than that
# for the comparisons to be able to fail.
FLOAT16_REL = 2.0 ** -11
FLOAT16_PROB_ATOL = 2.0 ** -11


def _env():
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")


def save_tiny(directory, model_name, vocab_file, seed=1):
    """A tiny random model saved like training does (see conftest)."""
    return save_tiny_classifier(directory, model_name, vocab_file, MAX_SEQ, seed, LABELS)


def write_texts(path, texts=TEXTS):
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\ttext\n")
        for text_id, text in texts.items():
            f.write(f"{text_id}\t{text}\n")
    return str(path)


def write_pairs(path, pairs=PAIRS):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{a}\t{b}\n" for a, b in pairs))
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, vocab_file):
    root = tmp_path_factory.mktemp("cache")
    model_dir = root / "virt"
    classifier = save_tiny(model_dir, "virt", vocab_file)
    return {"root": root, "model_dir": str(model_dir), "classifier": classifier,
            "texts": write_texts(root / "texts.tsv"), "pairs": write_pairs(root / "pairs.tsv")}


@pytest.fixture(scope="module")
def end_to_end(setup, vocab_file):
    """The Keras pipeline's probabilities of PAIRS (strings -> pair preprocessor -> model)."""
    from virt_tf.data.tasks import Example
    from virt_tf.data.tokenization import BertPairPreprocessor
    from virt_tf.evaluation.metrics import predict_probs

    prep = BertPairPreprocessor(vocab_file, True, MAX_SEQ)
    examples = [Example(TEXTS[a], TEXTS[b], 0) for a, b in PAIRS]
    probs = predict_probs(setup["classifier"], examples, prep, batch_size=4)
    # The comparisons below can fail: any two pairs differ by much more than the float16
    # tolerance, so scores returned for the wrong pair (or in the wrong order) are caught.
    gaps = np.abs(probs[:, None, 0] - probs[None, :, 0])[~np.eye(len(PAIRS), dtype=bool)]
    assert gaps.min() > 10 * FLOAT16_PROB_ATOL, gaps.min()
    return probs


@pytest.mark.parametrize("float16", [False, True])
def test_cached_scores_equal_end_to_end(setup, end_to_end, float16):
    from virt_tf.inference.matcher import encode_file
    from virt_tf.inference.state_cache import read_cache
    from virt_tf.inference.scoring import score_file

    path = str(setup["root"] / f"cache_{float16}.npz")
    # batch 2: several batches, taken in length order, must come back in file order
    summary = encode_file(setup["model_dir"], setup["texts"], path, float16=float16,
                          batch_size=2, show_progress=False)
    assert summary["texts"] == len(TEXTS) and summary["bytes"] == os.path.getsize(path)
    cache = read_cache(path)
    assert cache.ids == list(TEXTS)
    assert cache.states.dtype == (np.float16 if float16 else np.float32)
    assert cache.length(cache.ids.index("d4")) == 2  # [CLS] [SEP] of the empty text
    assert cache.length(cache.ids.index("q2")) > cache.length(cache.ids.index("q1"))
    pairs, probs, info = score_file(setup["model_dir"], [path], setup["pairs"], batch_size=3,
                                    show_progress=False)
    assert pairs == PAIRS and info["labels"] == LABELS and info["over_budget"] == 0
    np.testing.assert_allclose(probs, end_to_end, atol=FLOAT16_PROB_ATOL if float16 else 1e-5,
                               rtol=0)


def test_float16_halves_the_states_and_file_is_pickle_free(setup):
    from virt_tf.inference.matcher import encode_file

    sizes, states = {}, {}
    for float16 in (False, True):
        path = str(setup["root"] / f"size_{float16}.npz")
        sizes[float16] = encode_file(setup["model_dir"], setup["texts"], path, float16=float16,
                                     show_progress=False)["bytes"]
        with np.load(path, allow_pickle=False) as data:
            assert sorted(data.files) == ["ids", "meta", "offsets", "states"]
            assert data["ids"].dtype.kind == "U"
            states[float16] = data["states"]
            meta = json.loads(str(data["meta"]))
        assert meta["dtype"] == ("float16" if float16 else "float32")
    assert states[True].nbytes * 2 == states[False].nbytes
    assert sizes[True] < 0.75 * sizes[False]
    # float16 states are the float32 states rounded to nearest: within half an ulp, no more
    s16, s32 = states[True].astype(np.float32), states[False]
    assert np.all(np.abs(s16 - s32) <= (FLOAT16_REL + 1e-6) * np.abs(s32) + 2.0 ** -25), \
        np.max(np.abs(s16 - s32) / np.maximum(np.abs(s32), 2.0 ** -14))
    assert np.any(s16 != s32)  # they were rounded, not stored in float32


def test_split_caches_and_fingerprint_check(setup, end_to_end, vocab_file, tmp_path):
    from virt_tf.data.tasks import DataError
    from virt_tf.inference.matcher import encode_file
    from virt_tf.inference.scoring import score_file

    for name in ("q", "d"):
        write_texts(tmp_path / f"{name}.tsv", {k: v for k, v in TEXTS.items() if k[0] == name})
        encode_file(setup["model_dir"], str(tmp_path / f"{name}.tsv"),
                    str(tmp_path / f"{name}.npz"), show_progress=False)
    caches = [str(tmp_path / "q.npz"), str(tmp_path / "d.npz")]
    _, probs, _ = score_file(setup["model_dir"], caches, setup["pairs"], show_progress=False)
    np.testing.assert_allclose(probs, end_to_end, atol=1e-5, rtol=0)
    with pytest.raises(DataError, match="is in two caches"):
        score_file(setup["model_dir"], caches + caches[:1], setup["pairs"], show_progress=False)
    other = tmp_path / "other"
    save_tiny(other, "virt", vocab_file, seed=2)
    with pytest.raises(DataError, match="written by another model"):
        score_file(str(other), caches, setup["pairs"], show_progress=False)


def test_read_texts_formats_and_errors(tmp_path):
    from virt_tf.data.tasks import DataError
    from virt_tf.inference.state_cache import read_texts

    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"id": "a", "text": "one"}\n{"text": "two"}\n{"id": 7, "text": ""}\n')
    assert read_texts(str(jsonl)) == (["a", "2", "7"], ["one", "two", ""])
    tsv = tmp_path / "t.tsv"
    tsv.write_text("x1\tHello there\r\nx2\tBye\n")
    assert read_texts(str(tsv)) == (["x1", "x2"], ["Hello there", "Bye"])
    cases = {
        "a\tb\tc\n": r"t1.tsv:1: expected 2 tab-separated fields \(id, text\), got 3",
        "a\tone\n\nb\ttwo\n": r"t1.tsv:2: empty row",
        "a\tone\na\ttwo\n": r"id 'a' appears twice",
        "": r"t1.tsv: no texts",
        "\tno id\n": r"t1.tsv:1: empty id",
    }
    for content, message in cases.items():
        (tmp_path / "t1.tsv").write_text(content)
        with pytest.raises(DataError, match=message):
            read_texts(str(tmp_path / "t1.tsv"))
    (tmp_path / "t2.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(DataError, match=r"t2.jsonl:1: expected an object with a string"):
        read_texts(str(tmp_path / "t2.jsonl"))
    (tmp_path / "t3.tsv").write_bytes(b"a\t\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_texts(str(tmp_path / "t3.tsv"))
    with pytest.raises(DataError, match="file not found"):
        read_texts(str(tmp_path / "absent.tsv"))


def test_bad_pairs_and_bad_caches(setup, tmp_path):
    from virt_tf.data.tasks import DataError
    from virt_tf.inference.matcher import encode_file
    from virt_tf.inference.state_cache import read_cache
    from virt_tf.inference.scoring import read_pairs, score_file

    cache = str(tmp_path / "c.npz")
    encode_file(setup["model_dir"], setup["texts"], cache, show_progress=False)
    (tmp_path / "p.tsv").write_text("id_a\tid_b\nq1\td1\nq1\tnope\n")
    assert [p[1:] for p in read_pairs(str(tmp_path / "p.tsv"))] == [("q1", "d1"), ("q1", "nope")]
    with pytest.raises(DataError, match=r"p.tsv:3: id 'nope' is not in the cache"):
        score_file(setup["model_dir"], [cache], str(tmp_path / "p.tsv"), show_progress=False)
    (tmp_path / "p2.tsv").write_text("q1 d1\n")
    with pytest.raises(DataError, match=r"p2.tsv:1: expected 2 tab-separated fields"):
        read_pairs(str(tmp_path / "p2.tsv"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable .npz state cache"):
        read_cache(str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "obj.npz", ids=np.array(["a"], dtype=object), offsets=np.array([0, 1]),
             states=np.zeros((1, 16), np.float32), meta=np.array("{}"))
    with pytest.raises(DataError, match="not a readable .npz state cache"):
        read_cache(str(tmp_path / "obj.npz"))  # an object array would need pickle: refused
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="missing"):
        read_cache(str(tmp_path / "other.npz"))


def test_a_failed_write_of_scores_keeps_the_old_file_and_leaves_no_part(tmp_path):
    """`write_scores` writes through a temporary file: an error midway (here a label index
    out of range on the second row) leaves the earlier scores whole and no temporary."""
    from virt_tf.inference.scoring import write_scores

    out = tmp_path / "scores.tsv"
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    write_scores(str(out), [("a", "b"), ("c", "d")], probs, ["yes", "no"])
    before = out.read_text()
    assert before.splitlines()[1:] == ["a\tb\tyes\t0.89999998\t0.1", "c\td\tno\t0.2\t0.80000001"]
    with pytest.raises(IndexError):
        write_scores(str(out), [("a", "b"), ("c", "d")], probs, ["yes"])
    assert out.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["scores.tsv"]


def test_cross_model_has_no_cache(tmp_path, vocab_file, setup):
    from virt_tf.inference.matcher import encode_file

    save_tiny(tmp_path / "cross", "cross", vocab_file)
    with pytest.raises(ValueError, match="no offline part"):
        encode_file(str(tmp_path / "cross"), setup["texts"], str(tmp_path / "c.npz"),
                    show_progress=False)


def test_run_cli_turns_bad_input_into_exit_2(tmp_path, capsys):
    from virt_tf.cli.common import run_cli
    from virt_tf.inference.state_cache import read_texts

    (tmp_path / "bad.tsv").write_text("only-one-field\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: read_texts(str(tmp_path / "bad.tsv")))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: DataError: {tmp_path / 'bad.tsv'}:1: expected 2 tab-separated "
                   "fields (id, text), got 1"]


def test_encode_and_score_commands(setup, end_to_end, tmp_path):
    cache = tmp_path / "cache.npz"
    enc = subprocess.run(
        [sys.executable, "-m", "virt_tf.encode", f"--model_dir={setup['model_dir']}",
         f"--input={setup['texts']}", f"--output={cache}", "--float16"],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert enc.returncode == 0, enc.stderr[-3000:]
    assert f"wrote {len(TEXTS)} texts" in enc.stdout and "float16" in enc.stdout
    assert "KiB" in enc.stdout or " B " in enc.stdout
    out = tmp_path / "scores.tsv"
    sc = subprocess.run(
        [sys.executable, "-m", "virt_tf.score", f"--model_dir={setup['model_dir']}",
         f"--cache={cache}", f"--pairs={setup['pairs']}", f"--output={out}"],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert sc.returncode == 0, sc.stderr[-3000:]
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["id_a", "id_b", "label", "p_entailment", "p_not_entailment"]
    assert [tuple(r[:2]) for r in rows[1:]] == PAIRS
    probs = np.array([[float(x) for x in r[3:]] for r in rows[1:]])
    np.testing.assert_allclose(probs, end_to_end, atol=FLOAT16_PROB_ATOL, rtol=0)
    assert [r[2] for r in rows[1:]] == [LABELS[i] for i in probs.argmax(axis=1)]
    bad = subprocess.run(
        [sys.executable, "-m", "virt_tf.score", f"--model_dir={setup['model_dir']}",
         f"--cache={tmp_path / 'absent.npz'}", f"--pairs={setup['pairs']}", f"--output={out}"],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == \
        f"error: MissingFileError: --cache {tmp_path / 'absent.npz'}: file not found"
