"""Reliability: resume after SIGKILL, NaN stops, complete checkpoints, safe loading.

The kill test runs the two-stage pipeline (teacher, then VIRT student) on a
tiny encoder in a subprocess and kills it with SIGKILL at three points: in the
teacher stage mid-epoch, in the student stage in the middle of a checkpoint
save, and while the finished student writes its model files. It also fakes a
torn checkpoint on disk. After each kill the same command is run again; the
end result is compared with an uninterrupted run of the same seed.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import latest_checkpoint_step, read_h5_weights  # noqa: E402

# 32 examples, batch 8: 4 steps an epoch, 2 epochs, a checkpoint every step.
COMMON = ["--task=rte", "--encoder_preset=tiny", "--epochs=2", "--max_train_examples=32",
          "--max_eval_examples=16", "--batch_size=8", "--checkpoint_steps=1",
          "--tune_fraction=0", "--verbose=2", "--seed=3"]
TIMING_KEYS = {"train_seconds", "eval_seconds", "wall_seconds"}


def _env(repo_dir):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=repo_dir)


def _command(model_dir, data_dir, *extra):
    return [sys.executable, "-m", "virt_tf.train", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", *COMMON, *extra]


def _run(command, repo_dir, timeout=900):
    return subprocess.run(command, cwd=repo_dir, env=_env(repo_dir), capture_output=True,
                          text=True, timeout=timeout)


def _saving_step(stage_dir):
    """Step of a checkpoint being written right now (TensorFlow's `ckpt-N_temp` folder)."""
    for path in glob.glob(os.path.join(stage_dir, "checkpoints", "ckpt-*_temp")):
        m = re.search(r"ckpt-(\d+)_temp$", path)
        if m:
            return int(m.group(1))
    return None


def _run_and_kill(command, repo_dir, log_path, stage_dir, at_step, during_save=False,
                  when_file=None):
    """Start ``command``; SIGKILL it once ``stage_dir`` has a checkpoint of ``at_step``.

    With ``during_save`` it aims at the middle of a save (a checkpoint of step
    >= ``at_step`` being written), falling back to the step after; with
    ``when_file`` it kills as soon as that file appears. Returns whether the
    kill landed while a checkpoint was being written.
    """
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, cwd=repo_dir, env=_env(repo_dir), stdout=log,
                                stderr=subprocess.STDOUT)
        mid_save = False
        deadline = time.time() + 240
        try:
            while proc.poll() is None and time.time() < deadline:
                if when_file is not None:
                    if os.path.exists(when_file):
                        break
                    time.sleep(0.002)
                    continue
                saving = _saving_step(stage_dir) if during_save else None
                if saving is not None and saving >= at_step:
                    mid_save = True
                    break
                if latest_checkpoint_step(stage_dir) >= at_step + (1 if during_save else 0):
                    break
                time.sleep(0.002 if during_save else 0.01)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, open(log_path, encoding="utf-8").read()[-3000:]
    return mid_save


def _max_weight_diff(a_path, b_path):
    a, b = read_h5_weights(a_path), read_h5_weights(b_path)
    assert sorted(a) == sorted(b) and len(a) > 20
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def _flatten(metrics, prefix=""):
    out = {}
    for k, v in metrics.items():
        if k in TIMING_KEYS or k == "dir":
            continue
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _assert_same_metrics(a, b, tol=1e-6):
    fa, fb = _flatten(a), _flatten(b)
    assert sorted(fa) == sorted(fb)
    for k, v in fa.items():
        if isinstance(v, float):
            assert fb[k] == pytest.approx(v, abs=tol), k
        else:
            assert fb[k] == v, k


