"""tf.distribute: the same training on two logical CPU devices and on two worker processes.

Each run is the real CLI in a subprocess (a strategy must be chosen before
TensorFlow places anything). Dropout is off (``--dropout_rate=0``) so that one
device and two replicas compute the same thing: with dropout on, each replica
draws its own masks.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import latest_checkpoint_step, read_h5_weights

# float32 sums over 8 pairs split 4 + 4 and all-reduced differ from one device's
# sums in the last bits; after a few Adam steps weights agree to this.
WEIGHT_TOL = 2e-5
LOSS_TOL = 1e-5


def _env(repo_dir, **extra):
    return dict(os.environ, PYTHONPATH=repo_dir, TF_CPP_MIN_LOG_LEVEL="2", **extra)


def _command(shared_data, out, *extra, model="cross"):
    return [sys.executable, "-m", "virt_tf.train", "--task=rte",
            f"--data_dir={os.path.join(shared_data, 'rte')}", f"--model_dir={out}",
            f"--model={model}", "--encoder_preset=tiny", "--max_train_examples=48",
            "--max_eval_examples=24", "--batch_size=8", "--dropout_rate=0", "--verbose=2",
            "--seed=0", *extra]


def _run(cmd, repo_dir, **env):
    proc = subprocess.run(cmd, cwd=repo_dir, env=_env(repo_dir, **env), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _losses(model_dir):
    with open(os.path.join(model_dir, "train_log.jsonl"), encoding="utf-8") as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if r["kind"] == "train"}


def _max_diff(a, b):
    wa, wb = read_h5_weights(a), read_h5_weights(b)
    assert sorted(wa) == sorted(wb) and len(wa) > 20
    return max(float(np.max(np.abs(wa[k].astype(np.float64) - wb[k]))) for k in wa)


@pytest.fixture(scope="module")
def single_device(tmp_path_factory, repo_dir, shared_data):
    """The reference: teacher and VIRT student on one device (default strategy)."""
    root = tmp_path_factory.mktemp("single")
    _run(_command(shared_data, root / "teacher", "--epochs=2"), repo_dir)
    _run(_command(shared_data, root / "virt", "--epochs=2", "--virt_alpha=0.5",
                  f"--teacher_dir={root / 'teacher'}", model="virt"), repo_dir)
    return root


def test_mirrored_two_devices_match_one_device(single_device, tmp_path, repo_dir, shared_data):
    """MirroredStrategy over 2 logical CPUs, global batch 8 (4 a replica): the same losses
    and weights as one device at batch 8, for the cross-encoder and the VIRT-encoder."""
    mirrored = ["--distribution_strategy=mirrored", "--cpu_devices=2", "--epochs=2"]
    _run(_command(shared_data, tmp_path / "teacher", *mirrored), repo_dir)
    proc = _run(_command(shared_data, tmp_path / "virt", *mirrored, "--virt_alpha=0.5",
                         f"--teacher_dir={single_device / 'teacher'}", model="virt"), repo_dir)
    assert "replicas" not in proc.stderr or "2" in proc.stderr
    for stage in ("teacher", "virt"):
        one, two = _losses(single_device / stage), _losses(tmp_path / stage)
        assert sorted(one) == sorted(two) and len(one) >= 2
        for step in one:
            assert two[step] == pytest.approx(one[step], abs=LOSS_TOL), (stage, step)
        assert _max_diff(single_device / stage / "model.weights.h5",
                         tmp_path / stage / "model.weights.h5") < WEIGHT_TOL, stage
        m1 = json.loads((single_device / stage / "metrics.json").read_text())
        m2 = json.loads((tmp_path / stage / "metrics.json").read_text())
        assert m2["accuracy"] == m1["accuracy"] and m2["total_steps"] == m1["total_steps"]
    # the VIRT term itself was trained on both: its logged value is there and equal
    with open(tmp_path / "virt" / "train_log.jsonl", encoding="utf-8") as f:
        assert all(r.get("virt_loss", 0) > 0 for r in map(json.loads, f))
    _encode_and_score_match_the_loaded_model(tmp_path / "virt", single_device / "virt",
                                             tmp_path)


def _encode_and_score_match_the_loaded_model(trained, reference, tmp_path):
    """A directory written under a strategy serves as any other: the state cache and
    online scoring give the loaded model's probabilities (and one device's)."""
    import virt_tf
    from virt_tf.inference.matcher import encode_file
    from virt_tf.inference.scoring import score_file

    texts = {"q1": "a man plays a guitar", "q2": "the cat is asleep on the warm mat",
             "d1": "someone is making music", "d2": "an animal sleeps"}
    pairs = [("q1", "d1"), ("q2", "d2"), ("q1", "d2")]
    (tmp_path / "texts.tsv").write_text(
        "id\ttext\n" + "".join(f"{k}\t{v}\n" for k, v in texts.items()), encoding="utf-8")
    (tmp_path / "pairs.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in pairs),
                                        encoding="utf-8")
    cache = str(tmp_path / "cache.npz")
    encode_file(str(trained), str(tmp_path / "texts.tsv"), cache, show_progress=False)
    _, probs, _ = score_file(str(trained), [cache], str(tmp_path / "pairs.tsv"),
                             show_progress=False)
    a, b = [texts[x] for x, _ in pairs], [texts[y] for _, y in pairs]
    np.testing.assert_allclose(probs, virt_tf.load(str(trained)).predict(a, b), atol=1e-5)
    np.testing.assert_allclose(probs, virt_tf.load(str(reference)).predict(a, b), atol=1e-4)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _start_workers(cmd, repo_dir, ports, logs):
    procs = []
    for i in range(2):
        log = open(logs[i], "w", encoding="utf-8")  # pylint: disable=consider-using-with
        procs.append((subprocess.Popen(cmd, cwd=repo_dir, stdout=log, stderr=subprocess.STDOUT,
                                       env=_env(repo_dir, TF_CONFIG=_tf_config(ports, i))),
                      log))
    return procs


def _wait(procs, timeout=900):
    deadline = time.time() + timeout
    for proc, log in procs:
        proc.wait(timeout=max(1, deadline - time.time()))
        log.close()
    return [proc.returncode for proc, _ in procs]


def test_two_worker_processes_end_with_identical_weights(single_device, tmp_path, repo_dir,
                                                         shared_data):
    """MultiWorkerMirroredStrategy over 127.0.0.1, one replica a worker: both workers end
    with the same weights, those of one device, and only the chief writes the directory."""
    dump = tmp_path / "weights"
    cmd = _command(shared_data, tmp_path / "virt", "--epochs=2", "--virt_alpha=0.5",
                   f"--teacher_dir={single_device / 'teacher'}",
                   "--distribution_strategy=multi_worker_mirrored",
                   f"--debug_worker_weights={dump}", model="virt")
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    codes = _wait(_start_workers(cmd, repo_dir, _free_ports(2), logs))
    assert codes == [0, 0], [l.read_text()[-3000:] for l in logs]
    assert _max_diff(dump / "worker_0.weights.h5", dump / "worker_1.weights.h5") == 0.0
    assert _max_diff(dump / "worker_0.weights.h5",
                     single_device / "virt" / "model.weights.h5") < WEIGHT_TOL
    assert (tmp_path / "virt" / "metrics.json").exists()
    assert "the chief writes" in logs[1].read_text()
    assert not list((tmp_path / "virt" / "checkpoints").glob("worker_*"))


def test_killed_workers_restarted_with_the_same_command_resume_and_finish(
        single_device, tmp_path, repo_dir, shared_data):
    """SIGKILL both workers after a checkpoint (a worker's death stops the job's collectives),
    start both again with the same command: they resume from the chief's checkpoint and end
    where one device ends (the fixture's teacher: the same run on one device).

    The kill lands long before the end: after step 2's checkpoint come 4 more steps, then
    the first epoch's validation (seconds of graph set-up) and a second epoch."""
    out = tmp_path / "teacher"
    cmd = _command(shared_data, out, "--epochs=2", "--checkpoint_steps=2",
                   "--distribution_strategy=multi_worker_mirrored")
    ports = _free_ports(2)
    logs = [tmp_path / "a0.log", tmp_path / "a1.log"]
    procs = _start_workers(cmd, repo_dir, ports, logs)
    deadline = time.time() + 600
    while time.time() < deadline and latest_checkpoint_step(out) < 2 and procs[0][0].poll() is None:
        time.sleep(0.01)
    for proc, log in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    killed_at = latest_checkpoint_step(out)
    assert 2 <= killed_at and not (out / "metrics.json").exists(), \
        "the run ended before it could be killed"
    logs = [tmp_path / "b0.log", tmp_path / "b1.log"]
    codes = _wait(_start_workers(cmd, repo_dir, _free_ports(2), logs))
    assert codes == [0, 0], [l.read_text()[-3000:] for l in logs]
    assert f"resuming {out} at step {killed_at}" in logs[0].read_text()
    assert _max_diff(out / "model.weights.h5",
                     single_device / "teacher" / "model.weights.h5") < WEIGHT_TOL
