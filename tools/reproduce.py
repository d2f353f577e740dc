"""Reproduce the paper's Tables 1-3 with one command: a resumable grid, a report, plots.

    python tools/reproduce.py --tasks=mnli,rte --seeds=0,1,2 --output=results/NAME
    python tools/reproduce.py --quick --output=results/quick       # the README's main job

The grid (``configs/grid.yaml``: tasks and their protocol, rows = models as train
flags, which rows get a learning-rate search and several seeds) becomes a list of
cells; each cell is one ``python -m virt_tf.train`` run into
``OUTPUT/runs/<task>/<row>/lr<lr>_s<seed>``. The teacher of a task runs first and
every student of the task distils from it; a finished cell (its ``metrics.json``)
is never rerun, and an interrupted one resumes from its checkpoints, so running
the same command again continues the grid where it stopped. Order: per task,
teacher, then the learning-rate search of the tuned rows (fair Siamese,
VIRT-encoder) at seed 0, their other seeds, then the remaining rows.

Protocol: the model kept is the best epoch on the seeded 10% tune split
(``--select_epoch=best_tune``), scored once on dev; for the ``tuned`` rows the
learning rate is picked on the tune split at seed 0 from ``lr_grid`` and used for
the other seeds. The report shows both the paper's learning rate and the tuned one.

Outputs: ``OUTPUT/results.json``, ``OUTPUT/REPORT.md`` and plots
(``OUTPUT/*.png``); with ``--update_readme`` the block of README.md between
``<!-- results:begin -->`` and ``<!-- results:end -->`` is rewritten from them.
"""
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from virt_tf import paths  # noqa: E402
from virt_tf.cli import run  # noqa: E402
from virt_tf.errors import ConfigError  # noqa: E402
from virt_tf.paths import PathFlag  # noqa: E402
from virt_tf.stats import gap_closed, mean_spread, paired  # noqa: E402

FLAGS = flags.FLAGS
GRID_FILE = os.path.join(REPO, "configs", "grid.yaml")
DEFAULT_DATA = os.environ.get("VIRT_TF_DATA", os.path.join(os.path.dirname(REPO), "shared",
                                                           "data"))
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"
# The quick grid of the README's main job: the main comparison on an MNLI subset.
QUICK = {"tasks": ["mnli"], "rows": ["teacher", "siamese", "virt"], "seeds": [0],
         "max_train_examples": 2500, "max_eval_examples": 1000, "max_tune_examples": 500,
         "epochs": 2, "lr_grid": [5e-5]}


def define_flags():
    flags.DEFINE_list("tasks", ["mnli", "rte", "qqp"], "Tasks of configs/grid.yaml.")
    flags.DEFINE_list("models", None, "Rows of the grid (default: all).")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the multi-seed rows (others: first).")
    flags.DEFINE_string("output", None, "Results folder (required), e.g. results/NAME.")
    flags.DEFINE_string("data_root", DEFAULT_DATA, "Folder holding the tasks' data folders.")
    flags.DEFINE_list("lr_grid", None, "Learning rates searched for the tuned rows.")
    flags.DEFINE_integer("epochs", None, "Override every task's epochs.")
    flags.DEFINE_integer("max_train_examples", None, "Use the first N training pairs.")
    flags.DEFINE_integer("max_eval_examples", None, "Score the first N evaluation pairs.")
    flags.DEFINE_bool("quick", False, "The README's main job: teacher, fair Siamese and "
                      "VIRT-encoder on 2500 MNLI pairs, 2 epochs, 1000 dev pairs, one seed.")
    flags.DEFINE_list("train_flags", [], "Extra flags for every cell, e.g. --precision=float32.")
    flags.DEFINE_bool("plan", False, "Print the cells and the time estimate, run nothing.")
    flags.DEFINE_bool("report_only", False, "Write the report from finished cells only.")
    flags.DEFINE_bool("update_readme", False, "Rewrite README.md's results block.")
    flags.DEFINE_bool("alignment", True, "Measure per-layer L_virt of each student (plot).")


# ----------------------------------------------------------------------------- the grid
def load_grid(path=GRID_FILE):
    import yaml  # pylint: disable=import-outside-toplevel
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def lr_tag(lr):
    return f"{float(lr):.0e}".replace("e-0", "e-")


