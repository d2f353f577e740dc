"""The grid's results: ``results.json``, ``REPORT.md`` and the README's results block.

Per task and row (cells of the same row at several seeds):

* dev accuracy (and F1 when the task reports it): mean ± sample standard
  deviation over seeds (`virt_tf.evaluation.stats.mean_spread`);
* share of the teacher gap closed, ``(row - base) / (teacher - base)`` on the
  mean accuracies, against the fair Siamese (``siamese``) and against the paper's
  ``[u; v]`` Siamese (``siamese_concat``);
* exact two-sided McNemar test of the row against the fair Siamese of the same
  seed on the same dev pairs, per seed, and *pooled over seeds*: the discordant
  counts (pairs only the row gets right, pairs only the Siamese gets right) are
  summed over the seeds both ran, and one exact McNemar test is run on the sums;
* agreement with the teacher: the share of dev pairs where the row predicts the
  teacher's label, and the same paired test on agreeing instead of being right
  (pairs only the row agrees with the teacher vs only the Siamese), per seed and
  pooled the same way;
* L_virt's part: each row trained with L_virt against its twin without it (the same
  model and options, alpha 0), the same paired tests pooled over the seeds both ran;
* rows with identical predictions (one configuration under two names), and every pair
  of rows the paper orders, with our order on the seeds both ran and its paired test;
* train minutes (mean over seeds), the online cost per pair of the row's model
  at MiniLM-L6 dimensions (`virt_tf.benchmarks.profiling`, computed once per model kind and
  kept in ``results.json``), and the paper's number.

The runs are read through the run-directory contract (`virt_tf.rundir`: metrics, training
log) and `virt_tf.evaluation.predictions`. No TensorFlow unless a model kind's online cost
has to be measured (`online_costs`).
"""
import math
import os
import statistics

import numpy as np

from virt_tf import rundir
from virt_tf.benchmarks import profiling
from virt_tf.evaluation import predictions
from virt_tf.evaluation.stats import gap_closed, mcnemar_exact, mean_spread, paired
from virt_tf.models.registry import same_online_part
from virt_tf.reproduction import grid as grid_lib
from virt_tf.reproduction import markdown_blocks

RESULTS_FILE = "results.json"  # in the grid's output folder: the summary below
REPORT_FILE = "REPORT.md"  # beside it: the summary as text, with the plots
README_BEGIN, README_END = markdown_blocks.markers("results")
# Run options that change a model's online part (the rest, e.g. virt_alpha, only training).
ONLINE_OPTIONS = ("fusion", "virt_head", "pool_padding", "deformer_joint_layers",
                  "dipair_x_tokens", "dipair_y_tokens", "poly_codes", "poly_first_m")
BASES = ("siamese", "siamese_concat")


# ------------------------------------------------------------------------- cells, rows
def cell_predictions(output, cell_dir):
    """``(predicted labels, labels)`` of the predictions a cell saved, or None."""
    saved = predictions.read(os.path.join(output, cell_dir))
    return None if saved is None else saved[:2]


def cell_record(cell, metrics, output):
    """What results.json keeps of a finished cell."""
    return {**{k: cell[k] for k in ("task", "row", "seed", "lr", "dir")},
            "accuracy": metrics["accuracy"], "f1": metrics.get("f1"),
            "tune_accuracy": metrics.get("tune", {}).get("accuracy"),
            "selected_epoch": (metrics.get("selected_epoch") or {}).get("epoch"),
            "train_seconds": metrics.get("train_seconds"),
            "eval_seconds": metrics.get("eval_seconds"),
            "total_steps": metrics.get("total_steps"), "epochs": metrics.get("epochs"),
            "history": [{k: h.get(k) for k in ("epoch", "val_accuracy", "task_loss",
                                               "virt_loss", "accuracy")}
                        for h in rundir.read_train_log(os.path.join(output, cell["dir"]),
                                                       "epoch")]}


def pooled_test(per_seed, only_a="only_a_right", only_b="only_b_right"):
    """One exact McNemar test on the discordant counts summed over seeds."""
    a = sum(t[only_a] for t in per_seed)
    b = sum(t[only_b] for t in per_seed)
    return {only_a: a, only_b: b, "mcnemar_p": mcnemar_exact(a, b),
            "seeds": [t["seed"] for t in per_seed]}


