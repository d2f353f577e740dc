"""tools/reproduce.py --quick end to end at the tiny encoder preset (seconds-long cells).

The README's main job with its cells shrunk (`--encoder_preset=tiny`, 24 training
pairs, 1 epoch): the teacher, the fair Siamese and the VIRT-encoder train, the
report puts each row's online cost per pair beside its accuracy (the profiling
library at MiniLM-L6 dimensions) and says what a grid of this size can show; run
again, nothing is trained or profiled again.
"""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quick(output, data_root):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "reproduce.py"), "--quick",
         f"--output={output}", f"--data_root={data_root}", "--epochs=1",
         "--max_train_examples=24", "--max_eval_examples=16",
         "--train_flags=--encoder_preset=tiny,--batch_size=8"],
        capture_output=True, text=True, timeout=900, cwd=str(output.parent),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def test_quick_main_job_with_tiny_cells(tmp_path, shared_data):
    out = tmp_path / "quick"
    proc = _quick(out, shared_data)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "online cost of cross, siamese, virt (minilm_l6" in proc.stderr  # progress: the log
    assert " INFO " in next(l for l in proc.stderr.splitlines() if "starting" in l)
    results = json.loads((out / "results.json").read_text())
    rows = results["tasks"]["mnli"]["rows"]
    assert list(rows) == ["teacher", "siamese", "virt"]
    assert results["tasks"]["mnli"]["examples"] == 16
    variants = results["online_cost"]["variants"]
    assert sorted(variants) == ["cross", "siamese", "virt"]
    # the trade-off: the cross-encoder costs hundreds of times the heads' FLOPs a pair
    assert rows["virt"]["online"]["flops_ratio"] > 100
    assert rows["siamese"]["online"]["flops_per_pair"] < rows["virt"]["online"][
        "flops_per_pair"] < rows["teacher"]["online"]["flops_per_pair"]
    assert "vs_siamese_pooled" in rows["virt"] and "agreement" in rows["virt"]
    text = (out / "REPORT.md").read_text()
    line = next(l for l in text.splitlines() if l.startswith("| VIRT-encoder |"))
    assert "19.28M" in line and "ms" in line  # MiniLM-L6 dims: Eq. 8 + Eq. 9 on 18 + 258 states
    assert "It cannot show:" in text and "16 dev pairs" in text
    for name in ("accuracy.png", "cost_accuracy.png", "alignment.png"):
        assert (out / name).exists(), name
    # run again: every cell is finished and every cost cached
    again = _quick(out, shared_data)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "online cost of" not in again.stderr and "starting" not in again.stderr
    for row in ("teacher", "siamese", "virt"):
        log = (out / "runs" / "mnli" / row / "lr5e-5_s0" / "train.log").read_text()
        assert log.count("virt_tf.train") == 1, row