def plan_cells(grid, tasks, rows, seeds, lr_grid, overrides=None):
    """The grid's cells in run order: dicts with task, row, seed, lr, flags, dir, needs.

    ``needs`` names the cells whose results a cell uses (its teacher; for the other
    seeds of a tuned row, the seed-0 learning-rate search).
    """
    overrides = overrides or {}
    unknown = sorted(set(tasks) - set(grid["tasks"]))
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; grid.yaml has {sorted(grid['tasks'])}")
    unknown = sorted(set(rows) - set(grid["rows"]))
    if unknown:
        raise ConfigError(f"unknown row(s) {unknown}; grid.yaml has {sorted(grid['rows'])}")
    paper_lr = float(grid["protocol"]["paper_lr"])
    seeds = [int(s) for s in seeds]
    cells = []

    def add(task, row, seed, lr, tuned_search=False):
        cell = {"task": task, "row": row, "seed": seed, "lr": float(lr), "tuned": tuned_search,
                "dir": os.path.join("runs", task, row, f"lr{lr_tag(lr)}_s{seed}")}
        if any(c["dir"] == cell["dir"] for c in cells):
            return
        cells.append(cell)

    students = [r for r in rows if r != "teacher"]
    ordered_tasks = list(tasks)
    for task in list(tasks):  # a teacher initialised from another task's teacher needs it
        init = grid["tasks"][task].get("teacher_init")
        if init and init not in ordered_tasks:
            ordered_tasks.insert(0, init)
    for task in ordered_tasks:
        add(task, "teacher", 0, paper_lr)
        if task not in tasks:
            continue
        tuned = [r for r in students if r in grid.get("tuned", [])]
        for row in tuned:
            for lr in lr_grid:
                add(task, row, seeds[0], lr, tuned_search=True)
        for row in tuned:
            if row in grid.get("multi_seed", []):
                for seed in seeds[1:]:
                    add(task, row, seed, -1.0)  # the learning rate is chosen by the search
        for row in students:
            if row not in tuned:
                add(task, row, seeds[0], paper_lr)
                if row in grid.get("multi_seed", []):
                    for seed in seeds[1:]:
                        add(task, row, seed, paper_lr)
    for cell in cells:
        cell.update(overrides)
    return cells


def chosen_lr(cells, results, task, row):
    """The tuned learning rate of ``row`` on ``task``: best tune accuracy at the first seed."""
    search = [c for c in cells if c["task"] == task and c["row"] == row and c["tuned"]]
    done = [(results[c["dir"]]["tune"]["accuracy"], -c["lr"], c["lr"]) for c in search
            if c["dir"] in results and "tune" in results[c["dir"]]]
    if len(done) < len(search) or not done:
        return None
    return max(done)[2]


def resolve(cell, cells, results):
    """Fill a pending cell's learning rate from the search (None while it is unfinished)."""
    if cell["lr"] >= 0:
        return cell
    lr = chosen_lr(cells, results, cell["task"], cell["row"])
    if lr is None:
        return None
    cell = dict(cell, lr=lr)
    cell["dir"] = os.path.join("runs", cell["task"], cell["row"],
                               f"lr{lr_tag(lr)}_s{cell['seed']}")
    return cell


def cell_command(cell, grid, output, data_root, extra=(), max_train=None, max_eval=None,
                 epochs=None):
    """The ``python -m virt_tf.train`` command of a cell."""
    task = grid["tasks"][cell["task"]]
    row = dict(grid["rows"][cell["row"]])
    model = row.pop("model")
    cmd = [sys.executable, "-m", "virt_tf.train", f"--task={cell['task']}",
           f"--data_dir={os.path.join(data_root, task['data'])}", f"--model={model}",
           f"--model_dir={os.path.join(output, cell['dir'])}", f"--seed={cell['seed']}",
           f"--learning_rate={cell['lr']}", f"--epochs={epochs or task['epochs']}",
           f"--select_epoch={grid['protocol']['select_epoch']}",
           f"--tune_fraction={grid['protocol']['tune_fraction']}", "--verbose=2"]
    if task.get("eval_split"):
        cmd.append(f"--eval_split={task['eval_split']}")
    if cell["row"] == "teacher" and task.get("teacher_init"):
        cmd.append(f"--init_checkpoint={os.path.join(output, teacher_dir(task['teacher_init']))}")
    if cell["row"] != "teacher":
        cmd.append(f"--teacher_dir={os.path.join(output, teacher_dir(cell['task']))}")
    for key, value in row.items():
        cmd.append(f"--{key}={value}")
    if max_train:
        cmd.append(f"--max_train_examples={max_train}")
    if max_eval:
        cmd.append(f"--max_eval_examples={max_eval}")
    return cmd + list(extra)


