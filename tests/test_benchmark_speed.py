"""tools/benchmark_speed.py in its quick mode (tiny random encoder, a few steps) on real data.

The library behind it, `virt_tf.benchmarks`, is tested on its own in
test_benchmarks_timing.py, test_benchmarks_report.py, test_benchmarks_suite.py and
test_benchmarks_step_profile.py."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "benchmark_speed.py")


def test_quick_mode_reports_steps_ratios_and_padding(tmp_path, shared_data):
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, TOOL, "--encoder_preset=tiny", "--steps=3", "--warmup=1",
         f"--data_dir={os.path.join(shared_data, 'bench', 'mnli')}",
         f"--encode_file={os.path.join(shared_data, 'rte', 'train.tsv')}",
         "--encode_texts=40", "--encode_batch=8", "--max_train_examples=300",
         # the cross-encoder (buckets by pair) and the VIRT-encoder (by x, then y) in
         # mixed bfloat16, besides the float32 path before the levers: every code path of
         # the tool; the ratios of other pairings are checked below on numbers
         "--models=cross,virt", "--precisions=mixed_bfloat16", "--openvino_precisions=",
         f"--output={out}"],
        capture_output=True, text=True, timeout=900, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    train = results["train"]
    # before (2 models, float32) + 2 models x 2 batchings
    assert len(train) == 2 + 4
    assert {r["precision"] for r in train if r["setting"] == "before"} == {"float32"}
    assert {(r["model"], r["setting"]) for r in train} >= {("virt", "before"), ("virt", "new")}
    for r in train:
        assert r["steps"] == 3 and r["seconds_per_step"] > 0
        assert abs(r["pairs_per_second"] * r["seconds_per_step"] / 28 - 1) < 1e-3
    # length buckets cut the padding of the same pairs (real MNLI lengths)
    new = {(r["model"], r["precision"], r["buckets"]): r
           for r in train if r["setting"] == "new"}
    # the cross-encoder's batches are sorted by the pair's length ...
    assert (new[("cross", "mixed_bfloat16", True)]["padding_share"]
            < 0.5 * new[("cross", "mixed_bfloat16", False)]["padding_share"])
    # ... the Siamese models' by x's, then each group of 4 batches by y's: less padding in
    # both and fewer positions run through (with 300 pairs a group spans a third of x's
    # lengths, so x's padding falls less than in training on 10k pairs)
    virt_b = new[("virt", "mixed_bfloat16", True)]
    virt_r = new[("virt", "mixed_bfloat16", False)]
    assert virt_b["padding_share_x"] < virt_r["padding_share_x"]
    assert virt_b["padding_share_y"] < virt_r["padding_share_y"]
    assert virt_b["mean_x_plus_y_positions"] < virt_r["mean_x_plus_y_positions"]
    assert [r["precision"] for r in results["encode"]] == ["mixed_bfloat16"]
    assert all(r["texts"] == 40 and r["texts_per_second"] > 0 for r in results["encode"])
    ratios = results["ratios"]
    assert "virt: pairs/s mixed_bfloat16, buckets / before" in ratios
    assert "ratios:" in proc.stdout and "virt_tf mixed_bfloat16" in proc.stdout


def test_float16_openvino_rows_and_alternating_repeats(tmp_path, shared_data):
    """Training in float32 and float16 (loss scaling) alternating over two repeats, our
    encoding through TensorFlow and OpenVINO, what auto picks here, per-repeat ratios."""
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, TOOL, "--encoder_preset=tiny", "--steps=2", "--warmup=1",
         f"--data_dir={os.path.join(shared_data, 'bench', 'mnli')}",
         f"--encode_file={os.path.join(shared_data, 'rte', 'train.tsv')}",
         "--encode_texts=24", "--encode_batch=8", "--max_train_examples=120",
         "--models=siamese", "--precisions=float32,mixed_float16", "--buckets=true",
         "--include_before=false", "--repeats=2", "--openvino_precisions=f32",
         "--peak_size=256", f"--output={out}"],
        capture_output=True, text=True, timeout=900, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    # alternating: float32, float16, float32, float16 (not float32, float32, ...)
    assert [(r["precision"], r["repeat"]) for r in results["train"]] == [
        ("float32", 0), ("mixed_float16", 0), ("float32", 1), ("mixed_float16", 1)]
    assert all(r["steps"] == 2 and r["seconds_per_step"] > 0 for r in results["train"])
    # TensorFlow encoding in float32 only (float16 is left out by default), OpenVINO f32
    assert [(r["precision"], r["backend"]) for r in results["encode"]] == [
        ("float32", "tensorflow"), ("openvino f32", "openvino")] * 2
    ov = [r for r in results["encode"] if r["backend"] == "openvino"]
    assert all(r["texts"] == 24 and r["texts_per_second"] > 0 for r in ov)
    assert all(r["inference_precision"] == "f32" for r in ov)
    ratios = results["ratios"]
    assert len(ratios["siamese: pairs/s mixed_float16 / float32 (buckets) per repeat"]) == 2
    assert "siamese: pairs/s mixed_float16 / float32 (buckets)" in ratios
    assert "encode: ours openvino f32 / ours TensorFlow float32" in ratios
    auto = results["auto_precision"]
    assert auto["policy"] in ("float32", "mixed_bfloat16", "mixed_float16") and auto["reason"]
    assert f"--precision=auto picks {auto['policy']} here" in proc.stdout
    assert "virt_tf openvino f32" in proc.stdout
    # the matmul peak of each precision, measured in the run; each row's rate against it
    peaks = results["matmul_peak"]
    assert {p: v["dtype"] for p, v in peaks.items()} == {"float32": "float32",
                                                         "mixed_float16": "float16"}
    for r in results["train"]:
        assert r["train_flops_per_step"] > 1e6 and "backward" in r["flops_counted"]
        assert abs(r["gflops_per_second"] * r["seconds_per_step"] * 1e9
                   / r["train_flops_per_step"] - 1) < 1e-3
        peak = peaks[r["precision"]]["gflops_per_second"]
        assert abs(r["peak_fraction"] - r["gflops_per_second"] / peak) < 1e-3
    # FLOPs do not depend on the precision (same batches, counted once a shape)
    assert len({r["train_flops_per_step"] for r in results["train"]}) == 1
    assert "GFLOP/s" in proc.stdout and "of peak" in proc.stdout


def test_profile_step_splits_op_time_into_forward_backward_and_optimizer(tmp_path,
                                                                         shared_data):
    """--profile_step: where the first timed steps' time goes, float16's loss-scaling
    optimizer (which applies Adam inside a conditional) included."""
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, TOOL, "--encoder_preset=tiny", "--steps=2", "--warmup=1",
         f"--data_dir={os.path.join(shared_data, 'bench', 'mnli')}", "--encode_texts=0",
         "--max_train_examples=120", "--models=siamese", "--precisions=mixed_float16",
         "--buckets=true", "--include_before=false", "--openvino_precisions=",
         "--profile_step=true", "--peak_size=256", f"--output={out}"],
        capture_output=True, text=True, timeout=900, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["train"]
    profile = row["profile"]
    assert profile["steps"] == 2 and profile["op_ms_per_step"] > 0
    phases = {p["phase"]: p for p in profile["phases"]}
    assert set(phases) == {"forward", "backward", "optimizer"}
    assert all(p["ms_per_step"] > 0 for p in phases.values())
    assert abs(sum(p["share"] for p in phases.values()) - 1) < 1e-6
    assert abs(sum(o["share"] for o in profile["ops"]) - 1) < 1e-6
    assert len(profile["ops"]) > 5
    assert set(profile["split"]) == {"forward", "forward_backward", "optimizer"}
    assert all(v > 0 for v in profile["split"].values())
    assert "adam" in profile["optimizer_scopes"] and len(profile["optimizer_scopes"]) == 2
    assert "| part | ms/step | share |" in proc.stdout and "| optimizer |" in proc.stdout
    assert "| op type | ms/step | share | runs/step |" in proc.stdout
