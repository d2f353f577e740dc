"""Precision: ``--precision=auto``'s choice, float16 with dynamic loss scaling.

Float16 runs on the CPU (slowly): tiny models, a few steps. Tolerance: the float16
forward pass (matmuls in float16, softmaxes and losses in float32) gives the task loss
and L_virt of the float32 model with the same weights within 0.5% relative (float16 has
an 11-bit mantissa: about 5e-4 relative rounding of each matmul output, a few of them in
sequence); measured here on the tiny model with a wide init (0.2, so that the attention
maps are far from uniform and L_virt is not near 0): task loss 0.09%, L_virt 0.003%.
"""
import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from virt_tf.training import precision
from virt_tf.data.tokenization import BertPairPreprocessor
from virt_tf.losses import TaskLoss, VirtLoss
from virt_tf.models import registry
from virt_tf.models.virt import VirtModel
from virt_tf.training.optimization import WarmupLinearDecay, create_optimizer
from virt_tf.training.precision import precision_scope

A = ["the cat sat on the mat", "a dog runs fast", "the red car is not big", "a tree is green",
     "the house is small", "a blue car runs slow"]
B = ["a cat sat", "the dog is slow", "a big red car", "the tree is not green",
     "a small house", "the car runs fast"]
Y = [0, 1, 0, 1, 0, 1]
LOSS_RTOL = 5e-3


# ------------------------------------------------------------------------------- auto
@pytest.mark.parametrize("gpus, flags, expected", [
    ([("A100", (8, 0))], set(), "mixed_bfloat16"),
    ([("H100", (9, 0))], {"avx2"}, "mixed_bfloat16"),
    ([("V100", (7, 0))], {"avx512_bf16"}, "mixed_float16"),  # the GPU decides, not the CPU
    ([("T4", (7, 5))], set(), "mixed_float16"),
    ([("A100", (8, 0)), ("V100", (7, 0))], set(), "mixed_float16"),  # the oldest decides
    ([], {"avx2", "avx512f", "avx512_bf16"}, "mixed_bfloat16"),
    ([], {"avx2", "amx_bf16", "amx_tile"}, "mixed_bfloat16"),
    ([], {"avx2", "avx512f", "fma"}, "float32"),
    ([], set(), "float32"),
])
def test_auto_picks_by_compute_capability_and_cpu_flags(gpus, flags, expected):
    policy, reason = precision.choose_precision(gpus, frozenset(flags))
    assert policy == expected
    assert reason and (not gpus or gpus[0][0] in reason or "compute capability" in reason)


def test_auto_reads_the_cpu_flags_through_the_replaceable_function(monkeypatch):
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert precision.resolve_precision("auto") == (
        "mixed_bfloat16", "no GPU; the CPU has avx512_bf16 (bfloat16 matmuls)")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    policy, reason = precision.resolve_precision("auto")
    assert policy == "float32" and "no bfloat16" in reason
    # an explicit policy is kept whatever the machine
    assert precision.resolve_precision("mixed_float16") == ("mixed_float16", "asked for")
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("float8")


def test_auto_is_resolved_recorded_and_a_resume_elsewhere_refused(tmp_path, vocab_file,
                                                                  monkeypatch):
    """A stage run with ``auto`` records the policy that ran (metrics.json with its reason,
    stage.json); resuming where ``auto`` picks another policy is refused, not silently
    different."""
    from test_resume_settings import _cfg, _data, _encoder, _prep, _teacher  # pylint: disable=import-outside-toplevel
    from virt_tf.rundir import METRICS_FILE  # pylint: disable=import-outside-toplevel
    from virt_tf.training.stage import run_stage  # pylint: disable=import-outside-toplevel
    from virt_tf.errors import StageError  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(precision, "gpu_compute_capabilities", lambda: [])
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    directory = str(tmp_path / "auto")
    teacher = _teacher(0)
    _, metrics = run_stage("virt", directory, _cfg(precision="auto"), _data(), None,
                           _prep(vocab_file), teacher, verbose=0, encoder_config=_encoder())
    assert metrics["precision"] == "mixed_bfloat16"
    assert "avx512_bf16" in metrics["precision_reason"]
    stage = json.loads(open(os.path.join(directory, "checkpoints", "stage.json"),
                            encoding="utf-8").read())
    assert stage["precision"] == "mixed_bfloat16"
    os.remove(os.path.join(directory, METRICS_FILE))
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))  # another CPU
    with pytest.raises(StageError, match="precision 'mixed_bfloat16' -> 'float32'"):
        run_stage("virt", directory, _cfg(precision="auto"), _data(), None,
                  _prep(vocab_file), teacher, verbose=0, encoder_config=_encoder())
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    _, again = run_stage("virt", directory, _cfg(precision="auto"), _data(), None,
                         _prep(vocab_file), teacher, verbose=0, encoder_config=_encoder())
    assert again["precision"] == "mixed_bfloat16"


