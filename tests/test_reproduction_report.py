"""virt_tf.reproduction.report and plots on fabricated finished cells (no training).

The numbers are checked against hand computations: mean and sample sd over seeds, the
gap share formula, per-seed and pooled exact McNemar tests (binomial tail written out
here with math.comb), agreement with the teacher and its paired test.
"""
import json
import math
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest

from virt_tf.reproduction import grid as grid_lib
from virt_tf.reproduction import plots, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 60  # dev pairs


def binomial_mcnemar(a, b):
    """Two-sided exact McNemar p by hand: 2 * P(X <= min(a, b)), X ~ Bin(a + b, 1/2)."""
    n = a + b
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(a, b) + 1)) / 2 ** n)


def write_cell(output, cell_dir, preds, labels, train_seconds=600.0, f1=None, classes=3):
    path = os.path.join(output, cell_dir)
    os.makedirs(path, exist_ok=True)
    probs = np.eye(classes, dtype=np.float32)[preds]
    np.savez(os.path.join(path, "predictions.npz"), probs=probs, labels=labels.astype(np.int32),
             split=np.array("dev"), fingerprint=np.array("x"))
    metrics = {"accuracy": float(np.mean(preds == labels)), "train_seconds": train_seconds,
               "total_steps": 300, "tune": {"accuracy": 0.5}, "selected_epoch": {"epoch": 2}}
    if f1 is not None:
        metrics["f1"] = f1
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    with open(os.path.join(path, "train_log.jsonl"), "w") as f:
        for epoch in (1, 2):
            f.write(json.dumps({"kind": "epoch", "epoch": epoch, "val_accuracy": 0.4 + 0.05 *
                                epoch}) + "\n")
            f.write(json.dumps({"kind": "train", "step": 10 * epoch, "task_loss": 1.0 / epoch,
                                "virt_loss": 0.1 / epoch}) + "\n")


def noisy(rng, labels, right_share, classes=3):
    """Predictions right on about ``right_share`` of the pairs."""
    wrong = (labels + rng.integers(1, classes, len(labels))) % classes
    return np.where(rng.random(len(labels)) < right_share, labels, wrong)


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    """A sample-profile output: MNLI teacher, Siamese and VIRT at 3 seeds, [u; v] at seed 0;
    QQP teacher and Siamese, VIRT with F1."""
    out = str(tmp_path_factory.mktemp("sample"))
    rng = np.random.default_rng(7)
    grid = grid_lib.load_grid(profile="sample")
    labels = rng.integers(0, 3, N)
    preds = {("teacher", 0): noisy(rng, labels, 0.8)}
    for seed in (0, 1, 2):
        preds[("siamese", seed)] = noisy(rng, labels, 0.55)
        preds[("virt", seed)] = noisy(rng, labels, 0.7)
    preds[("siamese_concat", 0)] = noisy(rng, labels, 0.4)
    seconds = {"teacher": 3000.0, "siamese": 1200.0, "virt": 1800.0, "siamese_concat": 900.0}
    for (row, seed), p in preds.items():
        write_cell(out, grid_lib.cell_dir("mnli", row, 5e-5, seed), p, labels, seconds[row])
    qqp_labels = rng.integers(0, 2, N)
    for row, share, f1 in (("teacher", 0.85, 0.8), ("siamese", 0.7, 0.6), ("virt", 0.75, 0.7)):
        write_cell(out, grid_lib.cell_dir("qqp", row, 5e-5, 0),
                   noisy(rng, qqp_labels, share, 2), qqp_labels, f1=f1, classes=2)
    cells = grid_lib.plan_cells(grid)
    summary = report.summarize(cells, grid, out)
    return {"out": out, "grid": grid, "cells": cells, "summary": summary, "preds": preds,
            "labels": labels}