def row_summary(mine, grid, task, row, lr):
    """Mean ± sd over the kept cells of one row."""
    kept = [c for c in mine if lr is None or c["lr"] == lr]
    paper_lr = float(grid["protocol"]["paper_lr"])
    at_paper = [c for c in mine if c["lr"] == paper_lr and c["seed"] == mine[0]["seed"]]
    acc, spread = mean_spread(c["accuracy"] for c in kept)
    out = {"label": grid.get("labels", {}).get(row, row), "accuracy": acc, "spread": spread,
           "seeds": len(kept), "seed_list": [c["seed"] for c in kept],
           "lr": lr if lr is not None else kept[0]["lr"],
           "per_seed": [c["accuracy"] for c in kept],
           "tune_accuracy": mean_spread(c["tune_accuracy"] for c in kept
                                        if c["tune_accuracy"] is not None)[0],
           "train_seconds": statistics.fmean(c["train_seconds"] or 0 for c in kept),
           "paper_lr_accuracy": at_paper[0]["accuracy"] if at_paper else None,
           "paper": grid.get("paper", {}).get(task, {}).get(row)}
    if all(c.get("f1") is not None for c in kept):
        out["f1"], out["f1_spread"] = mean_spread(c["f1"] for c in kept)
    return out


def summarize(cells, grid, output):
    """results.json's content: per cell, per row (mean ± sd), gaps, paired tests."""
    results = grid_lib.read_results(output, cells)
    out = {"profile": grid["profile"], "protocol": grid["protocol"], "tasks": {}, "cells": []}
    for cell in cells:
        if cell["dir"] in results:
            out["cells"].append(cell_record(cell, results[cell["dir"]], output))
    for task in dict.fromkeys(c["task"] for c in out["cells"]):
        task_cells = [c for c in out["cells"] if c["task"] == task]
        rows = {}
        for row in grid["row_order"]:
            mine = [c for c in task_cells if c["row"] == row]
            if mine:
                lr = (grid_lib.chosen_lr(cells, results, task, row)
                      if row in grid.get("tuned", []) else None)
                rows[row] = row_summary(mine, grid, task, row, lr)
        kept = {(c["row"], c["seed"]): c for c in task_cells
                if c["row"] in rows and c["lr"] == rows[c["row"]]["lr"]}
        preds = {key: cell_predictions(output, c["dir"]) for key, c in kept.items()}
        teacher = preds.get(("teacher", 0))
        labels = next((p[1] for p in preds.values() if p is not None), np.array([]))
        _labelled(rows, grid, task)
        _gaps(rows)
        for (row, seed), p in preds.items():  # agreement with the row's own teacher
            own = preds.get((rows[row].get("teacher_row") or "teacher", 0))
            if p is not None and not rows[row].get("is_teacher") and own is not None and \
                    np.array_equal(own[1], p[1]):
                rows[row].setdefault("agreement_per_seed", []).append(
                    float(np.mean(p[0] == own[0])))
        for row, r in rows.items():
            if r.get("same_labels_base") and r["same_labels_base"] != row:
                r["vs_same_labels"] = seed_tests(preds, row, r["same_labels_base"])
                if r["vs_same_labels"]:
                    r["vs_same_labels_pooled"] = pooled_test(r["vs_same_labels"])
            if row in ("teacher", "siamese"):
                continue
            r["vs_siamese"] = seed_tests(preds, row, "siamese")
            if teacher is not None and r.get("teacher_row") in (None, "teacher") and all(
                    np.array_equal(teacher[1], preds[(row, t["seed"])][1])
                    for t in r["vs_siamese"]):  # same pairs and teacher
                r["agreement_vs_siamese"] = [
                    {"only_a_agrees": t["only_a_right"], "only_b_agrees": t["only_b_right"],
                     "mcnemar_p": t["mcnemar_p"], "seed": t["seed"]}
                    for t in seed_tests(preds, row, "siamese", against=teacher[0])]
            for key in ("vs_siamese", "agreement_vs_siamese"):
                if not r.get(key):
                    r.pop(key, None)
        orderings = paper_orderings(rows, preds)
        identical = identical_rows(preds)
        effects = [virt_effect(rows, preds, teacher, row, base)
                   for row, base in virt_pairs(grid, task, rows)]
        for r in rows.values():
            if r.get("agreement_per_seed"):
                r["agreement"], r["agreement_spread"] = mean_spread(r["agreement_per_seed"])
            if r.get("vs_siamese"):
                r["vs_siamese_pooled"] = pooled_test(r["vs_siamese"])
            if r.get("agreement_vs_siamese"):
                r["agreement_vs_siamese_pooled"] = pooled_test(
                    r["agreement_vs_siamese"], "only_a_agrees", "only_b_agrees")
        out["tasks"][task] = {"rows": rows, "examples": int(len(labels)),
                              "metrics": ["accuracy"] + (["f1"] if any(
                                  "f1" in r for r in rows.values()) else []),
                              "orderings": orderings, "identical": identical,
                              "virt_effects": [e for e in effects if e]}
    out["progress"] = progress(cells, results)
    return out


