"""Summarise finished runs as a Markdown table: mean and spread over seeds.

Run directories named `<group>_s<seed>` are grouped; every directory holding a
`metrics.json` counts (not the teacher stage inside a student's directory). Usage:
  python tools/summarize_runs.py runs/rte [--metric accuracy] [--gap teacher,siamese]

mean ± spread is the mean and the sample standard deviation over the seeds.
"""
import argparse
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from virt_tf.cli import paths  # noqa: E402
from virt_tf.cli.common import run_cli  # noqa: E402
from virt_tf.errors import ConfigError  # noqa: E402
from virt_tf.rundir import METRICS_FILE, TEACHER_DIR, has_metrics, read_metrics  # noqa: E402


def collect(root):
    """``{group: [metrics of each seed]}`` of the finished runs under ``root``."""
    rows = {}
    for dirpath, _, files in os.walk(root):
        if METRICS_FILE not in files or os.path.basename(dirpath) == TEACHER_DIR and \
                has_metrics(os.path.dirname(dirpath)):
            continue
        metrics = read_metrics(dirpath)
        name = os.path.relpath(dirpath, root)
        group = re.sub(r"_s\d+$", "", name)
        rows.setdefault(group, []).append(metrics)
    return rows


def fmt(values, scale=100.0):
    """``mean ± sd`` of ``values`` times ``scale`` (one value: itself)."""
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are `ConfigError`s: one ``error:`` line, exit 2."""

    def error(self, message):
        raise ConfigError(f"{message} (see --help)")


def main():
    """Parse the arguments, check the root folder, print the table."""
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--metric", default="accuracy")
    parser.add_argument("--gap", default="teacher,siamese",
                        help="TOP,BOTTOM groups: add the share of the BOTTOM-to-TOP gap "
                             "each run closes (mean accuracies), when both groups exist")
    args = parser.parse_args()
    paths.check_input_dir("ROOT", args.root)
    with paths.os_errors_as_user_errors([("ROOT", args.root)]):
        rows = collect(args.root)
    top, bottom = (args.gap.split(",") + [""])[:2]
    mean = lambda g: statistics.mean(m[args.metric] for m in rows[g])  # noqa: E731
    gap = (mean(top), mean(bottom)) if top in rows and bottom in rows else None
    print(f"| run | seeds | {args.metric} (%) | tune {args.metric} (%) | epochs | train s / run |"
          + (f" {bottom}->{top} gap closed |" if gap else ""))
    print("|---|---|---|---|---|---|" + ("---|" if gap else ""))
    for group in sorted(rows):
        ms = rows[group]
        tune = [m["tune"][args.metric] for m in ms if "tune" in m]
        line = (f"| {group} | {len(ms)} | {fmt([m[args.metric] for m in ms])} | "
                f"{fmt(tune) if tune else '-'} | {ms[0].get('epochs', '-')} | "
                f"{statistics.mean(m.get('train_seconds', 0) for m in ms):.0f} |")
        if gap:
            closed = (mean(group) - gap[1]) / (gap[0] - gap[1]) if gap[0] != gap[1] else 0.0
            line += f" {100 * closed:.0f}% |"
        print(line)


if __name__ == "__main__":
    run_cli(main)