def test_mean_sd_and_gap_closed(fabricated):
    rows = fabricated["summary"]["tasks"]["mnli"]["rows"]
    preds, labels = fabricated["preds"], fabricated["labels"]
    acc = {k: float(np.mean(p == labels)) for k, p in preds.items()}
    virt = [acc[("virt", s)] for s in (0, 1, 2)]
    siamese = [acc[("siamese", s)] for s in (0, 1, 2)]
    assert list(rows) == ["teacher", "siamese", "virt", "siamese_concat"]
    assert rows["virt"]["seeds"] == 3 and rows["siamese_concat"]["seeds"] == 1
    assert rows["virt"]["accuracy"] == pytest.approx(sum(virt) / 3)
    assert rows["virt"]["spread"] == pytest.approx(statistics.stdev(virt))
    assert rows["virt"]["spread"] > 0 and rows["siamese_concat"]["spread"] == 0.0
    teacher = acc[("teacher", 0)]
    assert rows["virt"]["gap_closed_vs_siamese"] == pytest.approx(
        (sum(virt) / 3 - sum(siamese) / 3) / (teacher - sum(siamese) / 3))
    assert rows["virt"]["gap_closed_vs_siamese_concat"] == pytest.approx(
        (sum(virt) / 3 - acc[("siamese_concat", 0)]) / (teacher - acc[("siamese_concat", 0)]))
    assert "gap_closed_vs_siamese" not in rows["siamese"]
    assert rows["virt"]["train_seconds"] == 1800.0
    assert rows["virt"]["paper"] == 78.6 and rows["siamese"]["paper"] is None


def test_mcnemar_per_seed_and_pooled_by_summing_discordant_counts(fabricated):
    rows = fabricated["summary"]["tasks"]["mnli"]["rows"]
    preds, labels = fabricated["preds"], fabricated["labels"]
    counts = []
    for seed in (0, 1, 2):
        v, s = preds[("virt", seed)] == labels, preds[("siamese", seed)] == labels
        counts.append((int(np.sum(v & ~s)), int(np.sum(s & ~v))))
    per_seed = rows["virt"]["vs_siamese"]
    assert [(t["only_a_right"], t["only_b_right"]) for t in per_seed] == counts
    for t, (a, b) in zip(per_seed, counts):
        assert t["mcnemar_p"] == pytest.approx(binomial_mcnemar(a, b))
    a, b = sum(c[0] for c in counts), sum(c[1] for c in counts)
    pooled = rows["virt"]["vs_siamese_pooled"]
    assert (pooled["only_a_right"], pooled["only_b_right"]) == (a, b)
    assert pooled["mcnemar_p"] == pytest.approx(binomial_mcnemar(a, b))
    assert pooled["seeds"] == [0, 1, 2]
    # [u; v] ran seed 0 only: its pooled test is its seed-0 test
    concat = rows["siamese_concat"]
    assert concat["vs_siamese_pooled"]["mcnemar_p"] == concat["vs_siamese"][0]["mcnemar_p"]
    assert "vs_siamese" not in rows["siamese"] and "vs_siamese" not in rows["teacher"]


def test_agreement_with_the_teacher_and_its_paired_test(fabricated):
    rows = fabricated["summary"]["tasks"]["mnli"]["rows"]
    preds = fabricated["preds"]
    teacher = preds[("teacher", 0)]
    agree = [float(np.mean(preds[("virt", s)] == teacher)) for s in (0, 1, 2)]
    assert rows["virt"]["agreement"] == pytest.approx(sum(agree) / 3)
    a = sum(int(np.sum((preds[("virt", s)] == teacher) & (preds[("siamese", s)] != teacher)))
            for s in (0, 1, 2))
    b = sum(int(np.sum((preds[("siamese", s)] == teacher) & (preds[("virt", s)] != teacher)))
            for s in (0, 1, 2))
    pooled = rows["virt"]["agreement_vs_siamese_pooled"]
    assert (pooled["only_a_agrees"], pooled["only_b_agrees"]) == (a, b)
    assert pooled["mcnemar_p"] == pytest.approx(binomial_mcnemar(a, b))


def test_f1_and_task_headings(fabricated):
    summary, grid = fabricated["summary"], fabricated["grid"]
    qqp = summary["tasks"]["qqp"]
    assert qqp["metrics"] == ["accuracy", "f1"] and qqp["rows"]["virt"]["f1"] == 0.7
    assert summary["tasks"]["mnli"]["metrics"] == ["accuracy"]
    heading = report.task_heading("mnli", summary["tasks"]["mnli"], grid)
    assert "first 10000 training pairs, 2 epochs" in heading
    assert "teacher: all training pairs, 5 epochs" in heading and f"{N} dev_matched" in heading