def seed_tests(preds, a, b, against=None):
    """Per-seed paired tests of rows ``a`` and ``b`` on the seeds both ran on the same pairs:
    on being right, or, given ``against`` (e.g. the teacher's predictions), on agreeing
    with it."""
    tests = []
    for row, seed in sorted(preds):
        p, q = preds[(row, seed)], preds.get((b, seed))
        if row != a or p is None or q is None or not np.array_equal(p[1], q[1]):
            continue
        tests.append(dict(paired(p[0], q[0], p[1] if against is None else against), seed=seed))
    return tests


def virt_pairs(grid, task, rows):
    """``[(row, base)]``: each row trained with L_virt beside the row of ``rows`` that differs
    from it only by having L_virt off (the same model and resolved options, alpha 0)."""
    resolved = {}
    for row in rows:
        if row == "teacher":
            continue
        model, cfg = grid_lib.row_config(grid, task, row)
        key = (model, sorted((k, repr(v)) for k, v in cfg.items() if k != "virt_alpha"))
        resolved[row] = (key, float(cfg.get("virt_alpha") or 0))
    out = []
    for row, (key, alpha) in resolved.items():
        twins = [base for base, (k, a) in resolved.items() if a == 0 and k == key]
        if alpha > 0 and twins:
            out.append((row, twins[0]))
    return out


def virt_effect(rows, preds, teacher, row, base):
    """L_virt's part of a row: the row against its ``base`` (the same row without L_virt)
    on the seeds both ran: mean accuracies, the paired test on being right and on agreeing
    with the teacher, pooled over those seeds; None without common predictions."""
    right = seed_tests(preds, row, base)
    if not right:
        return None
    seeds = [t["seed"] for t in right]

    def accuracy(name):
        return statistics.fmean(float(np.mean(preds[(name, s)][0] == preds[(name, s)][1]))
                                for s in seeds)
    out = {"row": row, "base": base, "seeds": seeds, "accuracy": accuracy(row),
           "base_accuracy": accuracy(base), "right": pooled_test(right)}
    if teacher is not None and all(np.array_equal(teacher[1], preds[(row, s)][1])
                                   for s in seeds):
        out["agrees"] = pooled_test(seed_tests(preds, row, base, against=teacher[0]))
    paper_row, paper_base = rows[row].get("paper"), rows[base].get("paper")
    if paper_row is not None and paper_base is not None:
        out["paper_difference"] = round(paper_row - paper_base, 2)
    return out


def virt_effect_lines(summary):
    """The table of what L_virt adds to each row that has a twin without it: one table,
    every task's rows under a ``task`` column."""
    lines = []
    for task, block in summary["tasks"].items():
        rows = block["rows"]
        for e in block.get("virt_effects") or []:
            right, agree = e["right"], e.get("agrees")
            cells = [task.upper(), rows[e["row"]]["label"], ", ".join(map(str, e["seeds"])),
                     pct(e["accuracy"]), pct(e["base_accuracy"]),
                     f"{100 * (e['accuracy'] - e['base_accuracy']):+.1f}",
                     f"{right['only_a_right']} / {right['only_b_right']}, "
                     f"p = {pvalue(right['mcnemar_p'])}",
                     f"{agree['only_a_right']} / {agree['only_b_right']}, "
                     f"p = {pvalue(agree['mcnemar_p'])}" if agree else "-",
                     f"{e['paper_difference']:+.1f}" if "paper_difference" in e else "-"]
            lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return []
    return ["| task | row | seeds | with L_virt | without | difference | only with / only "
            "without right, p | agreeing with the teacher: only with / only without, p | "
            "paper's difference |", "|" + "---|" * 9] + lines + [""]


def identical_rows(preds):
    """Pairs of student rows whose predicted labels are equal on every pair at every seed
    both ran: ``[{"rows": [a, b], "seeds": [...], "pairs": n}]`` (e.g. two names of one
    configuration; such a pair is one result, not two)."""
    by_row = {}
    for (row, seed), p in sorted(preds.items()):
        if p is not None and row != "teacher":
            by_row.setdefault(row, {})[seed] = p
    names, out = list(by_row), []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            seeds = sorted(set(by_row[a]) & set(by_row[b]))
            same = [s for s in seeds if np.array_equal(by_row[a][s][1], by_row[b][s][1])
                    and np.array_equal(by_row[a][s][0], by_row[b][s][0])]
            if seeds and same == seeds:
                out.append({"rows": [a, b], "seeds": seeds,
                            "pairs": int(len(by_row[a][seeds[0]][0]))})
    return out


