"""The grid's plots (matplotlib, Agg): each function writes one PNG and returns its name.

* ``accuracy.png``: dev accuracy per row (mean, sd over seeds as error bars), the
  paper's number beside it;
* ``cost_accuracy.png``: online FLOPs per pair (log scale) against dev accuracy,
  the trade-off of the paper's claim;
* ``tune_curves.png``: tune accuracy per epoch of the main rows, one line a seed;
* ``training_curves.png``: task loss and L_virt of the fair Siamese and the
  VIRT-encoder at seed 0;
* ``alignment.png``: per-layer L_virt of each student against its teacher.
"""
import math
import os

from virt_tf import rundir

MAIN_ROWS = (("siamese", "tab:orange"), ("virt", "tab:green"), ("siamese_concat", "tab:gray"),
             ("teacher", "black"))


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files, no display).

    Imported when a plot is drawn: matplotlib takes half a second to import, which
    ``tools/reproduce.py --help`` and ``--plan`` (that import this module) do not pay, and
    the backend is chosen only by a caller that draws."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def _save(fig, output, name):
    fig.tight_layout()
    fig.savefig(os.path.join(output, name), dpi=110)
    _pyplot().close(fig)
    return name


def _task_axes(plt, summary, tasks, height):
    """One subplot a task, each as wide as its number of rows asks."""
    widths = [max(3.0, 0.45 * len(summary["tasks"][t]["rows"]) + 1.5) for t in tasks]
    fig, axes = plt.subplots(1, len(tasks), figsize=(sum(widths), height), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    return fig, axes[0]


def plot_accuracy(summary, output):
    """``accuracy.png``: each row's mean dev accuracy, sd over seeds, the paper's number."""
    plt = _pyplot()
    tasks = list(summary["tasks"])
    fig, axes = _task_axes(plt, summary, tasks, 4)
    for ax, task in zip(axes, tasks):
        rows = summary["tasks"][task]["rows"]
        names = list(rows)
        ax.bar(range(len(names)), [100 * rows[n]["accuracy"] for n in names],
               yerr=[100 * rows[n]["spread"] for n in names], capsize=3, color="tab:blue",
               label="ours (MiniLM-L6; sd over seeds)")
        paper = [(i, rows[n]["paper"]) for i, n in enumerate(names) if rows[n]["paper"]]
        if paper:
            ax.scatter([i for i, _ in paper], [v for _, v in paper], color="tab:red",
                       marker="_", s=300, label="paper (BERT-base)")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("dev accuracy (%)")
        ax.set_ylim(max(0, min(100 * rows[n]["accuracy"] for n in names) - 10), None)
        ax.set_title(task.upper())
        ax.legend(fontsize=7)
    return _save(fig, output, "accuracy.png")


def point_labels(points, y_close, x_decades=0.15):
    """``[(x, y, text)]``: one label per group of rows at about the same online cost (within
    ``x_decades`` on the log axis) whose accuracies are within ``y_close`` of each other
    (their names one a line, highest first), at the group's highest point, so that rows
    near each other do not print over each other.

    ``points``: ``[(name, x, y)]``.
    """
    columns = []
    for name, x, y in sorted(points, key=lambda p: p[1]):
        if columns and math.log10(x) - math.log10(columns[-1][0][1]) <= x_decades:
            columns[-1].append((name, x, y))
        else:
            columns.append([(name, x, y)])
    labels = []
    for column in columns:
        column.sort(key=lambda p: -p[2])
        cluster = [column[0]]
        for point in column[1:]:
            if cluster[-1][2] - point[2] > y_close:
                labels.append(_cluster_label(cluster))
                cluster = []
            cluster.append(point)
        labels.append(_cluster_label(cluster))
    return labels


def _cluster_label(cluster):
    return cluster[0][1], cluster[0][2], "\n".join(name for name, _, _ in cluster)


def plot_cost_accuracy(summary, output):
    """Accuracy against online FLOPs per pair; None when no row has a cost."""
    plt = _pyplot()
    tasks = [t for t, b in summary["tasks"].items()
             if any("online" in r for r in b["rows"].values())]
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        points = []
        for row, r in summary["tasks"][task]["rows"].items():
            if "online" not in r:
                continue
            x, y = r["online"]["flops_per_pair"], 100 * r["accuracy"]
            ax.errorbar([x], [y], yerr=[100 * r["spread"]], fmt="o", capsize=3,
                        color="black" if r.get("is_teacher", row == "teacher") else "tab:blue")
            points.append((row, x, y))
        ys = [y for _, _, y in points]
        for x, y, text in point_labels(points, 0.15 * (max(ys) - min(ys) or 1.0)):
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 2), fontsize=7,
                        va="bottom")
        ax.set_xscale("log")
        ax.set_xlabel("online FLOPs per pair (log; MiniLM-L6 dimensions)")
        ax.set_ylabel("dev accuracy (%)")
        ax.set_title(f"{task.upper()}: accuracy against online cost")
    return _save(fig, output, "cost_accuracy.png")


def plot_tune_curves(summary, output):
    """``tune_curves.png``: tune accuracy per epoch of the main rows, one line a seed."""
    plt = _pyplot()
    tasks = list(summary["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = summary["tasks"][task]["rows"]
        for row, color in MAIN_ROWS:
            mine = [c for c in summary["cells"] if c["task"] == task and c["row"] == row
                    and row in rows and c["lr"] == rows[row]["lr"] and c["history"]]
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
    return _save(fig, output, "tune_curves.png")


def plot_training_curves(summary, output):
    """``training_curves.png``: task loss and L_virt of the fair Siamese and the
    VIRT-encoder at seed 0, from their training logs."""
    plt = _pyplot()
    tasks = list(summary["tasks"])
    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 6), squeeze=False)
    for j, task in enumerate(tasks):
        for c in summary["cells"]:
            if c["task"] != task or c["row"] not in ("virt", "siamese") or c["seed"] != 0:
                continue
            records = rundir.read_train_log(os.path.join(output, c["dir"]), "train")
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
    return _save(fig, output, "training_curves.png")


def plot_alignment(align, output):
    """Per-layer L_virt of each student (``{task: {row: [per layer]}}``); None when empty."""
    if not align:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(align), figsize=(6 * len(align), 3.6), squeeze=False)
    for ax, (task, rows) in zip(axes[0], align.items()):
        for row, values in rows.items():
            ax.plot(range(1, len(values) + 1), values, marker="o", label=row)
        ax.set_xlabel("layer")
        ax.set_ylabel("L_virt (Eq. 7, one layer)")
        ax.set_title(f"{task.upper()}: student maps vs teacher's")
        ax.legend(fontsize=7)
    return _save(fig, output, "alignment.png")


def make_plots(summary, output):
    """Every plot of a summary (not alignment); the file names written."""
    if not summary["tasks"]:
        return []
    names = [plot_accuracy(summary, output), plot_cost_accuracy(summary, output),
             plot_tune_curves(summary, output), plot_training_curves(summary, output)]
    return [n for n in names if n]