def test_sigkill_anywhere_then_rerun_matches_an_uninterrupted_run(tmp_path, repo_dir,
                                                                    shared_data):
    data = os.path.join(shared_data, "rte")
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    teacher_dir = run_dir / "teacher"

    # The uninterrupted reference runs alongside (separate processes, same seed).
    ref_log = open(tmp_path / "ref.log", "w", encoding="utf-8")  # pylint: disable=consider-using-with
    ref = subprocess.Popen(_command(ref_dir, data, "--model=virt"), cwd=repo_dir,
                           env=_env(repo_dir), stdout=ref_log, stderr=subprocess.STDOUT)
    try:
        _kill_and_resume(tmp_path, repo_dir, data, run_dir, teacher_dir)
    finally:
        ref.wait(timeout=900)
        ref_log.close()
    assert ref.returncode == 0, (tmp_path / "ref.log").read_text(encoding="utf-8")[-3000:]

    with open(ref_dir / "metrics.json", encoding="utf-8") as f:
        ref_metrics = json.load(f)
    with open(run_dir / "metrics.json", encoding="utf-8") as f:
        run_metrics = json.load(f)
    _assert_same_metrics(ref_metrics, run_metrics)
    assert "loss" in run_metrics and "loss" in run_metrics["teacher"]
    for sub in ("teacher", "."):
        diff = _max_weight_diff(ref_dir / sub / "model.weights.h5",
                                run_dir / sub / "model.weights.h5")
        print(f"{sub}: max |weight difference| resumed vs uninterrupted = {diff}")
        assert diff <= 1e-6
    # Final files were written under temporary names and renamed: none is left over.
    leftovers = [p for p in glob.glob(str(run_dir / "**" / "*"), recursive=True)
                 if ".tmp" in os.path.basename(p)]
    assert not leftovers