def fake_profiler(calls):
    def profile(config, variants, **kwargs):
        calls.append((config.hidden_size, dict(variants), kwargs))
        flops = {"cross": 6.6e9, "siamese": 5e6, "virt": 2e7}
        return {"models": {key: {"model": model, "options": options,
                                 "flops": flops[model] * kwargs["batch"],
                                 "flops_per_pair": flops[model] + 1e3 * len(options),
                                 "latency_ms": 8.0, "latency_ms_per_pair": flops[model] / 1e9,
                                 "online_part": "x"}
                           for key, (model, options) in variants.items()}}
    return profile


def test_orderings_against_the_paper_with_paired_tests(fabricated):
    """Every pair of rows with a paper number, oriented by the paper; the paired test is
    pooled over the seeds both rows ran."""
    block = fabricated["summary"]["tasks"]["mnli"]
    preds, labels = fabricated["preds"], fabricated["labels"]
    pairs = {(o["higher"], o["lower"]): o for o in block["orderings"]}
    assert set(pairs) == {("teacher", "virt"), ("teacher", "siamese_concat"),
                          ("virt", "siamese_concat")}
    o = pairs[("virt", "siamese_concat")]
    assert (o["paper_higher"], o["paper_lower"]) == (78.6, 60.2)
    virt, concat = block["rows"]["virt"], block["rows"]["siamese_concat"]
    # the order is read on the seeds both rows ran (here seed 0 only), like the test
    assert o["seeds"] == [0] == concat["seed_list"] and virt["seeds"] > 1
    assert o["ours_higher"] == virt["per_seed"][virt["seed_list"].index(0)]
    assert o["agrees"] == (o["ours_higher"] > concat["accuracy"])
    v, c = preds[("virt", 0)] == labels, preds[("siamese_concat", 0)] == labels
    a, b = int(np.sum(v & ~c)), int(np.sum(c & ~v))
    assert (o["test"]["only_a_right"], o["test"]["only_b_right"]) == (a, b)
    assert o["test"]["seeds"] == [0]
    assert o["test"]["mcnemar_p"] == pytest.approx(binomial_mcnemar(a, b))


def test_an_order_that_differs_from_the_paper_is_listed():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    rows = {"a": {"label": "A", "accuracy": 0.25, "paper": 70.0},
            "b": {"label": "B", "accuracy": 0.75, "paper": 60.0},
            "c": {"label": "C", "accuracy": 0.5, "paper": None},
            "d": {"label": "D", "accuracy": 0.1, "paper": 60.0}}
    right_b = labels.copy()
    right_b[:2] = (labels[:2] + 1) % 3            # B wrong on 2 pairs
    right_a = (labels + 1) % 3
    right_a[:2] = labels[:2]                      # A right on those 2 only
    preds = {("a", 0): (right_a, labels), ("b", 0): (right_b, labels), ("c", 0): (labels, labels)}
    orderings = report.paper_orderings(rows, preds)
    # c has no paper number; b and d tie in the paper: no order to compare
    assert [(o["higher"], o["lower"]) for o in orderings] == [("a", "b"), ("a", "d")]
    ab, ad = orderings
    assert not ab["agrees"] and ad["agrees"] and ad["test"] is None
    assert (ab["test"]["only_a_right"], ab["test"]["only_b_right"]) == (2, 6)
    text = "\n".join(report.ordering_lines({"tasks": {"mnli": {"rows": rows,
                                                             "orderings": orderings}}}))
    assert "1 of 2 pairs" in text
    assert "paper: A 70.0 above B 60.0; ours 25.0 vs 75.0" in text
    assert f"2 / 6, p = {report.pvalue(binomial_mcnemar(2, 6))} (noise, seeds 0)" in text


