"""The one-command pipeline (teacher, then VIRT student) and re-scoring with evaluate."""
import json
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
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["teacher"]["model"] == "cross" and metrics["teacher"]["examples"] == 40
    assert metrics["steps_per_epoch"] == 7 and metrics["total_steps"] == 7
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
    assert rescored["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-9)


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