def teacher_dir(task):
    return os.path.join("runs", task, "teacher", "lr5e-5_s0")


def read_results(output, cells):
    out = {}
    for cell in cells:
        path = os.path.join(output, cell["dir"], "metrics.json")
        if cell["lr"] >= 0 and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                out[cell["dir"]] = json.load(f)
    return out


# ------------------------------------------------------------------------------ running
def estimate_seconds(cell, results_by_dir, grid, max_train=None, epochs=None):
    """Seconds a cell will take, from the measured seconds per step of finished cells."""
    rates = [(m["train_seconds"] + m.get("eval_seconds", 0.0)) / max(1, m["total_steps"])
             for m in results_by_dir.values() if m.get("total_steps")]
    per_step = statistics.median(rates) if rates else 1.0
    pairs = {"mnli": 17700, "qqp": 18000, "rte": 2241, "mrpc": 3301}.get(cell["task"], 10000)
    if max_train:
        pairs = min(pairs, max_train)
    steps = pairs // 28 * (epochs or grid["tasks"][cell["task"]]["epochs"])
    return steps * per_step * (1.6 if cell["row"] != "teacher" else 1.0) + 60


def run_grid(cells, grid, output, data_root, extra=(), max_train=None, max_eval=None,
             epochs=None, log=print):
    """Run every unfinished cell in order; returns the list of failed cells."""
    failed = []
    results = read_results(output, cells)
    start = time.time()
    for i, pending in enumerate(cells):
        cell = resolve(pending, cells, results)
        if cell is None:
            log(f"[{i + 1}/{len(cells)}] {pending['task']} {pending['row']} seed "
                f"{pending['seed']}: waiting for its learning-rate search; skipped")
            continue
        cells[i] = cell
        path = os.path.join(output, cell["dir"])
        if os.path.exists(os.path.join(path, "metrics.json")):
            continue
        results = read_results(output, cells)  # the estimate learns from every finished cell
        left = sum(estimate_seconds(c, results, grid, max_train, epochs) for c in cells[i:]
                   if not os.path.exists(os.path.join(output, c["dir"], "metrics.json")))
        log(f"[{i + 1}/{len(cells)}] {cell['task']} {cell['row']} lr {cell['lr']:g} seed "
            f"{cell['seed']}: starting; about {left / 3600:.1f} h left in the grid")
        os.makedirs(path, exist_ok=True)
        t0 = time.time()
        cmd = cell_command(cell, grid, output, data_root, extra, max_train, max_eval, epochs)
        with open(os.path.join(path, "train.log"), "a", encoding="utf-8") as f:
            f.write(" ".join(cmd) + "\n")
            f.flush()
            proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                  check=False)
        if proc.returncode != 0:
            failed.append(cell)
            log(f"    FAILED (exit {proc.returncode}); see {os.path.join(path, 'train.log')}")
            continue
        results = read_results(output, cells)
        m = results[cell["dir"]]
        log(f"    done in {(time.time() - t0) / 60:.1f} min: dev {100 * m['accuracy']:.1f}, "
            f"tune {100 * m.get('tune', {}).get('accuracy', float('nan')):.1f} "
            f"(epoch {m.get('selected_epoch', {}).get('epoch')}); grid so far "
            f"{(time.time() - start) / 3600:.2f} h")
    return failed


