"""A failed checkpoint or model write loses nothing: the rerun continues from what was saved.

``--debug_write_fault`` makes one write of the last stage fail as a full disk
(ENOSPC) or a read-only folder (EACCES) would, after a part of it reached the disk
(`virt_tf.training.safe_writes.inject_write_fault`). Three runs of the tiny preset (32
training pairs, batch 8: 4 steps an epoch, 2 epochs, a checkpoint every step):

* the pipeline (teacher, then VIRT student), the student's checkpoint of step 3
  fails with ENOSPC: the finished teacher stays as it is and is reused, the
  student's ``ckpt-2`` stays the latest, and the rerun resumes from it;
* the cross-encoder, the checkpoint of step 5 fails with EACCES: ``ckpt-4`` is
  kept; the rerun resumes from it, and (a second fault, to save a process) its
  final model files fail with ENOSPC after the last step: the trained weights stay
  in ``ckpt-8``, and the third run only saves (no step is run again: the training
  log is unchanged).

Each failure is one ``error: WriteError:`` line (exit 2) naming the folder, the
reason and what was kept, and leaves no partly written file behind. Each rerun (the
same command without the fault: the space was freed) must finish.
"""
import concurrent.futures
import glob
import os
import subprocess
import sys

import pytest

from conftest import latest_checkpoint_step  # noqa: E402

COMMON = ["--task=rte", "--encoder_preset=tiny", "--epochs=2", "--max_train_examples=32",
          "--max_eval_examples=16", "--batch_size=8", "--checkpoint_steps=1",
          "--tune_fraction=0", "--verbose=2", "--seed=5"]
# scenario -> model, the fault of each run but the last (which has none)
SCENARIOS = {"checkpoint_enospc_pipeline": ("virt", ["checkpoint@3:ENOSPC"]),
             "checkpoint_eacces_then_final_save_enospc": (
                 "cross", ["checkpoint@5:EACCES", "model:ENOSPC"])}


def _run(repo_dir, data, model_dir, model, *extra):
    command = [sys.executable, "-m", "virt_tf.train", f"--data_dir={data}",
               f"--model_dir={model_dir}", f"--model={model}", *COMMON, *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=repo_dir)
    return subprocess.run(command, cwd=repo_dir, env=env, capture_output=True, text=True,
                          timeout=900)


def _snapshot(run_dir):
    """What the first run left: latest steps, files, the training log, the teacher."""
    teacher = run_dir / "teacher"
    out = {"latest": latest_checkpoint_step(str(run_dir)),
           "files": sorted(os.path.relpath(p, run_dir) for p in
                           glob.glob(str(run_dir / "**" / "*"), recursive=True))}
    log = run_dir / "train_log.jsonl"
    out["train_log"] = log.read_text(encoding="utf-8") if log.exists() else None
    if (teacher / "metrics.json").exists():
        out["teacher_mtime"] = os.stat(teacher / "metrics.json").st_mtime_ns
        out["teacher_latest"] = latest_checkpoint_step(str(teacher))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, repo_dir, shared_data):
    """Each scenario: the failing run, a snapshot of its folder, then the rerun."""
    root = tmp_path_factory.mktemp("write_faults")
    data = os.path.join(shared_data, "rte")

    def scenario(name):
        model, faults = SCENARIOS[name]
        run_dir = root / name
        runs, snapshots = [], []
        for fault in faults:
            runs.append(_run(repo_dir, data, run_dir, model, f"--debug_write_fault={fault}"))
            snapshots.append(_snapshot(run_dir))
        runs.append(_run(repo_dir, data, run_dir, model))
        return {"dir": run_dir, "runs": runs, "snapshots": snapshots}

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(scenario, name) for name in SCENARIOS}
        return {name: f.result() for name, f in futures.items()}


def _error_line(proc):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.rstrip("\n").splitlines()
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    assert errors[0].startswith("error: WriteError: "), errors[0]
    return errors[0]


def _no_partial_files(files, step=None):
    partial = [f for f in files if ".tmp" in os.path.basename(f)]
    if step is not None:
        partial += [f for f in files if os.path.basename(f).startswith(f"ckpt-{step}")]
    assert not partial, partial


def _rerun_finishes(r):
    rerun = r["runs"][-1]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (r["dir"] / "metrics.json").exists() and (r["dir"] / "model.weights.h5").exists()
    assert latest_checkpoint_step(str(r["dir"])) == 8
    return rerun.stderr