def test_cpu_flags_are_read_from_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\n"
                    "flags\t\t: fpu avx2 AVX512F avx512_bf16\n\nprocessor\t: 1\n"
                    "flags\t\t: fpu\n", encoding="utf-8")
    assert precision.read_cpu_flags(str(info)) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert precision.read_cpu_flags(str(tmp_path / "absent")) == frozenset()


# ------------------------------------------------------------------------ float16 model
@pytest.fixture()
def batch(small_vocab):
    prep = BertPairPreprocessor(small_vocab, max_seq_length=16)
    return prep(tf.constant(A), tf.constant(B)), tf.constant(Y)


def _virt_models(tiny_config, policy, seed=0):
    """Teacher (cross), student (virt) and `VirtModel` (task + L_virt) under ``policy``."""
    keras.utils.set_random_seed(seed)
    with precision_scope(policy):
        teacher = registry.build_now(registry.build_classifier("cross", tiny_config, 2))
        student = registry.build_now(registry.build_classifier("virt", tiny_config, 2))
        model = VirtModel(student, teacher, terms=[TaskLoss(), VirtLoss(weight=1.0)])
    return teacher, student, model


def _compile(model, policy, lr=3e-3, total=100):
    opt = precision.wrap_optimizer(create_optimizer(lr, total, warmup_ratio=0.0), policy)
    model.compile(optimizer=opt)
    opt.build(model.student.trainable_variables)
    return opt


def test_float16_losses_equal_float32_for_the_same_weights(tiny_config, batch):
    import dataclasses  # pylint: disable=import-outside-toplevel
    tiny_config = dataclasses.replace(tiny_config, initializer_range=0.2)
    features, labels = batch
    t32, s32, m32 = _virt_models(tiny_config, "float32")
    t16, s16, m16 = _virt_models(tiny_config, "mixed_float16", seed=5)
    assert s16.encoder.transformer_layers[0].attention.compute_dtype == "float16"
    t16.set_weights(t32.get_weights())
    s16.set_weights(s32.get_weights())
    for a, b in zip(s32.weights + t32.weights, s16.weights + t16.weights):
        assert b.dtype == a.dtype  # variables stay float32
    out32 = m32.compute_losses(features, labels, training=False)
    out16 = m16.compute_losses(features, labels, training=False)
    for name in ("task_loss", "virt_loss", "loss"):
        v32, v16 = float(out32[name]), float(out16[name])
        assert out16[name].dtype == tf.float32, name  # the loss terms are float32
        assert np.isfinite(v16) and v16 > 0.05, name  # not near 0: a real comparison
        assert v16 == pytest.approx(v32, rel=LOSS_RTOL), name
    assert out16["logits"].dtype == tf.float16
    np.testing.assert_allclose(tf.cast(out16["logits"], tf.float32), out32["logits"],
                               atol=2e-2)


def test_float16_training_loss_falls_and_stays_finite(tiny_config, batch):
    features, labels = batch
    _, student, model = _virt_models(tiny_config, "mixed_float16")
    opt = _compile(model, "mixed_float16")
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
    first = model.compute_losses(features, labels, training=False)
    history = model.fit(tf.data.Dataset.from_tensors((features, labels)).repeat(30),
                        epochs=1, verbose=0)
    last = model.compute_losses(features, labels, training=False)
    assert all(np.isfinite(float(last[k])) for k in ("loss", "task_loss", "virt_loss"))
    assert np.isfinite(history.history["loss"][-1])
    assert float(last["task_loss"]) < 0.7 * float(first["task_loss"])
    assert float(last["virt_loss"]) < float(first["virt_loss"])
    assert all(np.all(np.isfinite(w)) for w in student.get_weights())
    # no overflow at this size: every step applied, 30 batches read
    assert int(opt.iterations.numpy()) == 30 and precision.applied_steps(opt) == 30


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_every_model_trains_under_float16_with_its_own_objective(name, tiny_config, batch):
    """Each registry row under mixed_float16 (teacher too, when its objective has one):
    float16 compute, finite float32 losses, every step applied, the task loss falls."""
    from virt_tf.config import load_config  # pylint: disable=import-outside-toplevel
    from virt_tf.losses import objective_from_config  # pylint: disable=import-outside-toplevel
    features, labels = batch
    terms = objective_from_config(load_config("rte", name, overrides={"virt_alpha": None}))
    keras.utils.set_random_seed(0)
    with precision_scope("mixed_float16"):
        teacher = (registry.build_now(registry.build_classifier("cross", tiny_config, 2))
                   if any(t.needs_teacher for t in terms) else None)
        student = registry.build_now(registry.build_classifier(name, tiny_config, 2))
        model = VirtModel(student, teacher, terms=terms)
    assert student.compute_dtype == "float16"
    opt = _compile(model, "mixed_float16", lr=1e-2)
    first = model.compute_losses(features, labels, training=False)
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(6), epochs=1, verbose=0)
    last = model.compute_losses(features, labels, training=False)
    assert all(last[t.name].dtype == tf.float32 and np.isfinite(float(last[t.name]))
               for t in terms)
    assert precision.applied_steps(opt) == 6
    assert float(last["task_loss"]) < float(first["task_loss"])