# ------------------------------------------------------------------------------ results
def summarize(cells, grid, output):
    """results.json's content: per cell, per row (mean ± spread), gaps, paired tests."""
    results = read_results(output, cells)
    paper_lr = float(grid["protocol"]["paper_lr"])
    out = {"protocol": grid["protocol"], "tasks": {}, "cells": []}
    for cell in cells:
        m = results.get(cell["dir"])
        if m is None:
            continue
        out["cells"].append({
            **{k: cell[k] for k in ("task", "row", "seed", "lr", "dir")},
            "accuracy": m["accuracy"], "tune_accuracy": m.get("tune", {}).get("accuracy"),
            "f1": m.get("f1"), "selected_epoch": m.get("selected_epoch", {}).get("epoch"),
            "train_seconds": m.get("train_seconds"), "epochs": m.get("epochs"),
            "history": [{k: h.get(k) for k in ("epoch", "val_accuracy", "task_loss",
                                               "virt_loss", "accuracy")}
                        for h in _train_records(os.path.join(output, cell["dir"]), "epoch")]})
    for task in sorted({c["task"] for c in out["cells"]}):
        task_cells = [c for c in out["cells"] if c["task"] == task]
        rows = {}
        for row in grid["rows"]:
            mine = [c for c in task_cells if c["row"] == row]
            if not mine:
                continue
            lr = chosen_lr(cells, results, task, row) if row in grid.get("tuned", []) else None
            tuned = [c for c in mine if lr is None or c["lr"] == lr]
            at_paper = [c for c in mine if c["lr"] == paper_lr and c["seed"] == mine[0]["seed"]]
            acc, spread = mean_spread(c["accuracy"] for c in tuned)
            rows[row] = {"accuracy": acc, "spread": spread, "seeds": len(tuned),
                         "lr": lr if lr is not None else tuned[0]["lr"],
                         "tune_accuracy": mean_spread(c["tune_accuracy"] for c in tuned
                                                      if c["tune_accuracy"] is not None)[0],
                         "per_seed": [c["accuracy"] for c in tuned],
                         "train_seconds": statistics.fmean(c["train_seconds"] or 0
                                                           for c in tuned),
                         "paper_lr_accuracy": (at_paper[0]["accuracy"] if at_paper else None),
                         "paper": grid.get("paper", {}).get(task, {}).get(row)}
        teacher = rows.get("teacher", {}).get("accuracy")
        for row, r in rows.items():
            for base in ("siamese", "siamese_concat"):
                if teacher is not None and base in rows and row not in ("teacher", base):
                    r[f"gap_closed_vs_{base}"] = gap_closed(r["accuracy"], rows[base]["accuracy"],
                                                           teacher)
        # paired tests against the fair Siamese, on the same dev pairs, per seed
        tests = {}
        base_cells = {c["seed"]: c for c in task_cells if c["row"] == "siamese"
                      and c["lr"] == rows.get("siamese", {}).get("lr")}
        for c in task_cells:
            b = base_cells.get(c["seed"])
            if b is None or c["row"] in ("siamese", "teacher") or (
                    c["row"] in rows and c["lr"] != rows[c["row"]]["lr"]):
                continue
            pa, pb = _predictions(output, c["dir"]), _predictions(output, b["dir"])
            if pa is None or pb is None:
                continue
            t = paired(pa[0].argmax(-1), pb[0].argmax(-1), pa[1])
            tests.setdefault(c["row"], []).append(dict(t, seed=c["seed"]))
        for row, t in tests.items():
            rows[row]["vs_siamese"] = t
        out["tasks"][task] = {"rows": rows, "examples": int(len(_labels(output, task_cells)))}
    return out


def _predictions(output, cell_dir):
    import numpy as np  # pylint: disable=import-outside-toplevel
    path = os.path.join(output, cell_dir, "predictions.npz")
    if not os.path.exists(path):
        return None
    with np.load(path) as d:
        return d["probs"], d["labels"]


def _labels(output, task_cells):
    for c in task_cells:
        p = _predictions(output, c["dir"])
        if p is not None:
            return p[1]
    return []


# ------------------------------------------------------------------------------- report
def pct(x, digits=1):
    return "-" if x is None or x != x else f"{100 * x:.{digits}f}"


def lr_protocol(summary, grid):
    """The report's learning-rate line, from the grid that was actually run."""
    lr_grid = summary.get("settings", {}).get("lr_grid") or grid["protocol"]["lr_grid"]
    paper = grid["protocol"]["paper_lr"]
    if len(lr_grid) < 2:
        return (f"- Learning rate {lr_grid[0]:g} for every row (no learning-rate search in "
                "this grid).")
    return (f"- Learning rate {paper:g} (paper) for every row; rows "
            f"{', '.join(grid.get('tuned', []))} choose theirs from "
            f"{', '.join(f'{x:g}' for x in lr_grid)} on the tune split at the first seed "
            "(both results shown).")


