"""Unlabelled pairs as an input (``--unlabelled``): read like the pairs task, checked like
every input, kept out of the tune and evaluation pairs, labelled by the teacher, recorded
in the run; the trained student evaluates and exports as any other."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import virt_tf
from virt_tf.data import tasks
from virt_tf.data.augment import UNLABELLED, guard_unlabelled, read_unlabelled
from virt_tf.data.tasks import Example, ReadStats
from virt_tf.errors import ConfigError, DataError, StageError
from virt_tf.rundir import fingerprint_examples

# A tiny pipeline: a cross-encoder teacher on 16 RTE pairs, then a Siamese student that
# learns from the teacher's logits (cached once a stage) on those and the unlabelled pairs.
OPTIONS = {"epochs": 1, "max_train_examples": 16, "max_eval_examples": 16,
           "max_tune_examples": 8, "batch_size": 8, "logit_beta": 1.0, "virt_alpha": 0.0,
           "seed": 3}
GOOD = 24  # unlabelled pairs that pass the checks


def _write_tsv(path, pairs, fields=("text_a", "text_b", "label")):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(fields) + "\n")
        for a, b in pairs:
            f.write(f"{a}\t{b}\tentailment\n")


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def _env(repo_dir):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=repo_dir)


# ------------------------------------------------------------------------------ reading
def test_tsv_and_jsonl_are_read_with_their_fields_and_labels_ignored(tmp_path):
    _write_tsv(tmp_path / "u.tsv", [("a one", "b one"), ("a two", "b two")])
    got = read_unlabelled(str(tmp_path / "u.tsv"))
    assert got == [Example("a one", "b one", UNLABELLED), Example("a two", "b two", UNLABELLED)]
    _write_jsonl(tmp_path / "u.jsonl", [{"question": "q1", "passage": "p1", "label": "yes"},
                                        {"passage": "p2", "question": "q2"}])
    got = read_unlabelled(str(tmp_path / "u.jsonl"), "question", "passage")
    assert got == [Example("q1", "p1", UNLABELLED), Example("q2", "p2", UNLABELLED)]


def test_a_row_missing_a_field_is_one_error_naming_file_line_and_field(tmp_path):
    path = tmp_path / "u.jsonl"
    _write_jsonl(path, [{"text_a": "a1", "text_b": "b1"}, {"text_a": "a2"},
                        {"text_a": "a3", "text_b": "b3"}])
    with pytest.raises(DataError) as raised:
        read_unlabelled(str(path))
    assert str(raised.value) == f"{path}:2: missing field(s) ['text_b']"
    stats = ReadStats()
    got = read_unlabelled(str(path), skip_bad_rows=True, stats=stats)
    assert [e.text_a for e in got] == ["a1", "a3"] and stats.skipped == 1


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("", "file is empty"),
    ("text_a\ttext_b\n", "file has a header but no data rows"),
    ("premise\thypothesis\nx\ty\n", "missing field(s) ['text_a', 'text_b']"),
])
def test_a_missing_or_empty_file_is_refused(tmp_path, content, message):
    path = tmp_path / "u.tsv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r"u\.tsv.*" + re.escape(message)):
        read_unlabelled(str(path))


def test_a_file_with_no_usable_pair_is_refused(tmp_path):
    path = tmp_path / "u.jsonl"
    _write_jsonl(path, [{"a": "x"}, {"b": "y"}])
    with pytest.raises(DataError, match="no usable pairs"):
        read_unlabelled(str(path), skip_bad_rows=True)


def test_the_leak_guard_and_gold_pairs_drop_unlabelled_pairs_and_count_them():
    gold = [Example("a1", "b1", 0), Example("a2", "b2", 1)]
    held_out = [Example("a1", "b2", 0), Example("a2", "z only in eval", 1)]
    pairs = [Example(a, b, UNLABELLED) for a, b in [
        ("a1", "b2"),               # an evaluation pair made of training texts
        ("b2", "a1"),               # the same pair, swapped
        ("u1", "z only in eval"),   # a text only the evaluation holds
        ("a2", "u2"),               # a2 is in an evaluation pair, and a gold text: kept
        ("a1", "b1"),               # a gold pair: trained on with its label already
        ("u3", "u4")]]
    kept, counts = guard_unlabelled(pairs, gold, held_out)
    assert kept == [Example("a2", "u2", UNLABELLED), Example("u3", "u4", UNLABELLED)]
    assert counts == {"candidates": 6, "eval_pair": 2, "eval_only_text": 1, "gold_pair": 1,
                      "used": 2}


# ------------------------------------------------------------------------------ the pipeline
@pytest.fixture(scope="module")
def rte(shared_data):
    """``(data_dir, train, dev)``: the RTE sample's folder and its pairs."""
    data = os.path.join(shared_data, "rte")
    task = tasks.get_task("rte")
    return data, tasks.read_split(task, data, "train"), tasks.read_split(task, data, "dev")


