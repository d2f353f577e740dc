"""A finished stage is reused only when it ran the settings of the new command: otherwise one
error naming each differing setting with both values, and nothing in the folder changes."""
import os
import subprocess
import sys

import pytest

import virt_tf
from virt_tf.errors import StageError

# A tiny pipeline: a cross-encoder teacher into DIR/teacher, then a Siamese with L_virt.
OPTIONS = {"epochs": 1, "max_train_examples": 16, "max_eval_examples": 16,
           "max_tune_examples": 8, "batch_size": 8, "virt_alpha": 0.5, "seed": 5,
           "verbose": 2, "encoder_preset": "tiny"}


def _run(model_dir, data_dir, model="siamese", **changes):
    options = dict(OPTIONS, **changes)
    return virt_tf.train_pipeline(virt_tf.pipeline_options(
        "rte", model, model_dir=str(model_dir), data_dir=data_dir, **options))


def _snapshot(directory):
    """Every file below ``directory`` with its size and modification time."""
    out = {}
    for folder, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            out[os.path.relpath(path, directory)] = (stat.st_size, stat.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory, shared_data):
    """``(directory, data_dir, metrics)`` of a finished teacher -> student pipeline."""
    directory = tmp_path_factory.mktemp("reuse") / "run"
    data = os.path.join(shared_data, "rte")
    return directory, data, _run(directory, data)


def test_the_same_command_reuses_the_finished_run(finished):
    directory, data, metrics = finished
    before = _snapshot(directory)
    again = _run(directory, data)
    assert {k: again[k] for k in ("accuracy", "loss")} == {k: metrics[k] for k in
                                                           ("accuracy", "loss")}
    assert again["teacher"]["loss"] == metrics["teacher"]["loss"]
    changed = {k for k, v in _snapshot(directory).items() if before.get(k) != v}
    assert changed <= {"metrics.json"}  # the pipeline writes the same results again


@pytest.mark.parametrize("changes, stage, named", [
    # a student option (the teacher stage runs without L_virt: it is reused)
    ({"virt_alpha": 0.25}, "student", "virt_alpha 0.5 -> 0.25"),
    ({"learning_rate": 1e-4}, "teacher", "learning_rate 5e-05 -> 0.0001"),
    # other training pairs: the teacher stage refuses first
    ({"max_train_examples": 24}, "teacher", "train_examples 16 -> 24"),
    # what the run would score differs from what the finished stage scored
    ({"max_eval_examples": 8}, "teacher", "eval examples 16 -> 8"),
])
def test_a_changed_setting_is_refused_by_name(finished, changes, stage, named):
    directory, data, _ = finished
    before = _snapshot(directory)
    with pytest.raises(StageError) as raised:
        _run(directory, data, **changes)
    message = str(raised.value)
    where = directory / "teacher" if stage == "teacher" else directory
    assert message.startswith(f"{where}: holds a finished run of a different setting (")
    assert named in message
    assert _snapshot(directory) == before  # nothing in the folder changed


def test_another_model_on_a_finished_folder_is_refused(finished):
    directory, data, _ = finished
    before = _snapshot(directory)
    with pytest.raises(StageError, match=r"model 'siamese' -> 'cross'"):
        _run(directory, data, model="cross", virt_alpha=0.0)
    assert _snapshot(directory) == before


def test_another_teacher_is_refused(finished, tmp_path):
    directory, data, _ = finished
    other = tmp_path / "other_teacher"
    _run(other, data, model="cross", virt_alpha=0.0, seed=6)
    before = _snapshot(directory)
    with pytest.raises(StageError, match=r"teacher '[0-9a-f]{16}' -> '[0-9a-f]{16}'"):
        _run(directory, data, teacher_dir=str(other))
    assert _snapshot(directory) == before


def test_the_command_prints_one_error_line_and_exits_2(finished, repo_dir):
    directory, data, _ = finished
    flags = [f"--{k}={v}" for k, v in OPTIONS.items()]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=repo_dir)
    proc = subprocess.run([sys.executable, "-m", "virt_tf.train", "--task=rte", "--model=cross",
                           f"--data_dir={data}", f"--model_dir={directory}", *flags,
                           "--virt_alpha=0"], cwd=repo_dir, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: StageError: {directory}: holds a finished run of a "
                           "different setting (") and "model 'siamese' -> 'cross'" in last
    assert "accuracy" not in proc.stdout  # no result printed under the wrong name
