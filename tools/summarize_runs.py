"""Summarise finished runs as a Markdown table: mean and spread over seeds.

Run directories named `<group>_s<seed>` are grouped; every directory holding a
`metrics.json` counts. Usage:
  python tools/summarize_runs.py runs/rte [--metric accuracy] [--split dev]
"""
import argparse
import json
import os
import re
import statistics


def collect(root):
    rows = {}
    for dirpath, _, files in os.walk(root):
        if "metrics.json" not in files or os.path.basename(dirpath) == "teacher" and \
                os.path.exists(os.path.join(os.path.dirname(dirpath), "metrics.json")):
            continue
        with open(os.path.join(dirpath, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        name = os.path.relpath(dirpath, root)
        group = re.sub(r"_s\d+$", "", name)
        rows.setdefault(group, []).append(metrics)
    return rows


def fmt(values, scale=100.0):
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--metric", default="accuracy")
    args = parser.parse_args()
    rows = collect(args.root)
    print(f"| run | seeds | {args.metric} (%) | tune {args.metric} (%) | epochs | train s / run |")
    print("|---|---|---|---|---|---|")
    for group in sorted(rows):
        ms = rows[group]
        tune = [m["tune"][args.metric] for m in ms if "tune" in m]
        print(f"| {group} | {len(ms)} | {fmt([m[args.metric] for m in ms])} | "
              f"{fmt(tune) if tune else '-'} | {ms[0].get('epochs', '-')} | "
              f"{statistics.mean(m.get('train_seconds', 0) for m in ms):.0f} |")


if __name__ == "__main__":
    main()