def test_checkpoint_fault_in_the_student_keeps_the_teacher_and_the_last_checkpoint(runs):
    r = runs["checkpoint_enospc_pipeline"]
    line = _error_line(r["runs"][0])
    ckpt_dir = r["dir"] / "checkpoints"
    assert f"{ckpt_dir}: could not write the checkpoint of step 3: " in line, line
    assert "No space left on device" in line and "the disk is full" in line, line
    assert f"the last good checkpoint {ckpt_dir / 'ckpt-2'} is kept" in line, line
    snap = r["snapshots"][0]
    assert snap["latest"] == 2
    _no_partial_files(snap["files"], step=3)
    assert "metrics.json" not in snap["files"] and "model.weights.h5" not in snap["files"]
    # the teacher stage had finished: it is intact and reused, not trained again
    assert snap["teacher_latest"] == 8 and "teacher/model.weights.h5" in snap["files"]
    stderr = _rerun_finishes(r)
    teacher = r["dir"] / "teacher"
    assert f"{teacher}: finished earlier, reusing it" in stderr
    assert f"resuming {r['dir']} at step 2 of 8" in stderr
    assert os.stat(teacher / "metrics.json").st_mtime_ns == snap["teacher_mtime"]


def test_checkpoint_fault_on_a_read_only_folder_keeps_the_last_checkpoint(runs):
    r = runs["checkpoint_eacces_then_final_save_enospc"]
    line = _error_line(r["runs"][0])
    ckpt_dir = r["dir"] / "checkpoints"
    assert f"{ckpt_dir}: could not write the checkpoint of step 5: " in line, line
    assert "Permission denied" in line and "not writable" in line, line
    assert f"the last good checkpoint {ckpt_dir / 'ckpt-4'} is kept" in line, line
    snap = r["snapshots"][0]
    assert snap["latest"] == 4
    _no_partial_files(snap["files"], step=5)
    # the next run (space freed) resumes from it and trains to the end
    assert f"resuming {r['dir']} at step 4 of 8" in r["runs"][1].stderr
    assert r["snapshots"][1]["latest"] == 8


def test_final_save_fault_keeps_the_trained_weights_and_the_rerun_only_saves(runs):
    r = runs["checkpoint_eacces_then_final_save_enospc"]
    line = _error_line(r["runs"][1])
    assert f"{r['dir']}: could not write the trained model: " in line, line
    assert "No space left on device" in line, line
    assert f"the trained weights are kept in {r['dir'] / 'checkpoints' / 'ckpt-8'}" in line
    snap = r["snapshots"][1]
    assert snap["latest"] == 8
    _no_partial_files(snap["files"])
    assert "metrics.json" not in snap["files"] and "model.weights.h5" not in snap["files"]
    stderr = _rerun_finishes(r)
    assert f"resuming {r['dir']} at step 8 of 8" in stderr
    # no step was trained again: the training log is the one of the first run
    assert snap["train_log"] and \
        (r["dir"] / "train_log.jsonl").read_text(encoding="utf-8") == snap["train_log"]
    assert "Epoch 2/2" not in r["runs"][2].stdout and "Epoch 2/2" in r["runs"][1].stdout


def test_a_real_enospc_in_the_weights_writer_is_a_write_error_and_leaves_no_part(tmp_path):
    """No injection: Keras' HDF5 writer hits a real ENOSPC from the kernel (its temporary
    file is a link to /dev/full, where every write fails so)."""
    from virt_tf.config import preset
    from virt_tf.errors import WriteError
    from virt_tf.modeling.encoder import EncoderConfig
    from virt_tf.models import registry
    from virt_tf.training.safe_writes import final_write

    model = registry.build_now(registry.build_classifier(
        "cross", EncoderConfig.from_dict(preset("tiny")), 2))
    tmp = tmp_path / "model.weights.h5.tmp.weights.h5"
    os.symlink("/dev/full", tmp)
    with pytest.raises(WriteError) as info:
        with final_write(str(tmp_path), str(tmp_path / "checkpoints")):
            model.save_weights(str(tmp))
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: could not write the trained model: "
                              "No space left on device (the disk is full"), message
    assert "\n" not in message
    assert os.listdir(tmp_path) == []


def test_a_rerun_removes_what_a_killed_process_left_half_written(tmp_path):
    """SIGKILL during `write_text_atomic` or a checkpoint save leaves a temporary part
    (named by the dead process); the next start of the stage removes it and keeps the rest."""
    from virt_tf.training.safe_writes import remove_stale_parts

    ckpt = tmp_path / "checkpoints"
    (ckpt / "ckpt-4_temp").mkdir(parents=True)
    (ckpt / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    stale = [ckpt / "clock.json.tmp6602", tmp_path / "model.weights.h5.tmp.weights.h5",
             tmp_path / "train_log.jsonl.tmp77"]
    kept = [ckpt / "clock.json", ckpt / "checkpoint", ckpt / "ckpt-2.index",
            tmp_path / "train_log.jsonl", tmp_path / "teacher" / "x.tmp1"]
    (tmp_path / "teacher").mkdir()
    for path in stale + kept:
        path.write_text("{}", encoding="utf-8")
    remove_stale_parts(str(tmp_path), str(ckpt))
    assert [p for p in stale if p.exists()] == []
    assert not (ckpt / "ckpt-4_temp").exists()
    assert all(p.exists() for p in kept)