def test_online_cost_once_per_model_kind_and_cached(fabricated):
    grid, calls = fabricated["grid"], []
    rows = ["teacher", "siamese", "siamese_virt", "siamese_concat", "virt"]
    costs = report.online_costs(grid, rows, profiler=fake_profiler(calls), log=lambda s: None)
    assert len(calls) == 1
    hidden, variants, kwargs = calls[0]
    assert hidden == 384  # MiniLM-L6 dimensions
    # siamese_virt trains differently but runs the same online part as siamese
    assert variants == {"cross": ("cross", {}), "siamese": ("siamese", {}),
                        "siamese fusion=concat": ("siamese", {"fusion": "concat"}),
                        "virt": ("virt", {})}
    assert kwargs["offline"] is False and kwargs["batch"] == grid["online_cost"]["batch_size"]
    again = report.online_costs(grid, rows + ["wo_virt"], cache=json.loads(json.dumps(costs)),
                                profiler=fake_profiler(calls), log=lambda s: None)
    assert len(calls) == 1 and again["variants"] == costs["variants"]  # all cached
    other = dict(grid, online_cost=dict(grid["online_cost"], batch_size=4))
    report.online_costs(other, ["virt"], cache=costs, profiler=fake_profiler(calls),
                        log=lambda s: None)
    assert len(calls) == 2  # other settings: measured again


def test_progress_names_the_cells_still_to_run(fabricated):
    prog = fabricated["summary"]["progress"]
    planned = fabricated["cells"]
    assert prog["planned"] == len(planned) and prog["finished"] == 3 * 2 + 2 + 3
    assert prog["missing"]["mnli dse"] == [0, 1, 2] and "mnli siamese" not in prog["missing"]
    assert "mnli teacher" not in prog["missing"]
    assert prog["missing"]["qqp dse"] == [0] and "qqp virt" not in prog["missing"]
    text = report.format_report(fabricated["summary"], fabricated["grid"])
    line = next(l for l in text.splitlines() if l.startswith("**Partial:"))
    assert f"{prog['finished']} of {len(planned)} cells" in line and "mnli dse (seed 0, 1, 2)" in line
    finished = dict(fabricated["summary"], progress={"planned": 3, "finished": 3, "missing": {}})
    assert "Partial" not in report.format_report(finished, fabricated["grid"])
    assert "Partial" not in report.format_readme_block(finished, fabricated["grid"], "r")


def test_report_text_plots_and_readme_block(fabricated, tmp_path):
    grid, calls = fabricated["grid"], []
    summary = json.loads(json.dumps(fabricated["summary"]))
    rows = sorted({r for b in summary["tasks"].values() for r in b["rows"]})
    report.attach_costs(summary, grid, report.online_costs(
        grid, rows, profiler=fake_profiler(calls), log=lambda s: None))
    virt = summary["tasks"]["mnli"]["rows"]["virt"]
    assert virt["online"]["flops_ratio"] == pytest.approx(6.6e9 / 2e7)
    text = report.format_report(summary, grid)
    assert "summed over the seeds" in text and "one exact McNemar test" in text
    line = next(l for l in text.splitlines() if l.startswith("| VIRT-encoder |"))
    pooled = virt["vs_siamese_pooled"]
    assert f"{100 * virt['accuracy']:.1f} ± {100 * virt['spread']:.1f}" in line
    assert f"{pooled['only_a_right']} / {pooled['only_b_right']}" in line
    assert "20M" in line and "330x" in line and "| 78.6 |" in line
    assert "## What this grid can and cannot show" in text
    assert "## Where our order of the rows differs from the paper's" in text
    assert "MNLI: " in text and " pairs of rows with a paper number" in text
    bound = report.noise_points(0.5, 1000)
    assert bound == pytest.approx(100 * 1.96 * math.sqrt(0.5 / 1000)) and 4 < bound < 4.5
    names = plots.make_plots(summary, str(tmp_path))
    assert names == ["accuracy.png", "cost_accuracy.png", "tune_curves.png",
                     "training_curves.png"]
    assert all(os.path.getsize(tmp_path / n) > 1000 for n in names)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{report.README_BEGIN}\nold\n{report.README_END}\nafter\n")
    report.update_readme(report.format_readme_block(summary, grid, "results/sample"),
                         str(readme))
    new = readme.read_text()
    assert "old" not in new and new.startswith("# x\n\nbefore\n") and new.endswith("after\n")
    assert "[results/sample/REPORT.md](results/sample/REPORT.md)" in new
    assert "| VIRT-encoder | 3 |" in new and "**QQP" in new