def identical_lines(block):
    """REPORT.md's note on rows that are one result under two names."""
    rows = block["rows"]
    return [f"- {rows[i['rows'][0]]['label']} and {rows[i['rows'][1]]['label']} predict the "
            f"same label on all {i['pairs']} pairs (seed {', '.join(map(str, i['seeds']))}): "
            "one result under two names, not two." for i in block.get("identical") or []]


def paper_orderings(rows, preds):
    """Every pair of rows the paper reports, with our order beside the paper's.

    ``rows``: a task's row summaries (``accuracy``, ``paper``); ``preds``: ``{(row, seed):
    (predictions, labels)}``. For each pair, ``higher`` is the row the paper puts above
    (pairs the paper ties are left out), with both papers' and our accuracies, whether our
    order agrees, and the paired test of the two rows on the same pairs, pooled over the
    seeds both ran (summed discordant counts; ``None`` without common predictions).
    """
    named = [row for row, r in rows.items() if r.get("paper") is not None]
    out = []
    for i, a in enumerate(named):
        for b in named[i + 1:]:
            if rows[a]["paper"] == rows[b]["paper"]:
                continue
            hi, lo = (a, b) if rows[a]["paper"] > rows[b]["paper"] else (b, a)
            tests = seed_tests(preds, hi, lo)
            acc_hi, acc_lo, seeds = _on_common_seeds(rows[hi], rows[lo])
            out.append({"higher": hi, "lower": lo, "paper_higher": rows[hi]["paper"],
                        "paper_lower": rows[lo]["paper"], "ours_higher": acc_hi,
                        "ours_lower": acc_lo, "seeds": seeds, "agrees": acc_hi > acc_lo,
                        "test": pooled_test(tests) if tests else None})
    return out


def _on_common_seeds(a, b):
    """Mean accuracies of two rows over the seeds both ran (all of each row's when they
    share none, or a row has no per-seed record), and those seeds."""
    seeds = sorted(set(a.get("seed_list") or []) & set(b.get("seed_list") or []))
    if not seeds or "per_seed" not in a or "per_seed" not in b:
        return a["accuracy"], b["accuracy"], None

    def mean(r):
        return statistics.fmean(acc for s, acc in zip(r["seed_list"], r["per_seed"])
                                if s in seeds)
    return mean(a), mean(b), seeds


def ordering_lines(summary):
    """REPORT.md's list of the pairs of rows our results order otherwise than the paper."""
    lines = []
    for task, block in summary["tasks"].items():
        rows, pairs = block["rows"], block.get("orderings") or []
        differ = [o for o in pairs if not o["agrees"]]
        lines.append(f"- {task.upper()}: {len(pairs) - len(differ)} of {len(pairs)} pairs of "
                     "rows with a paper number in the paper's order"
                     + ("." if not differ else "; otherwise:"))
        for o in differ:
            t, test = o["test"], "no paired test"
            if t:
                verdict = "significant" if t["mcnemar_p"] < 0.05 else "noise"
                test = (f"only {rows[o['higher']]['label']} / only {rows[o['lower']]['label']} "
                        f"right {t['only_a_right']} / {t['only_b_right']}, p = "
                        f"{pvalue(t['mcnemar_p'])} ({verdict}, seeds "
                        f"{', '.join(map(str, t['seeds']))})")
            at = (f" (seed {', '.join(map(str, o['seeds']))})" if o.get("seeds") else "")
            lines.append(f"  - paper: {rows[o['higher']]['label']} {o['paper_higher']} above "
                         f"{rows[o['lower']]['label']} {o['paper_lower']}; ours{at} "
                         f"{pct(o['ours_higher'])} vs {pct(o['ours_lower'])}: {test}")
    return lines


def progress(cells, results):
    """Finished cells of the plan and, per task and row, the seeds still to run."""
    missing = {}
    for cell in cells:
        if cell["dir"] not in results:
            missing.setdefault(f"{cell['task']} {cell['row']}", []).append(cell["seed"])
    return {"planned": len(cells), "finished": len(cells) - sum(map(len, missing.values())),
            "missing": missing}