def _unlabelled_rows(train, dev):
    """``GOOD`` training pairs past the students' (labels dropped), and three the leak guard
    drops: an evaluation pair, an evaluation pair swapped, a pair holding an evaluation
    text that no training pair holds."""
    rows = [(e.text_a, e.text_b) for e in train[200:200 + GOOD]]
    return rows + [(dev[0].text_a, dev[0].text_b), (dev[1].text_b, dev[1].text_a),
                   (train[300].text_a, dev[2].text_b)]


def test_unlabelled_pairs_need_a_teacher_term(tmp_path, rte):
    data, train, dev = rte
    _write_tsv(tmp_path / "u.tsv", _unlabelled_rows(train, dev))
    run = virt_tf.pipeline_options("rte", "siamese", model_dir=str(tmp_path / "run"),
                                   data_dir=data, encoder_preset="tiny",
                                   unlabelled=str(tmp_path / "u.tsv"),
                                   **dict(OPTIONS, logit_beta=0.0))
    with pytest.raises(ConfigError, match=r"--unlabelled adds pairs without a gold label: "
                                          r"it needs a teacher term \(--logit_beta > 0"):
        virt_tf.train_pipeline(run)
    assert not os.path.exists(tmp_path / "run" / "teacher")


def test_a_file_the_guard_empties_is_refused_before_any_training(tmp_path, rte):
    data, _, dev = rte
    _write_tsv(tmp_path / "u.tsv", [(e.text_a, e.text_b) for e in dev[:3]])
    run = virt_tf.pipeline_options("rte", "siamese", model_dir=str(tmp_path / "run"),
                                   data_dir=data, encoder_preset="tiny",
                                   unlabelled=str(tmp_path / "u.tsv"), **OPTIONS)
    with pytest.raises(DataError, match=r"none of its 3 pairs is left to train on \(3 equal "
                                        r"a tune or evaluation pair"):
        virt_tf.train_pipeline(run)
    assert not os.path.exists(tmp_path / "run" / "teacher")