def test_cached_costs_read_from_an_earlier_results_file(tmp_path):
    results_file = tmp_path / "results.json"
    assert report.cached_costs(str(results_file)) is None  # no earlier report
    results_file.write_text(json.dumps({"tasks": {}}))
    assert report.cached_costs(str(results_file)) is None  # an earlier report without costs
    costs = {"settings": {"batch_size": 8}, "variants": {"virt": {"flops_per_pair": 2e7}}}
    results_file.write_text(json.dumps({"tasks": {}, "online_cost": costs}))
    assert report.cached_costs(str(results_file)) == costs


def test_report_only_command_line_reuses_the_cached_costs(fabricated, tmp_path):
    """tools/reproduce.py --report_only on the fabricated runs: no training, no profiling
    (every model kind is in the results.json of an earlier report)."""
    import shutil
    out = tmp_path / "sample"
    shutil.copytree(fabricated["out"], out)
    grid = fabricated["grid"]
    rows = ["teacher", "siamese", "virt", "siamese_concat"]
    costs = report.online_costs(grid, rows, profiler=fake_profiler([]), log=lambda s: None)
    (out / "results.json").write_text(json.dumps({"online_cost": costs}))
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "reproduce.py"), "--profile=sample",
         f"--output={out}", "--report_only", "--noalignment"],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "online cost of" not in proc.stdout  # nothing profiled
    results = json.loads((out / "results.json").read_text())
    assert results["online_cost"]["variants"] == costs["variants"]
    assert results["tasks"]["mnli"]["rows"]["virt"]["online"]["flops_per_pair"] == 2e7
    text = (out / "REPORT.md").read_text()
    assert "![cost_accuracy.png](cost_accuracy.png)" in text


def test_rows_sharing_a_cost_share_one_label():
    points = [("siamese", 5e6, 60.6), ("dse", 5e6, 61.2), ("recipe", 5e6, 65.4),
              ("virt", 2e7, 61.1), ("teacher", 6.6e9, 69.6)]
    labels = plots.point_labels(points, y_close=0.8)
    assert sorted(labels) == sorted([(5e6, 65.4, "recipe"), (5e6, 61.2, "dse\nsiamese"),
                                     (2e7, 61.1, "virt"), (6.6e9, 69.6, "teacher")])
    # a looser threshold chains the whole column into one label at its top
    assert (5e6, 65.4, "recipe\ndse\nsiamese") in plots.point_labels(points, y_close=5)


def test_rows_with_identical_predictions_are_named_once():
    labels = np.array([0, 1, 2, 1])
    same = np.array([0, 1, 1, 1])
    preds = {("teacher", 0): (labels, labels), ("a", 0): (same, labels),
             ("b", 0): (same.copy(), labels), ("c", 0): (same, labels),
             ("c", 1): (labels, labels), ("b", 1): (same, labels)}
    found = report.identical_rows(preds)
    # a and b agree at their one common seed; c differs from b at seed 1; a and c share seed 0
    assert {tuple(i["rows"]) for i in found} == {("a", "b"), ("a", "c")}
    assert all(i["pairs"] == 4 for i in found)
    block = {"rows": {r: {"label": r.upper()} for r in "abc"}, "identical": found[:1]}
    assert report.identical_lines(block) == [
        "- A and B predict the same label on all 4 pairs (seed 0): one result under two "
        "names, not two."]


def test_order_of_rows_with_different_seeds_is_read_on_common_seeds():
    many = {"accuracy": 0.62, "seed_list": [0, 1, 2], "per_seed": [0.60, 0.63, 0.63]}
    one = {"accuracy": 0.61, "seed_list": [0], "per_seed": [0.61]}
    assert report._on_common_seeds(many, one) == (0.60, 0.61, [0])
    other = {"accuracy": 0.5, "seed_list": [5], "per_seed": [0.5]}
    assert report._on_common_seeds(many, other) == (0.62, 0.5, None)