def test_an_overflowing_step_is_skipped_then_training_goes_on(tiny_config, batch):
    """An injected overflow: the step is skipped (weights and Adam state unchanged), the
    scale halves; the batch counter advances, the applied-step counter and so the
    learning-rate schedule do not; the next steps train."""
    features, labels = batch
    _, student, model = _virt_models(tiny_config, "mixed_float16")
    opt = _compile(model, "mixed_float16", total=20)
    data = tf.data.Dataset.from_tensors((features, labels))
    model.fit(data, epochs=1, verbose=0)  # one normal step
    assert (int(opt.iterations.numpy()), precision.applied_steps(opt)) == (1, 1)
    scale = precision.loss_scale(opt)
    assert scale == precision.INITIAL_LOSS_SCALE
    weights = [w.copy() for w in student.get_weights()]
    adam = [v.numpy().copy() for v in opt.inner_optimizer.variables]
    injector = precision.overflow_injector(step=2)
    history = model.fit(data, epochs=1, verbose=0, callbacks=[injector])
    assert np.isfinite(history.history["loss"][-1])  # the reported loss is unscaled, finite
    assert precision.loss_scale(opt) == scale / 2
    assert int(opt.iterations.numpy()) == 2 and precision.applied_steps(opt) == 1
    for before, after in zip(weights, student.get_weights()):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(adam, opt.inner_optimizer.variables):
        np.testing.assert_array_equal(before, after.numpy())
    # the schedule is read at the applied steps (1), not at the batches read (2)
    schedule = opt.inner_optimizer._learning_rate  # pylint: disable=protected-access
    assert isinstance(schedule, WarmupLinearDecay)
    assert float(opt.learning_rate) == pytest.approx(float(schedule(1)))
    assert float(schedule(1)) != float(schedule(2))
    model.fit(data.repeat(3), epochs=1, verbose=0)
    assert int(opt.iterations.numpy()) == 5 and precision.applied_steps(opt) == 4
    assert precision.loss_scale(opt) == scale / 2  # no growth before 2000 clean steps
    assert any(not np.array_equal(a, b) for a, b in zip(weights, student.get_weights()))


def test_loss_scale_and_both_counters_are_checkpointed(tmp_path, tiny_config, batch):
    from virt_tf.training.resume import make_checkpoint, restore_checkpoint  # pylint: disable=import-outside-toplevel
    features, labels = batch
    data = tf.data.Dataset.from_tensors((features, labels))
    _, student, model = _virt_models(tiny_config, "mixed_float16")
    opt = _compile(model, "mixed_float16")
    model.fit(data.repeat(2), epochs=1, verbose=0,
              callbacks=[precision.overflow_injector(step=2)])
    path = make_checkpoint(student, opt).save(str(tmp_path / "ckpt"))
    names = {n for n, _ in tf.train.list_variables(path)}
    assert any("dynamic_scale" in n for n in names) and any("step_counter" in n for n in names)
    _, student2, model2 = _virt_models(tiny_config, "mixed_float16", seed=9)
    opt2 = _compile(model2, "mixed_float16")
    restore_checkpoint(student2, opt2, path)
    assert precision.loss_scale(opt2) == precision.INITIAL_LOSS_SCALE / 2
    assert int(opt2.iterations.numpy()) == 2 and precision.applied_steps(opt2) == 1
    assert int(opt2.step_counter.numpy()) == int(opt.step_counter.numpy())


def test_other_precisions_keep_the_plain_optimizer():
    adam = create_optimizer(1e-3, 10)
    assert precision.wrap_optimizer(adam, "float32") is adam
    assert precision.wrap_optimizer(adam, "mixed_bfloat16") is adam
    assert precision.loss_scale(adam) is None