def progress_lines(summary):
    """One paragraph saying how much of the grid the tables hold (nothing when finished)."""
    prog = summary.get("progress") or {}
    if not prog.get("missing"):
        return []
    todo = "; ".join(f"{name} (seed {', '.join(map(str, seeds))})"
                     for name, seeds in prog["missing"].items())
    return [f"**Partial: {prog['finished']} of {prog['planned']} cells finished.** The tables "
            "show the finished cells only (column `seeds`); rows, spreads and tests will change "
            f"as the rest lands. Not run yet: {todo}.", ""]


def _labelled(rows, grid, task):
    """Each row's labelled training pairs, its own and those of the teacher whose outputs
    reach it (`virt_tf.reproduction.grid.labelled_pairs`), its teacher row, and the Siamese
    row trained on as many labelled pairs as reached it (``same_labels_base``)."""
    plain = {}
    for row, r in rows.items():
        own, taught = grid_lib.labelled_pairs(grid, task, row)
        r["labelled"], r["labelled_via_teacher"] = own, taught
        r["teacher_row"] = grid_lib.row_teacher(grid, row) if taught is not None else None
        r["is_teacher"] = grid_lib.row_teacher(grid, row) is None
        if is_plain_siamese(grid, task, row):
            plain.setdefault(own, row)
    for row, r in rows.items():
        if r["labelled"] is None or r["is_teacher"]:
            continue  # a teacher row, or a task whose data size grid.yaml does not know
        seen = max(r["labelled"], r["labelled_via_teacher"] or 0)
        r["same_labels_base"] = plain.get(seen)


def is_plain_siamese(grid, task, row):
    """Whether ``row`` is the fair Siamese: fusion features, no teacher term, no extra
    pairs (the base a student's gain is measured against)."""
    model, cfg = grid_lib.row_config(grid, task, row)
    return (model == "siamese" and not any(grid_lib.teacher_use(cfg, model))
            and cfg.get("fusion") == "paper" and not cfg.get("augment"))


def _gaps(rows):
    """Share of the teacher gap each row closes: against each Siamese base present (with
    the row's own teacher), and against the Siamese trained on every labelled pair that
    reached the row (``gap_closed_same_labels``)."""
    for row, r in rows.items():
        teacher = rows.get(r.get("teacher_row") or "teacher", {}).get("accuracy")
        if teacher is None or r.get("is_teacher"):
            continue
        for base in BASES:
            if base in rows and row != base:
                r[f"gap_closed_vs_{base}"] = gap_closed(r["accuracy"], rows[base]["accuracy"],
                                                       teacher)
        base = r.get("same_labels_base")
        if base in rows and base != row and r.get("teacher_row"):
            r["gap_closed_same_labels"] = gap_closed(r["accuracy"], rows[base]["accuracy"],
                                                     teacher)


# ---------------------------------------------------------------------------- online cost
def online_variant(grid, row):
    """``(key, model, options)``: the online part of a row; rows that differ only in
    training (L_virt, distillation, DSE's model) share a key and one measurement."""
    spec = dict(grid["rows"][row])
    model = same_online_part(spec.pop("model"))
    options = {k: spec[k] for k in ONLINE_OPTIONS if spec.get(k) is not None}
    key = " ".join([model] + [f"{k}={v}" for k, v in sorted(options.items())])
    return key, model, options


def cached_costs(results_file):
    """The ``online_cost`` kept in an earlier ``results.json``, or None (no file, no key)."""
    if not os.path.exists(results_file):
        return None
    return rundir.read_json(results_file).get("online_cost")


def online_costs(grid, rows, cache=None, profiler=None, log=print):
    """Online cost per pair of every row's model kind: ``{"settings", "variants"}``.

    Kinds already in ``cache`` (the ``online_cost`` of an earlier results.json,
    measured with the same settings) are reused; the others are profiled with
    ``profiler`` (default `virt_tf.benchmarks.profiling.profile`) at the dimensions of
    ``grid["online_cost"]["encoder"]``, without the offline encode.
    """
    settings = dict(grid["online_cost"])
    known = dict((cache or {}).get("variants", {})) if (cache or {}).get(
        "settings") == settings else {}
    wanted = {}
    for row in rows:
        key, model, options = online_variant(grid, row)
        if key not in known:
            wanted[key] = (model, options)
    if wanted:
        profiler = profiler or profiling.profile
        log(f"online cost of {', '.join(wanted)} ({settings['encoder']} dimensions, batch "
            f"{settings['batch_size']}, x {settings['query_pieces']} + y "
            f"{settings['doc_pieces']} pieces)")
        measured = profiler(profiling.preset_config(settings["encoder"]), wanted,
                            batch=settings["batch_size"], query_pieces=settings["query_pieces"],
                            doc_pieces=settings["doc_pieces"], warmup=settings["warmup"],
                            repeats=settings["repeats"], log=lambda s: None, offline=False)
        for key, m in measured["models"].items():
            known[key] = {k: m[k] for k in ("model", "options", "flops", "flops_per_pair",
                                            "latency_ms", "latency_ms_per_pair",
                                            "online_part")}
    return {"settings": settings, "variants": known}