def test_each_row_with_l_virt_is_paired_with_its_twin_without_it():
    grid = grid_lib.load_grid(profile="sample")
    rows = ["teacher", "siamese", "siamese_virt", "siamese_concat", "siamese_concat_virt",
            "wo_virt", "wo_virt_a", "virt", "deformer", "deformer_virt", "dse", "recipe"]
    # wo_virt_a (simple head + L_virt) has no twin without L_virt among these rows
    assert sorted(report.virt_pairs(grid, "mnli", rows)) == sorted([
        ("siamese_virt", "siamese"), ("siamese_concat_virt", "siamese_concat"),
        ("virt", "wo_virt"), ("deformer_virt", "deformer")])


def test_virt_effect_is_pooled_over_the_seeds_both_rows_ran():
    labels = np.array([0, 1, 2, 0, 1, 2])
    wrong = (labels + 1) % 3
    with_virt = {0: np.array([0, 1, 2, 0, 0, 0]), 1: np.array([0, 1, 2, 1, 1, 2])}
    without = {0: np.array([0, 1, 0, 0, 0, 0]), 2: wrong}
    preds = {("teacher", 0): (labels, labels)}
    preds.update({("v", s): (p, labels) for s, p in with_virt.items()})
    preds.update({("b", s): (p, labels) for s, p in without.items()})
    rows = {"v": {"paper": 78.6}, "b": {"paper": 76.6}}
    e = report.virt_effect(rows, preds, preds[("teacher", 0)], "v", "b")
    assert e["seeds"] == [0]                       # seed 1 and 2 are not common
    assert (e["right"]["only_a_right"], e["right"]["only_b_right"]) == (1, 0)
    assert e["accuracy"] == pytest.approx(4 / 6) and e["base_accuracy"] == pytest.approx(3 / 6)
    assert e["agrees"]["only_a_right"] == 1 and e["paper_difference"] == pytest.approx(2.0)
    assert report.virt_effect(rows, {("v", 1): preds[("v", 1)]}, None, "v", "b") is None
    text = "\n".join(report.virt_effect_lines(
        {"tasks": {"mnli": {"rows": {"v": {"label": "V"}, "b": {"label": "B"}},
                            "virt_effects": [e]}}}))
    assert "| MNLI | V | 0 | 66.7 | 50.0 | +16.7 | 1 / 0, p = 1 | 1 / 0, p = 1 | +2.0 |" in text
    two = report.virt_effect_lines(
        {"tasks": {t: {"rows": {"v": {"label": "V"}}, "virt_effects": [e]}
                   for t in ("mnli", "qqp")}})
    assert [line.split(" | ")[0] for line in two if line.startswith("| ")][1:] == [
        "| MNLI", "| QQP"]                         # one table, a row per task
    assert sum(line.startswith("| task |") for line in two) == 1


def test_readme_block_carries_the_l_virt_table(fabricated):
    summary = json.loads(json.dumps(fabricated["summary"]))
    assert "What L_virt adds" not in report.format_readme_block(summary, fabricated["grid"],
                                                                "results/sample")
    effect = {"row": "virt", "base": "siamese", "seeds": [0], "accuracy": 0.61,
              "base_accuracy": 0.60, "right": {"only_a_right": 30, "only_b_right": 20,
                                               "mcnemar_p": 0.2}}
    summary["tasks"]["mnli"]["virt_effects"] = [effect]
    block = report.format_readme_block(summary, fabricated["grid"], "results/sample")
    assert "What L_virt adds" in block
    assert "| MNLI | VIRT-encoder | 0 | 61.0 | 60.0 | +1.0 |" in block


def test_rows_at_nearby_costs_share_a_label_but_far_ones_do_not():
    points = [("virt", 1.93e7, 61.1), ("poly", 1.55e7, 59.4), ("dipair", 8.6e7, 49.8)]
    labels = plots.point_labels(points, y_close=2.0)
    assert sorted(labels) == [(1.93e7, 61.1, "virt\npoly"), (8.6e7, 49.8, "dipair")]
    assert len(plots.point_labels(points, y_close=2.0, x_decades=0.01)) == 3