def _kill_and_resume(tmp_path, repo_dir, data, run_dir, teacher_dir):
    command = _command(run_dir, data, "--model=virt")
    # Kill point 1: teacher stage, mid-epoch 1 (a checkpoint of step 3 of 8 exists).
    _run_and_kill(command, repo_dir, tmp_path / "kill1.log", str(teacher_dir), 3)
    killed_at = latest_checkpoint_step(str(teacher_dir))
    assert 3 <= killed_at < 8 and not (teacher_dir / "metrics.json").exists()

    # Kill point 2: student stage, aiming at the middle of the save of step >= 2.
    mid_save = _run_and_kill(command, repo_dir, tmp_path / "kill2.log", str(run_dir), 2,
                             during_save=True)
    log2 = (tmp_path / "kill2.log").read_text(encoding="utf-8")
    assert f"resuming {teacher_dir} at step {killed_at} of 8" in log2
    assert (teacher_dir / "metrics.json").exists()
    student_at = latest_checkpoint_step(str(run_dir))
    assert student_at >= (1 if mid_save else 2)
    assert student_at < 8 and not (run_dir / "metrics.json").exists()
    print(f"kill 2 landed {'during' if mid_save else 'after'} a checkpoint save")

    # A torn save of the next step on disk (what a kill inside TensorFlow's write
    # leaves): the state file still names the previous checkpoint, which must win.
    torn = run_dir / "checkpoints" / f"ckpt-{student_at + 1}"
    (run_dir / "checkpoints" / f"ckpt-{student_at + 1}_temp").mkdir(exist_ok=True)
    torn.with_name(torn.name + ".index").write_bytes(b"\x00torn index")
    torn.with_name(torn.name + ".data-00000-of-00001").write_bytes(b"\x01" * 100)
    teacher_mtime = os.stat(teacher_dir / "metrics.json").st_mtime_ns
    teacher_ckpt = latest_checkpoint_step(str(teacher_dir))

    # Kill point 3: while the finished student writes its model files.
    _run_and_kill(command, repo_dir, tmp_path / "kill3.log", str(run_dir), 8,
                  when_file=str(run_dir / "model.weights.h5"))
    log3 = (tmp_path / "kill3.log").read_text(encoding="utf-8")
    assert f"resuming {run_dir} at step {student_at} of 8" in log3
    assert latest_checkpoint_step(str(run_dir)) == 8 and not (run_dir / "metrics.json").exists()
    assert f"{teacher_dir}: finished earlier, reusing it" in log3

    final = _run(command, repo_dir)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"{teacher_dir}: finished earlier, reusing it" in final.stderr
    assert f"resuming {run_dir} at step 8 of 8" in final.stderr
    # The teacher was not trained again.
    assert os.stat(teacher_dir / "metrics.json").st_mtime_ns == teacher_mtime
    assert latest_checkpoint_step(str(teacher_dir)) == teacher_ckpt == 8


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
        tmp_path, repo_dir, shared_data):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    out = tmp_path / "nan"
    proc = _run(_command(out, os.path.join(shared_data, "rte"), "--model=cross",
                         "--debug_nan_at_step=3"), repo_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.rstrip().endswith(errors[0])
    assert errors[0].startswith("error: NumericalError: ")
    assert "non-finite loss (nan) at step 3" in errors[0]
    assert "ckpt-2 stays the latest" in errors[0]
    # Nothing was saved after the bad step: ckpt-2 is the latest and holds finite values.
    assert latest_checkpoint_step(str(out)) == 2
    assert not glob.glob(str(out / "checkpoints" / "ckpt-3*"))
    assert not (out / "metrics.json").exists() and not (out / "model.weights.h5").exists()
    reader = tf.train.load_checkpoint(str(out / "checkpoints" / "ckpt-2"))
    names = [n for n in reader.get_variable_to_shape_map() if n.endswith("VARIABLE_VALUE")]
    assert len(names) > 50
    for name in names:
        assert np.all(np.isfinite(reader.get_tensor(name))), name


def test_nan_guard_stops_on_inf_and_nan_in_any_loss_term():
    import types  # pylint: disable=import-outside-toplevel
    from virt_tf.training.callbacks import NanGuard  # pylint: disable=import-outside-toplevel

    class _Iterations:
        def numpy(self):
            return 7

    for logs in ({"loss": float("inf")}, {"loss": 0.5, "virt_loss": float("nan")}):
        guard = NanGuard()
        model = types.SimpleNamespace(optimizer=types.SimpleNamespace(iterations=_Iterations()),
                                      stop_training=False)
        guard.set_model(model)
        guard.on_train_batch_end(0, {"loss": 0.7, "task_loss": 0.7})
        assert guard.bad is None and not model.stop_training
        guard.on_train_batch_end(1, logs)
        assert model.stop_training and "at step 7" in guard.bad
        assert ("inf" in guard.bad) or ("virt_loss (nan)" in guard.bad)


def _tiny_cross(seed, num_labels=2):
    import keras  # pylint: disable=import-outside-toplevel
    from virt_tf.config import preset  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.encoder import EncoderConfig  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import build_classifier, build_now  # pylint: disable=import-outside-toplevel
    from virt_tf.training.optimization import create_optimizer  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(seed)
    config = EncoderConfig.from_dict(dict(preset("tiny"), vocab_size=200,
                                          max_position_embeddings=32))
    classifier = build_now(build_classifier("cross", config, num_labels))
    optimizer = create_optimizer(1e-3, 10, 0.1)
    classifier.compile(optimizer=optimizer, jit_compile=False,
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    optimizer.build(classifier.trainable_variables)
    return classifier, optimizer


def _batches():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import dummy_features  # pylint: disable=import-outside-toplevel

    features = dummy_features(batch=4, seq=6)
    features["pair"]["input_word_ids"] = tf.reshape(tf.range(24) % 190 + 5, (4, 6))
    return tf.data.Dataset.from_tensors((features, tf.constant([0, 1, 1, 0]))).repeat(3)


def test_checkpoint_restores_weights_adam_state_and_dropout_rng(tmp_path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from virt_tf.training.resume import make_checkpoint, restore_checkpoint  # pylint: disable=import-outside-toplevel

    trained, opt = _tiny_cross(seed=1)
    trained.fit(_batches(), epochs=1, verbose=0)
    assert int(opt.iterations.numpy()) == 3
    rng_states = [v.numpy().copy() for v in trained.non_trainable_variables]
    assert rng_states and any(np.any(s != 0) for s in rng_states)
    path = make_checkpoint(trained, opt).save(str(tmp_path / "ckpt"))

    fresh, fresh_opt = _tiny_cross(seed=2)  # other weights and other dropout seeds
    restore_checkpoint(fresh, fresh_opt, path)
    assert int(fresh_opt.iterations.numpy()) == 3
    pairs = list(zip(trained.variables, fresh.variables)) + list(zip(opt.variables,
                                                                     fresh_opt.variables))
    assert len(opt.variables) > 2 * len(trained.trainable_variables)  # Adam m and v
    for a, b in pairs:
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Same state, same next step: dropout masks included.
    trained.fit(_batches().take(1), epochs=1, verbose=0)
    fresh.fit(_batches().take(1), epochs=1, verbose=0)
    for a, b in zip(trained.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # What Keras tracks by itself misses the dropout states: the reason for model_state.
    plain = tf.train.Checkpoint(model=trained, optimizer=opt).save(str(tmp_path / "plain"))
    names = [n for n, _ in tf.train.list_variables(plain)]
    assert not any("seed" in n or n.startswith("model_state/") for n in names)
    # Such checkpoints (written before model_state existed) still resume, with a warning.
    legacy, legacy_opt = _tiny_cross(seed=3)
    restore_checkpoint(legacy, legacy_opt, plain)
    assert int(legacy_opt.iterations.numpy()) == 4
    for a, b in zip(trained.trainable_variables, legacy.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_keras_format_round_trips_with_safe_mode(tmp_path):
    import keras  # pylint: disable=import-outside-toplevel
    from virt_tf.config import preset  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.encoder import EncoderConfig  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import (build_classifier, build_now, dummy_features,  # pylint: disable=import-outside-toplevel
                                         load_keras, save_keras)

    keras.utils.set_random_seed(0)
    config = EncoderConfig.from_dict(dict(preset("tiny"), vocab_size=200,
                                          max_position_embeddings=32))
    features = dummy_features(batch=3, seq=7)
    for name in ("cross", "virt", "siamese"):
        model = build_now(build_classifier(name, config, 3, {"virt_head": "adapted"}))
        path = save_keras(str(tmp_path / f"{name}.keras"), model)
        loaded = load_keras(path)
        assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
        assert len(loaded.weights) == len(model.weights)
        for a, b in zip(model.weights, loaded.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
        np.testing.assert_array_equal(model(features).numpy(), loaded(features).numpy())
        with open(path, "rb") as f:
            assert f.read(2) == b"PK"  # a zip of JSON and HDF5, not a pickle
    # safe_mode is really on: an archive whose config holds Python code is refused.
    unsafe = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    unsafe.save(str(tmp_path / "lambda.keras"))
    with pytest.raises(Exception, match="(?i)unsafe|safe_mode"):
        load_keras(str(tmp_path / "lambda.keras"))


def test_no_pickle_anywhere_in_the_package(repo_dir):
    pattern = re.compile(r"\b(import\s+(c?pickle|dill|joblib|shelve|marshal)|from\s+(c?pickle|dill"
                         r"|joblib|shelve|marshal)\s+import|pickle\.load|allow_pickle\s*=\s*True"
                         r"|torch\.load|safe_mode\s*=\s*False|enable_unsafe_deserialization"
                         r"|yaml\.load\(|yaml\.unsafe_load|\.to_pickle|read_pickle)")
    files = glob.glob(os.path.join(repo_dir, "virt_tf", "**", "*.py"), recursive=True)
    assert len(files) > 15
    hits = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if pattern.search(line):
                    hits.append(f"{os.path.relpath(path, repo_dir)}:{n}: {line.strip()}")
    assert not hits, hits
