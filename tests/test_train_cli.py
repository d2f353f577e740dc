"""The one-command pipeline (teacher, then VIRT student) and re-scoring with evaluate."""
import json
import math
import os
import subprocess
import sys

import pytest


def _run(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m"] + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, repo_dir, shared_data):
    out = tmp_path_factory.mktemp("pipeline") / "rte_virt"
    proc = _run(["virt_tf.train", "--task=rte", f"--data_dir={os.path.join(shared_data, 'rte')}",
                 f"--model_dir={out}", "--encoder_preset=tiny", "--epochs=1",
                 "--max_train_examples=56", "--max_eval_examples=40", "--batch_size=8",
                 "--verbose=2", "--virt_alpha=0.5"], repo_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_pipeline_trains_teacher_then_student(pipeline_run):
    out, proc = pipeline_run
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["model"] == "virt" and metrics["examples"] == 40
    assert metrics["teacher"]["model"] == "cross" and metrics["teacher"]["examples"] == 40
    assert metrics["steps_per_epoch"] == 7 and metrics["total_steps"] == 7
    for stage in (metrics, metrics["teacher"]):
        assert stage["train_examples"] == 56 and stage["total_steps"] == 7
        # accuracy counts right answers among the 40 examples scored
        assert stage["accuracy"] * 40 == pytest.approx(round(stage["accuracy"] * 40), abs=1e-6)
        # the mean dev cross-entropy of a 2-label model 7 small steps from its init stays
        # near ln 2; NaN/Inf or a blow-up means the run went wrong
        assert math.isfinite(stage["loss"]) and 0.1 < stage["loss"] < 2.0, stage["loss"]
    for d in (out, out / "teacher"):
        for name in ("model.weights.h5", "model_config.json", "vocab.txt", "metrics.json"):
            assert (d / name).exists(), d / name
        assert os.listdir(d / "logs"), "TensorBoard logs missing"
    assert "virt rte dev: accuracy" in proc.stdout


def test_evaluate_rescores_the_saved_model(pipeline_run, repo_dir, shared_data):
    out, _ = pipeline_run
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    proc = _run(["virt_tf.evaluate", f"--model_dir={out}",
                 f"--data_dir={os.path.join(shared_data, 'rte')}", "--max_eval_examples=40"],
                repo_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rescored = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert rescored["examples"] == 40
    assert rescored["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-9)


def test_saved_model_reproduces_the_recorded_loss(pipeline_run, shared_data):
    """The dev cross-entropy in metrics.json is a fingerprint of the weights (accuracy over 40
    examples is not): the saved directory, reloaded, must give it back."""
    import numpy as np
    from virt_tf.inference.matcher import load

    out, _ = pipeline_run
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    matcher = load(str(out))
    examples = matcher.read_split(os.path.join(shared_data, "rte"))[:40]
    probs = matcher.predict([e.text_a for e in examples], [e.text_b for e in examples])
    labels = np.array([e.label for e in examples])
    picked = probs[np.arange(len(labels)), labels].astype(np.float64)
    assert float(-np.mean(np.log(picked))) == pytest.approx(metrics["loss"], abs=1e-5)
    assert float(np.mean(probs.argmax(axis=1) == labels)) == pytest.approx(metrics["accuracy"])


def test_reuses_a_finished_teacher(pipeline_run, repo_dir, shared_data, tmp_path):
    out, _ = pipeline_run
    proc = _run(["virt_tf.train", "--task=rte", f"--data_dir={os.path.join(shared_data, 'rte')}",
                 f"--model_dir={tmp_path / 'student'}", f"--teacher_dir={out / 'teacher'}",
                 "--encoder_preset=tiny", "--epochs=1", "--max_train_examples=16",
                 "--max_eval_examples=8", "--batch_size=8", "--verbose=2",
                 "--model=siamese", "--virt_alpha=0.5"], repo_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "student" / "teacher").exists()
    with open(tmp_path / "student" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["teacher"]["dir"] == str(out / "teacher")
    assert metrics["model"] == "siamese"