def test_gap_closed_against_the_labelled_pairs_that_reached_each_row(tmp_path):
    """A student whose teacher saw more labelled pairs is measured against the Siamese on
    all of them (siamese_all); a student whose teacher saw only its own pairs (the recipe
    under teacher_10k, its pool truly unlabelled) against the fair Siamese and its own
    teacher."""
    out = str(tmp_path)
    rng = np.random.default_rng(11)
    grid = grid_lib.load_grid(profile="sample")
    labels = rng.integers(0, 3, N)
    preds = {("teacher", 0): noisy(rng, labels, 0.85), ("teacher_10k", 0): noisy(rng, labels, 0.75)}
    for seed in (0, 1):
        for row, share in (("siamese", 0.5), ("siamese_all", 0.6), ("recipe", 0.7),
                           ("recipe_unlabelled", 0.65)):
            preds[(row, seed)] = noisy(rng, labels, share)
    for (row, seed), p in preds.items():
        write_cell(out, grid_lib.cell_dir("mnli", row, 5e-5, seed), p, labels)
    cells = grid_lib.plan_cells(grid, tasks=["mnli"])
    rows = report.summarize(cells, grid, out)["tasks"]["mnli"]["rows"]
    acc = {k: float(np.mean(p == labels)) for k, p in preds.items()}

    def mean(row):
        return (acc[(row, 0)] + acc[(row, 1)]) / 2

    assert (rows["recipe"]["labelled"], rows["recipe"]["labelled_via_teacher"]) == (10000, 17761)
    assert rows["recipe"]["same_labels_base"] == "siamese_all"
    assert rows["recipe"]["gap_closed_same_labels"] == pytest.approx(
        (mean("recipe") - mean("siamese_all")) / (acc[("teacher", 0)] - mean("siamese_all")))
    assert rows["recipe"]["gap_closed_vs_siamese"] == pytest.approx(
        (mean("recipe") - mean("siamese")) / (acc[("teacher", 0)] - mean("siamese")))
    unl = rows["recipe_unlabelled"]
    assert unl["teacher_row"] == "teacher_10k" and unl["same_labels_base"] == "siamese"
    share = (mean("recipe_unlabelled") - mean("siamese")) / (acc[("teacher_10k", 0)] -
                                                             mean("siamese"))
    assert unl["gap_closed_same_labels"] == pytest.approx(share)
    assert unl["gap_closed_vs_siamese"] == pytest.approx(share)  # its teacher: teacher_10k
    agree = [float(np.mean(preds[("recipe_unlabelled", s)] == preds[("teacher_10k", 0)]))
             for s in (0, 1)]
    assert unl["agreement"] == pytest.approx(sum(agree) / 2)
    # the paired test against the Siamese on the same labelled pairs, pooled over seeds
    a = sum(int(np.sum((preds[("recipe", s)] == labels) & (preds[("siamese_all", s)] != labels)))
            for s in (0, 1))
    b = sum(int(np.sum((preds[("siamese_all", s)] == labels) & (preds[("recipe", s)] != labels)))
            for s in (0, 1))
    pooled = rows["recipe"]["vs_same_labels_pooled"]
    assert (pooled["only_a_right"], pooled["only_b_right"], pooled["seeds"]) == (a, b, [0, 1])
    assert pooled["mcnemar_p"] == pytest.approx(binomial_mcnemar(a, b))
    # teachers and bases close no gap; the table says what each row's teacher saw
    for row in ("teacher", "teacher_10k", "siamese", "siamese_all"):
        assert "gap_closed_same_labels" not in rows[row]
    assert "gap_closed_vs_siamese" not in rows["teacher_10k"]
    table = "\n".join(report.table_lines({"rows": rows, "metrics": ["accuracy"]}, compact=True))
    line = next(l for l in table.splitlines() if l.startswith("| Siamese + distill_aug recipe"))
    assert "| 10000 / 17761 |" in line and f"{a} / {b}, p = " in line
    assert "| 17761 |" in next(l for l in table.splitlines() if "teacher's labelled" in l)