def test_float16_attention_masks_padding_without_nan(tiny_config, small_vocab):
    """float16 cannot hold the float32 mask bias (-1e9 rounds to -inf, 0 * -inf = NaN):
    padded keys must still get no weight and valid ones finite states."""
    prep = BertPairPreprocessor(small_vocab, max_seq_length=32)
    short = prep(tf.constant(["a cat"]), tf.constant(["a dog"]))
    longer = prep(tf.constant(["a cat", "the red car is not big and the house is small"]),
                  tf.constant(["a dog", "a tree"]))
    keras.utils.set_random_seed(0)
    with precision_scope("mixed_float16"):
        student = registry.build_now(registry.build_classifier("virt", tiny_config, 2))
    alone = student.encode(short["text_a"])["sequence_output"]
    padded = student.encode(longer["text_a"])["sequence_output"][:1, :alone.shape[1]]
    assert np.all(np.isfinite(tf.cast(padded, tf.float32)))
    np.testing.assert_allclose(tf.cast(padded, tf.float32), tf.cast(alone, tf.float32),
                               atol=1e-2)


# --------------------------------------------------------------------------- the CLI
COMMON = ["--task=rte", "--encoder_preset=tiny", "--epochs=2", "--max_train_examples=32",
          "--max_eval_examples=16", "--batch_size=8", "--checkpoint_steps=1",
          "--tune_fraction=0", "--verbose=2", "--seed=3", "--model=siamese",
          "--precision=mixed_float16", "--debug_overflow_at_step=2"]


def _command(model_dir, data_dir):
    return [sys.executable, "-m", "virt_tf.train", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", *COMMON]


def test_killed_float16_run_with_a_skipped_step_resumes_to_the_same_weights(
        tmp_path, repo_dir, shared_data):
    from conftest import latest_checkpoint_step  # pylint: disable=import-outside-toplevel
    from test_reliability import _max_weight_diff, _run, _run_and_kill  # pylint: disable=import-outside-toplevel
    data = os.path.join(shared_data, "rte")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    proc = _run(_command(whole, data), repo_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "precision mixed_float16 (asked for)" in proc.stderr
    metrics = json.loads((whole / "metrics.json").read_text(encoding="utf-8"))
    # one skipped step out of 8 batches; not a NumericalError; the scale halved once
    assert metrics["precision"] == "mixed_float16" and metrics["skipped_steps"] == 1
    assert metrics["loss_scale"] == precision.INITIAL_LOSS_SCALE / 2
    assert metrics["steps_per_epoch"] == 4 and metrics["total_steps"] == 8
    stage = json.loads((whole / "checkpoints" / "stage.json").read_text(encoding="utf-8"))
    assert stage["precision"] == "mixed_float16"
    # the log and the checkpoints count batches: epochs end at batches 4 and 8
    with open(whole / "train_log.jsonl", encoding="utf-8") as f:
        records = [json.loads(l) for l in f if l.strip()]
    assert [r["step"] for r in records if r["kind"] == "epoch"] == [4, 8]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert latest_checkpoint_step(str(whole)) == 8

    command = _command(resumed, data)
    _run_and_kill(command, repo_dir, tmp_path / "kill.log", str(resumed), 3)
    killed_at = latest_checkpoint_step(str(resumed))
    assert 3 <= killed_at < 8 and not (resumed / "metrics.json").exists()
    final = _run(command, repo_dir)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"resuming {resumed} at step {killed_at} of 8" in final.stderr
    assert _max_weight_diff(str(whole / "model.weights.h5"),
                            str(resumed / "model.weights.h5")) == 0.0
    again = json.loads((resumed / "metrics.json").read_text(encoding="utf-8"))
    for key in ("skipped_steps", "loss_scale", "loss", "accuracy"):
        assert again[key] == metrics[key], key


def test_float16_skip_under_a_mirrored_strategy(tmp_path, repo_dir, shared_data):
    """Two logical CPU devices: the replicas agree on skipping (Keras' merge_call path of
    the loss-scale optimizer) and the batch counter still advances once a step."""
    from test_reliability import _run  # pylint: disable=import-outside-toplevel
    out = tmp_path / "mirrored"
    command = _command(out, os.path.join(shared_data, "rte"))
    command = [a for a in command if not a.startswith("--epochs=")] + [
        "--epochs=1", "--distribution_strategy=mirrored", "--cpu_devices=2"]
    proc = _run(command, repo_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["skipped_steps"] == 1 and metrics["total_steps"] == 4
    assert metrics["loss_scale"] == precision.INITIAL_LOSS_SCALE / 2
    with open(out / "train_log.jsonl", encoding="utf-8") as f:
        epochs = [json.loads(l) for l in f if '"epoch"' in l]
    assert [r["step"] for r in epochs] == [4] and np.isfinite(epochs[0]["loss"])
