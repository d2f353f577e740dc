"""`virt_tf.train_pipeline`: the command's teacher -> student pipeline, called from Python."""
import json
import os
import subprocess
import sys

import pytest

import virt_tf
from virt_tf.errors import ConfigError

# A tiny pipeline: a cross-encoder teacher, then a Siamese student with L_virt.
OPTIONS = {"epochs": 1, "max_train_examples": 16, "max_eval_examples": 16,
           "max_tune_examples": 8, "batch_size": 8, "virt_alpha": 0.5, "seed": 5}


def _flags(options):
    return [f"--{k}={v}" for k, v in options.items()]


def _command(model_dir, data_dir, repo_dir, options, model="siamese"):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=repo_dir)
    return subprocess.run([sys.executable, "-m", "virt_tf.train", "--task=rte",
                           f"--model={model}", f"--data_dir={data_dir}",
                           f"--model_dir={model_dir}", "--encoder_preset=tiny", "--verbose=2",
                           *_flags(options)], cwd=repo_dir, env=env, capture_output=True,
                          text=True, timeout=900)


def _metrics(directory):
    with open(os.path.join(directory, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def _scores(metrics):
    """What a run computed: accuracy and loss of the evaluation and tune splits."""
    return {k: metrics[k] for k in ("accuracy", "loss", "examples")} | {
        "tune": {k: metrics["tune"][k] for k in ("accuracy", "loss")}}


def test_the_pipeline_from_python_writes_the_metrics_of_the_command(tmp_path, repo_dir,
                                                                    shared_data):
    data = os.path.join(shared_data, "rte")
    proc = _command(tmp_path / "command", data, repo_dir, OPTIONS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = virt_tf.pipeline_options("rte", "siamese", model_dir=str(tmp_path / "python"),
                                   data_dir=data, encoder_preset="tiny", verbose=2, **OPTIONS)
    returned = virt_tf.train_pipeline(run)
    command, python = _metrics(tmp_path / "command"), _metrics(tmp_path / "python")
    assert returned == python  # what it returns is what it wrote
    assert python["model"] == "siamese" and python["teacher"]["model"] == "cross"
    assert _scores(python) == _scores(command)  # exactly: the loss fingerprints the weights
    assert _scores(python["teacher"]) == _scores(command["teacher"])
    for directory in (tmp_path / "python", tmp_path / "python" / "teacher"):
        assert {"model.weights.h5", "model_config.json", "vocab.txt", "model.keras",
                "predictions.npz", "train_log.jsonl", "metrics.json",
                "checkpoints"} <= set(os.listdir(directory))
    assert proc.stdout.strip().splitlines()[-1] == (
        f"siamese rte dev: accuracy {command['accuracy']:.4f} "
        f"(teacher {command['teacher']['accuracy']:.4f})")


def test_a_bad_option_raises_the_error_the_command_prints(tmp_path, repo_dir, shared_data):
    data = os.path.join(shared_data, "rte")
    # checked when the options are built, as the command checks its flags
    proc = _command(tmp_path / "bad", data, repo_dir, {"batch_size": 0})
    assert proc.returncode == 2
    with pytest.raises(ConfigError) as info:
        virt_tf.pipeline_options("rte", "siamese", model_dir=str(tmp_path / "bad"),
                                 data_dir=data, batch_size=0)
    assert proc.stderr.strip().splitlines()[-1] == f"error: ConfigError: {info.value}"
    # checked by the pipeline: augmentation needs a teacher term
    options = {"augment": "pool", "virt_alpha": 0.0, "max_train_examples": 8}
    proc = _command(tmp_path / "augment", data, repo_dir, options)
    assert proc.returncode == 2
    run = virt_tf.pipeline_options("rte", "siamese", model_dir=str(tmp_path / "augment_py"),
                                   data_dir=data, encoder_preset="tiny", **options)
    with pytest.raises(ConfigError) as info:
        virt_tf.train_pipeline(run)
    assert "--augment adds pairs without a gold label" in str(info.value)
    assert proc.stderr.strip().splitlines()[-1] == f"error: ConfigError: {info.value}"