def attach_costs(summary, grid, costs):
    """Each row's online cost and its ratio to the cross-encoder's (the teacher's)."""
    variants = costs["variants"]
    cross = next((v for v in variants.values() if v["model"] == "cross"), None)
    for block in summary["tasks"].values():
        for row, r in block["rows"].items():
            v = variants.get(online_variant(grid, row)[0])
            if v is None:
                continue
            r["online"] = {"flops_per_pair": v["flops_per_pair"],
                           "latency_ms_per_pair": v["latency_ms_per_pair"]}
            if cross:
                r["online"]["flops_ratio"] = cross["flops_per_pair"] / v["flops_per_pair"]
                r["online"]["latency_ratio"] = (cross["latency_ms_per_pair"] /
                                                v["latency_ms_per_pair"])
    summary["online_cost"] = costs
    return summary


# --------------------------------------------------------------------------------- text
def pct(x, digits=1):
    """A share as a percentage with ``digits`` decimals; ``-`` for None or nan."""
    return "-" if x is None or x != x else f"{100 * x:.{digits}f}"


def pvalue(p):
    """A p-value in two significant digits (``1e-05`` below 0.001); ``-`` for None."""
    return "-" if p is None else (f"{p:.2g}" if p >= 1e-3 else f"{p:.0e}")


def noise_points(accuracy, pairs):
    """Half-width, in points, of a 95% interval for the difference of two accuracies near
    ``accuracy`` on ``pairs`` pairs each (unpaired normal approximation)."""
    if not pairs or accuracy is None or accuracy != accuracy:
        return float("nan")
    return 100 * 1.96 * math.sqrt(2 * accuracy * (1 - accuracy) / pairs)


def task_heading(task, block, grid, overrides=None):
    """``MNLI (data ..., students: ..., teacher: ..., N dev pairs)``."""
    spec = grid["tasks"][task]
    teacher = grid_lib.cell_options({"task": task, "row": "teacher"}, grid, overrides)
    student = grid_lib.cell_options({"task": task, "row": "student"}, grid, overrides)
    parts = [f"data `{spec['data']}`"]
    if student.get("max_train_examples"):
        parts.append(f"students: first {student['max_train_examples']} training pairs, "
                     f"{student['epochs']} epochs")
    else:
        parts.append(f"students: {student['epochs']} epochs")
    train = (f"first {teacher['max_train_examples']}" if teacher.get("max_train_examples")
             else "all")
    parts.append(f"teacher: {train} training pairs, {teacher['epochs']} epochs")
    parts.append(f"{block['examples']} {spec.get('eval_split', 'dev')} pairs")
    return f"{task.upper()} ({'; '.join(parts)})"