def format_report(summary, grid, title="Reproduction of VIRT, Tables 1-3"):
    lines = [f"# {title}", "",
             "Generated by `tools/reproduce.py` from the runs' `metrics.json` files; do not edit "
             "by hand.", "", "## Protocol", "",
             f"- The model kept is the epoch with the best accuracy on the seeded "
             f"{100 * grid['protocol']['tune_fraction']:.0f}% tune split, scored once on dev.",
             lr_protocol(summary, grid),
             "- mean ± spread: mean and sample standard deviation over seeds; gap closed: "
             "(student - Siamese) / (teacher - Siamese) with the fair Siamese (fusion "
             "features) and with the paper's `[u; v]` Siamese; McNemar: exact two-sided test "
             "of each student against the fair Siamese on the same dev pairs (same seed).", ""]
    for task, block in summary["tasks"].items():
        t = grid["tasks"][task]
        epochs = summary.get("settings", {}).get("epochs") or t["epochs"]
        train = summary.get("settings", {}).get("max_train_examples")
        lines += [f"## {task.upper()} ({f'{train} training pairs, ' if train else ''}"
                  f"{block['examples']} dev pairs, {epochs} epochs"
                  f"{', teacher from the MNLI teacher' if t.get('teacher_init') else ''})", "",
                  "| row | seeds | dev acc | at lr 5e-5 | tune acc | lr | gap closed (fair) | "
                  "gap closed ([u; v]) | vs fair Siamese: only row / only Siamese right, p | "
                  "train min | paper |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row, r in block["rows"].items():
            acc = pct(r["accuracy"]) + (f" ± {pct(r['spread'])}" if r["seeds"] > 1 else "")
            tests = "; ".join(f"{t['only_a_right']}/{t['only_b_right']}, {t['mcnemar_p']:.2g}"
                              for t in r.get("vs_siamese", []))
            lines.append(
                f"| {row} | {r['seeds']} | {acc} | {pct(r['paper_lr_accuracy'])} | "
                f"{pct(r['tune_accuracy'])} | {r['lr']:g} | "
                f"{pct(r.get('gap_closed_vs_siamese'), 0)}{'%' if 'gap_closed_vs_siamese' in r else ''} | "
                f"{pct(r.get('gap_closed_vs_siamese_concat'), 0)}"
                f"{'%' if 'gap_closed_vs_siamese_concat' in r else ''} | {tests or '-'} | "
                f"{r['train_seconds'] / 60:.0f} | {r['paper'] if r['paper'] is not None else '-'} |")
        lines.append("")
    return "\n".join(lines)


def make_plots(summary, grid, output, cells_results_dirs):
    """accuracy.png, tune_curves.png, training_curves.png; the file names written."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    written = []
    tasks = list(summary["tasks"])
    if not tasks:
        return written
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = summary["tasks"][task]["rows"]
        names = list(rows)
        ax.bar(range(len(names)), [100 * rows[n]["accuracy"] for n in names],
               yerr=[100 * rows[n]["spread"] for n in names], capsize=3, color="tab:blue",
               label="ours (MiniLM-L6)")
        paper = [(i, rows[n]["paper"]) for i, n in enumerate(names) if rows[n]["paper"]]
        if paper:
            ax.scatter([i for i, _ in paper], [v for _, v in paper], color="tab:red",
                       marker="_", s=300, label="paper (BERT-base)")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("dev accuracy (%)")
        low = min(100 * rows[n]["accuracy"] for n in names)
        ax.set_ylim(max(0, low - 10), None)
        ax.set_title(task.upper())
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(output, "accuracy.png"), dpi=110)
    plt.close(fig)
    written.append("accuracy.png")

    cells = summary["cells"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = summary["tasks"][task]["rows"]
        for row, color in (("siamese", "tab:orange"), ("virt", "tab:green"),
                           ("siamese_concat", "tab:gray"), ("teacher", "black")):
            mine = [c for c in cells if c["task"] == task and c["row"] == row and row in rows
                    and c["lr"] == rows[row]["lr"] and c["history"]]
            for k, c in enumerate(mine):
                ax.plot([h["epoch"] for h in c["history"]],
                        [100 * (h["val_accuracy"] or 0) for h in c["history"]],
                        color=color, alpha=0.8, marker="o", ms=3,
                        label=f"{row} (lr {c['lr']:g})" if k == 0 else None)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_ylabel("tune accuracy (%)")
        ax.set_title(f"{task.upper()}: tune split per epoch (one line a seed)")
    fig.tight_layout()
    fig.savefig(os.path.join(output, "tune_curves.png"), dpi=110)
    plt.close(fig)
    written.append("tune_curves.png")

    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 6), squeeze=False)
    for j, task in enumerate(tasks):
        for c in cells:
            if c["task"] != task or c["row"] not in ("virt", "siamese") or c["seed"] != 0:
                continue
            records = _train_records(os.path.join(output, c["dir"]))
            if not records:
                continue
            steps = [r["step"] for r in records]
            axes[0][j].plot(steps, [r.get("task_loss") for r in records],
                            label=f"{c['row']} lr {c['lr']:g}")
            if c["row"] == "virt":
                axes[1][j].plot(steps, [r.get("virt_loss") for r in records],
                                label=f"virt lr {c['lr']:g}")
        axes[0][j].set_title(f"{task.upper()}: task loss (running mean in the epoch)")
        axes[1][j].set_title(f"{task.upper()}: L_virt")
        for ax in axes[:, j]:
            ax.set_xlabel("step")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(output, "training_curves.png"), dpi=110)
    plt.close(fig)
    written.append("training_curves.png")
    del cells_results_dirs
    return written


def _train_records(directory, kind="train"):
    """The ``kind`` records (train: every few steps; epoch) of a cell's train_log.jsonl."""
    path = os.path.join(directory, "train_log.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r.get("kind") == kind]


def alignment(summary, output, data_root, grid, max_examples=256):
    """Per-layer L_virt of every student against its task's teacher (cached per cell)."""
    from virt_tf.data.pipeline import eval_dataset  # pylint: disable=import-outside-toplevel
    from virt_tf.loading import load  # pylint: disable=import-outside-toplevel
    from virt_tf.losses import virt_loss  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    out = {}
    for task, block in summary["tasks"].items():
        cells = [c for c in summary["cells"] if c["task"] == task and c["row"] != "teacher"
                 and c["seed"] == 0 and c["lr"] == block["rows"][c["row"]]["lr"]]
        teacher_path = os.path.join(output, teacher_dir(task))
        if not cells or not os.path.exists(os.path.join(teacher_path, "metrics.json")):
            continue
        teacher = None
        for c in cells:
            cache = os.path.join(output, c["dir"], "alignment.json")
            if not os.path.exists(cache):
                if teacher is None:
                    matcher = load(teacher_path)
                    teacher = matcher.classifier
                    split = matcher.config.get("eval_split", "dev")
                    examples = matcher.read_split(os.path.join(
                        data_root, grid["tasks"][task]["data"]), split)[:max_examples]
                    dataset, _ = eval_dataset(examples, matcher.preprocessor, 32)
                student = load(os.path.join(output, c["dir"])).classifier
                layers = student.separate_layers
                sums, count = [0.0] * layers, 0
                for features, labels in dataset:
                    t = teacher.forward(features, return_scores=True)
                    sx = student.encode(features["text_a"], return_qk=True)
                    sy = student.encode(features["text_b"], return_qk=True)
                    b = int(tf.shape(labels)[0])
                    for l in range(layers):
                        sums[l] += float(virt_loss(
                            sx["queries"], sx["keys"], sy["queries"], sy["keys"], t["scores"],
                            features["text_a"]["input_mask"], features["text_b"]["input_mask"],
                            layers=[l])) * b
                    count += b
                with open(cache, "w", encoding="utf-8") as f:
                    json.dump([s / max(count, 1) for s in sums], f)
            with open(cache, encoding="utf-8") as f:
                out.setdefault(task, {})[c["row"]] = json.load(f)
    return out


def plot_alignment(align, output):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    if not align:
        return []
    fig, axes = plt.subplots(1, len(align), figsize=(6 * len(align), 3.6), squeeze=False)
    for ax, (task, rows) in zip(axes[0], align.items()):
        for row, values in rows.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", label=row)
        ax.set_xlabel("layer")
        ax.set_ylabel("L_virt (Eq. 7, one layer)")
        ax.set_title(f"{task.upper()}: student maps vs teacher's")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(output, "alignment.png"), dpi=110)
    plt.close(fig)
    return ["alignment.png"]


def update_readme(report_md, output, readme=os.path.join(REPO, "README.md")):
    """Replace the README's generated results block with ``report_md``."""
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        raise ConfigError(f"{readme} has no {README_BEGIN} ... {README_END} block")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    rel = os.path.relpath(output, REPO)
    body = report_md.replace("](", f"]({rel}/") if "](" in report_md else report_md
    with open(readme + ".tmp", "w", encoding="utf-8") as f:
        f.write(head + README_BEGIN + "\n" + body.strip() + "\n" + README_END + tail)
    os.replace(readme + ".tmp", readme)


PATH_FLAGS = (PathFlag("data_root", paths.INPUT_DIR, unless=("report_only", "plan")),
              PathFlag("output", paths.OUTPUT_DIR))


def main():
    """Check the flags and paths, then run (OS errors on them are user errors)."""
    if not FLAGS.output:
        raise ConfigError("--output is required (e.g. results/NAME)")
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        return _main()


def _main():
    grid = load_grid()
    tasks, rows, seeds = FLAGS.tasks, FLAGS.models or list(grid["rows"]), FLAGS.seeds
    lr_grid = [float(x) for x in (FLAGS.lr_grid or grid["protocol"]["lr_grid"])]
    max_train, max_eval, epochs = FLAGS.max_train_examples, FLAGS.max_eval_examples, FLAGS.epochs
    if FLAGS.quick:
        tasks, rows, seeds = QUICK["tasks"], QUICK["rows"], [str(s) for s in QUICK["seeds"]]
        lr_grid, epochs = QUICK["lr_grid"], epochs or QUICK["epochs"]
        max_train = max_train or QUICK["max_train_examples"]
        max_eval = max_eval or QUICK["max_eval_examples"]
        extra_flags = [f"--max_tune_examples={QUICK['max_tune_examples']}"]
    if "teacher" not in rows:
        rows = ["teacher"] + list(rows)
    extra_flags = list(FLAGS.train_flags) + (extra_flags if FLAGS.quick else [])
    output = os.path.abspath(FLAGS.output)
    os.makedirs(output, exist_ok=True)
    cells = plan_cells(grid, tasks, rows, seeds, lr_grid)
    if FLAGS.plan:
        results = read_results(output, cells)
        total = 0.0
        for c in cells:
            done = c["dir"] in results
            est = 0 if done else estimate_seconds(c, results, grid, max_train, epochs)
            total += est
            print(f"{c['task']:<5} {c['row']:<15} seed {c['seed']} lr "
                  f"{'chosen' if c['lr'] < 0 else format(c['lr'], 'g'):<7} "
                  f"{'done' if done else f'~{est / 60:.0f} min'}")
        print(f"{len(cells)} cells, about {total / 3600:.1f} h left")
        return 0
    failed = [] if FLAGS.report_only else run_grid(
        cells, grid, output, FLAGS.data_root, extra_flags, max_train, max_eval, epochs)
    cells = [resolve(c, cells, read_results(output, cells)) or c for c in cells]
    summary = summarize(cells, grid, output)
    summary["command"] = " ".join(["python", "tools/reproduce.py"] + [
        a for a in sys.argv[1:] if a not in ("--report_only", "--update_readme")])
    summary["settings"] = {"tasks": tasks, "rows": rows, "seeds": seeds, "lr_grid": lr_grid,
                           "max_train_examples": max_train, "max_eval_examples": max_eval,
                           "epochs": epochs, "train_flags": extra_flags}
    plots = make_plots(summary, grid, output, None)
    if FLAGS.alignment:
        summary["alignment"] = alignment(summary, output, FLAGS.data_root, grid)
        plots += plot_alignment(summary["alignment"], output)
    with open(os.path.join(output, "results.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    report = format_report(summary, grid)
    report += "\n" + "\n".join(f"![{p}]({p})" for p in plots) + "\n"
    report += f"\nCommand: `{summary['command']}`\n"
    with open(os.path.join(output, "REPORT.md"), "w", encoding="utf-8") as f:
        f.write(report)
    print(report)
    if FLAGS.update_readme:
        update_readme(report.replace("# Reproduction", "### Reproduction", 1), output)
    if failed:  # not the user's input, not a bug here: say which, exit 1
        sys.exit(f"{len(failed)} cell(s) failed: " + ", ".join(c["dir"] for c in failed))
    return 0


if __name__ == "__main__":
    define_flags()
    run(main)