def test_the_command_refuses_a_missing_file_with_one_error_line(tmp_path, repo_dir, rte):
    proc = subprocess.run([sys.executable, "-m", "virt_tf.train", "--task=rte",
                           f"--data_dir={rte[0]}", f"--model_dir={tmp_path / 'run'}",
                           "--encoder_preset=tiny", "--logit_beta=1",
                           f"--unlabelled={tmp_path / 'missing.tsv'}"],
                          cwd=repo_dir, env=_env(repo_dir), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--unlabelled" in last and "missing.tsv" in last


@pytest.fixture(scope="module")
def trained(tmp_path_factory, repo_dir, rte):
    """``(model_dir, unlabelled_file, metrics, stdout)`` of ``python -m virt_tf.train
    --unlabelled=FILE``."""
    data, train, dev = rte
    root = tmp_path_factory.mktemp("unlabelled")
    path = root / "unlabelled.tsv"
    _write_tsv(path, _unlabelled_rows(train, dev))
    model_dir = root / "run"
    proc = subprocess.run([sys.executable, "-m", "virt_tf.train", "--task=rte",
                           "--model=siamese", f"--data_dir={data}", f"--model_dir={model_dir}",
                           "--encoder_preset=tiny", "--verbose=2", f"--unlabelled={path}",
                           *[f"--{k}={v}" for k, v in OPTIONS.items()]],
                          cwd=repo_dir, env=_env(repo_dir), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(model_dir / "metrics.json", encoding="utf-8") as f:
        return model_dir, path, json.load(f), proc.stdout


def test_the_student_trains_on_the_teacher_labelled_pairs(trained, rte):
    model_dir, _, metrics, _ = trained
    _, train, _ = rte
    assert metrics["unlabelled_pairs"] == GOOD
    assert metrics["extra_pairs"]["unlabelled"] == {
        "candidates": GOOD + 3, "eval_pair": 2, "eval_only_text": 1, "gold_pair": 0,
        "used": GOOD, "skipped_rows": 0}
    assert metrics["train_examples"] == 16 + GOOD
    assert metrics["teacher"]["train_examples"] == 16    # the teacher never sees them
    # the teacher labelled each of them once: its cached logits are the teacher's own
    with np.load(model_dir / "teacher_logits.npz") as saved:
        logits = saved["logits"]
    assert logits.shape == (16 + GOOD, 2)
    teacher = virt_tf.load(str(model_dir / "teacher"))
    pairs = train[200:200 + GOOD]
    probs = teacher.predict([e.text_a for e in pairs], [e.text_b for e in pairs])
    np.testing.assert_allclose(probs, _softmax(logits[16:]), atol=1e-5)
    with open(model_dir / "checkpoints" / "stage.json", encoding="utf-8") as f:
        settings = json.load(f)
    assert settings["unlabelled_data"] == fingerprint_examples(
        [Example(e.text_a, e.text_b, UNLABELLED) for e in pairs])
    with open(model_dir / "teacher" / "checkpoints" / "stage.json", encoding="utf-8") as f:
        assert json.load(f)["unlabelled_data"] is None


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_a_changed_file_is_refused_by_name_and_the_same_one_reused(trained, rte):
    model_dir, path, metrics, _ = trained
    data, _, _ = rte
    run = virt_tf.pipeline_options("rte", "siamese", model_dir=str(model_dir), data_dir=data,
                                   encoder_preset="tiny", verbose=2, unlabelled=str(path),
                                   **OPTIONS)
    again = virt_tf.train_pipeline(run)   # the same file: the finished run is reused
    assert again["loss"] == metrics["loss"] and again["unlabelled_pairs"] == GOOD
    original = path.read_text(encoding="utf-8")
    try:
        lines = original.splitlines(keepends=True)
        path.write_text("".join(lines[:1] + lines[2:]), encoding="utf-8")  # one pair fewer
        with pytest.raises(StageError) as raised:
            virt_tf.train_pipeline(run)
    finally:
        path.write_text(original, encoding="utf-8")
    message = str(raised.value)
    assert message.startswith(f"{model_dir}: holds a finished run of a different setting")
    assert "unlabelled_data '" in message and "train_data '" in message
    assert f"train_examples {16 + GOOD} -> {15 + GOOD}" in message


def test_the_student_evaluates_and_exports(trained, tmp_path, repo_dir, rte):
    model_dir, _, metrics, _ = trained
    env = _env(repo_dir)
    proc = subprocess.run([sys.executable, "-m", "virt_tf.evaluate", f"--model_dir={model_dir}",
                           f"--data_dir={rte[0]}", "--max_eval_examples=16"],
                          cwd=repo_dir, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rescored = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert rescored["examples"] == 16
    assert rescored["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-9)
    export_dir = tmp_path / "serving"
    proc = subprocess.run([sys.executable, "-m", "virt_tf.export", f"--model_dir={model_dir}",
                           f"--export_dir={export_dir}", "--name=student"],
                          cwd=repo_dir, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (export_dir / "student" / "1" / "saved_model.pb").is_file()
    shutil.rmtree(export_dir)