def table_lines(block, compact=False):
    """A task's markdown table (compact: the README's columns)."""
    rows = block["rows"]
    f1 = "f1" in block["metrics"]
    head = ["row", "seeds", "dev acc" + (" (mean ± sd)" if not compact else "")]
    head += ["F1"] if f1 else []
    head += ["labelled pairs: own / its teacher's"]
    head += ["gap closed (fair)"] + ([] if compact else ["gap closed ([u; v])"])
    head += ["gap closed, same labelled pairs",
             "vs Siamese on the same labelled pairs (pooled): only row / only Siamese right, p",
             "vs fair Siamese (pooled): only row / only Siamese right, p"]
    if not compact:
        head += ["per seed", "tune acc"]
    head += ["agrees with teacher"]
    if not compact:
        head += ["agreeing vs fair Siamese (pooled), p", "train min"]
    head += ["online FLOPs/pair"] + ([] if compact else ["latency/pair", "x fewer FLOPs"])
    head += ["paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, r in rows.items():
        sd = f" ± {pct(r['spread'])}" if r["seeds"] > 1 else ""
        cells = [r["label"], str(r["seeds"]), pct(r["accuracy"]) + sd]
        if f1:
            cells.append(pct(r.get("f1")) + (f" ± {pct(r['f1_spread'])}"
                                             if r["seeds"] > 1 and "f1" in r else ""))
        cells.append(labelled_text(r))
        cells.append(_share(r.get("gap_closed_vs_siamese")))
        if not compact:
            cells.append(_share(r.get("gap_closed_vs_siamese_concat")))
        cells.append(_share(r.get("gap_closed_same_labels")))
        cells.append(_pooled(r.get("vs_same_labels_pooled")))
        cells.append(_pooled(r.get("vs_siamese_pooled")))
        if not compact:
            cells.append("; ".join(f"s{t['seed']}: {t['only_a_right']}/{t['only_b_right']}, "
                                   f"{pvalue(t['mcnemar_p'])}"
                                   for t in r.get("vs_siamese", [])) or "-")
            cells.append(pct(r.get("tune_accuracy")))
        cells.append(pct(r.get("agreement")) if not r.get("is_teacher", row == "teacher")
                     else "-")
        if not compact:
            agree = r.get("agreement_vs_siamese_pooled")
            cells.append(f"{agree['only_a_agrees']} / {agree['only_b_agrees']}, "
                         f"p = {pvalue(agree['mcnemar_p'])}" if agree else "-")
            cells.append(f"{r['train_seconds'] / 60:.0f}")
        online = r.get("online")
        cells.append(profiling.format_flops(online["flops_per_pair"]) if online else "-")
        if not compact:
            cells.append(f"{online['latency_ms_per_pair']:.3g} ms" if online else "-")
            cells.append(f"{online['flops_ratio']:.4g}x" if online and "flops_ratio" in online
                         else "-")
        cells.append(str(r["paper"]) if r["paper"] is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def labelled_text(r):
    """``10000 / 17761`` (a student whose teacher saw more), ``10000`` (its own only)."""
    own, taught = r.get("labelled"), r.get("labelled_via_teacher")
    if own is None:
        return "-"
    return str(own) if taught is None else f"{own} / {taught}"


def _pooled(test):
    return (f"{test['only_a_right']} / {test['only_b_right']}, p = {pvalue(test['mcnemar_p'])}"
            if test else "-")


def _share(x):
    return "-" if x is None or x != x else f"{100 * x:.0f}%"


def protocol_lines(summary, grid):
    """REPORT.md's protocol: profile, epoch selection, learning rates, what each column is."""
    lr_grid = summary.get("settings", {}).get("lr_grid") or grid["protocol"]["lr_grid"]
    if len(lr_grid) < 2:
        lr = f"- Learning rate {float(lr_grid[0]):g} for every row (no learning-rate search)."
    else:
        lr = (f"- Learning rate {float(grid['protocol']['paper_lr']):g} (paper) for every row; "
              f"rows {', '.join(grid.get('tuned', []))} choose theirs from "
              f"{', '.join(f'{float(x):g}' for x in lr_grid)} on the tune split at the first "
              "seed.")
    cost = grid["online_cost"]
    return [
        f"- Profile `{grid['profile']}`: {grid.get('description', '')}.",
        f"- The model kept is the epoch with the best accuracy on the seeded "
        f"{100 * grid['protocol']['tune_fraction']:.0f}% tune split, scored once on dev.",
        lr,
        "- mean ± sd: mean and sample standard deviation (n - 1) over seeds.",
        "- labelled pairs: the gold training pairs of the row, and those of its teacher when a "
        "term of its objective (L_virt, logit distillation) uses the teacher: a teacher that "
        "saw more labelled pairs than the student passes their labels on through its outputs.",
        "- gap closed: (row - Siamese) / (teacher - Siamese) on mean accuracies, with the row's "
        "own teacher; (fair): against the fair Siamese (fusion features) of the students' "
        "labelled pairs, ([u; v]): against the paper's `[u; v]` Siamese; same labelled pairs: "
        "against the fair Siamese trained on every labelled pair that reached the row, itself "
        "or through its teacher (the honest measure of what the teacher adds), with its own "
        "paired test.",
        "- vs fair Siamese: exact two-sided McNemar test of the row against the fair Siamese "
        "of the same seed on the same dev pairs (pairs only the row gets right / only the "
        "Siamese gets right). Pooled over seeds: the discordant counts are summed over the "
        "seeds both ran and one exact McNemar test is run on the sums (column \"per seed\": "
        "each seed's test).",
        "- agrees with teacher: share of dev pairs where the row predicts the teacher's label "
        "(mean over seeds); agreeing vs fair Siamese: the same paired test on agreeing with "
        "the teacher instead of being right, pooled the same way.",
        f"- online FLOPs and latency per pair: the model's online part (the cross-encoder: "
        f"everything on the packed pair; the others: the head on cached states) at "
        f"{cost['encoder']} dimensions, x {cost['query_pieces']} + y {cost['doc_pieces']} word "
        f"pieces as Table 1 of the paper, batch {cost['batch_size']}, median of "
        f"{cost['repeats']} calls (`virt_tf.benchmarks.profiling`); x fewer FLOPs: the cross-encoder's / "
        "the row's. Latencies of a millisecond or less a pair are within timing noise.",
        "- paper: Tables 1-3 of the paper (BERT-base, full training sets), beside ours "
        "(MiniLM-L6, the samples above)."]


def limits_lines(summary, grid):
    """What the grid's size can and cannot show."""
    lines = []
    for task, block in summary["tasks"].items():
        students = [r["accuracy"] for row, r in block["rows"].items() if row != "teacher"]
        acc = statistics.fmean(students) if students else None
        bound = noise_points(acc, block["examples"])
        seeds = max((r["seeds"] for r in block["rows"].values()), default=0)
        lines.append(
            f"- {task.upper()}: {block['examples']} dev pairs. Two accuracies near "
            f"{pct(acc)} differ by up to about {bound:.1f} points from sampling alone (95%, "
            "unpaired); the paired McNemar tests see smaller differences between models "
            "scored on the same pairs." + (" One seed: no spread over seeds, and a difference "
                                           "between rows can be the seed's." if seeds < 2 else
                                           f" Up to {seeds} seeds: the sd shows how much a "
                                           "row moves with the seed."))
    notes = grid.get("notes") or {}
    if notes.get("can_show"):
        lines += ["", "It can show:"] + [f"- {n}" for n in notes["can_show"]]
    if notes.get("cannot_show"):
        lines += ["", "It cannot show:"] + [f"- {n}" for n in notes["cannot_show"]]
    return lines


def format_report(summary, grid, title=None):
    """REPORT.md: protocol, one table per task, what the grid's size can show."""
    title = title or f"VIRT reproduction: the `{grid['profile']}` grid"
    lines = [f"# {title}", "", "Generated by `tools/reproduce.py` from the runs' "
             "`metrics.json` and `predictions.npz`; do not edit by hand.", "", "## Protocol", ""]
    lines += protocol_lines(summary, grid) + [""]
    lines += progress_lines(summary)
    for task, block in summary["tasks"].items():
        heading = task_heading(task, block, grid, summary.get("settings", {}).get("overrides"))
        lines += [f"## {heading}", ""] + table_lines(block) + [""]
        same = identical_lines(block)
        lines += same + ([""] if same else [])
    left_out = summary.get("left_out") or []
    if left_out:
        lines += ["Left out of this grid:", ""] + [f"- {m}" for m in left_out] + [""]
    effects = virt_effect_lines(summary)
    if effects:
        lines += ["## What L_virt adds, row by row", "",
                  "Each row trained with L_virt against the same row without it (same model, "
                  "options and seeds), on the seeds both ran; tests pooled over them by "
                  "summing the discordant counts.", ""] + effects
    lines += ["## Where our order of the rows differs from the paper's", "",
              "Every pair of rows to which the paper gives different numbers; ours are the mean "
              "accuracies over the seeds both rows ran, the seeds of the paired test.", ""]
    lines += ordering_lines(summary) + [""]
    lines += ["## What this grid can and cannot show", ""] + limits_lines(summary, grid) + [""]
    return "\n".join(lines)


def format_readme_block(summary, grid, output_rel):
    """The README's generated Results block: each task's main table, compact."""
    lines = [f"Generated from [{output_rel}/REPORT.md]({output_rel}/REPORT.md) (profile "
             f"`{grid['profile']}`; {grid.get('description', '')}) by `python3 "
             f"tools/reproduce.py --profile={grid['profile']} --report_only --update_readme`; "
             "MiniLM-L6 students and teacher, the paper's BERT-base numbers beside them. "
             "mean ± sd over seeds; McNemar tests against the fair Siamese of the same seed, "
             "pooled over seeds by summing the discordant counts; online cost per pair at "
             "MiniLM-L6 dimensions.", ""]
    lines += progress_lines(summary)
    for task, block in summary["tasks"].items():
        heading = task_heading(task, block, grid, summary.get("settings", {}).get("overrides"))
        lines += [f"**{heading}**", ""]
        lines += table_lines(block, compact=True) + [""]
        same = identical_lines(block)
        lines += same + ([""] if same else [])
    effects = virt_effect_lines(summary)
    if effects:
        lines += ["What L_virt adds: each row with L_virt against the same row without it, on "
                  "the seeds both ran (pooled):", ""] + effects
    return "\n".join(lines).strip()


def update_readme(block_md, readme):
    """Replace the README's generated results block with ``block_md``."""
    markdown_blocks.replace_block(readme, "results", block_md)
