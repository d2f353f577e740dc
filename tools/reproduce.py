"""Reproduce the paper's tables with one command: a resumable grid, a report, plots.

    python tools/reproduce.py --quick --output=results/quick        # the README's main job
    python tools/reproduce.py --profile=sample --plan               # cells and hours, no run
    python tools/reproduce.py --profile=sample                      # -> results/sample
    python tools/reproduce.py --tasks=mnli,rte --seeds=0,1,2 --output=results/NAME  # full

A profile of ``configs/grid.yaml`` (``full`` by default; ``sample``: the grid
sized to this machine; ``quick``: the main job) becomes a list of cells, each one
``python -m virt_tf.train`` run into ``OUTPUT/runs/<task>/<row>/lr<lr>_s<seed>``;
finished cells are never rerun and the same command continues an interrupted grid.
Outputs: ``OUTPUT/results.json``, ``OUTPUT/REPORT.md`` and plots; with
``--update_readme`` the README's results block is rewritten from them. The
planner, the report and the plots are `virt_tf.reproduction`; this is the
command line.
"""
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from virt_tf.cli import paths  # noqa: E402
from virt_tf.cli.common import run  # noqa: E402
from virt_tf.cli.paths import PathFlag  # noqa: E402
from virt_tf.errors import ConfigError  # noqa: E402
from virt_tf.reproduction import grid as grid_lib  # noqa: E402
from virt_tf.reproduction import plots, report  # noqa: E402
from virt_tf.rundir import write_text_atomic  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_DATA = paths.default_data_root(REPO)
README = os.path.join(REPO, "README.md")


def define_flags():
    """Defines the command-line flags (only when run as a script, so tests can import it)."""
    flags.DEFINE_string("profile", None, "Profile of configs/grid.yaml (default: its "
                        "default_profile, the full grid): full | sample | quick.")
    flags.DEFINE_bool("quick", False, "The README's main job: --profile=quick (teacher, fair "
                      "Siamese and VIRT-encoder on 2500 MNLI pairs, 2 epochs, 1000 dev pairs).")
    flags.DEFINE_list("tasks", None, "Tasks of the profile (default: the profile's).")
    flags.DEFINE_list("models", None, "Rows of the grid (default: the profile's).")
    flags.DEFINE_list("seeds", None, "Seeds (default: the profile's; full grid: 0,1,2 for its "
                      "multi-seed rows, the first for the others).")
    flags.DEFINE_string("output", None, "Results folder, e.g. results/NAME (default: the "
                        "profile's).")
    flags.DEFINE_string("data_root", DEFAULT_DATA, "Folder holding the tasks' data folders.")
    flags.DEFINE_list("lr_grid", None, "Learning rates searched for the tuned rows.")
    flags.DEFINE_integer("epochs", None, "Override every cell's epochs.")
    flags.DEFINE_integer("max_train_examples", None, "Use the first N training pairs.")
    flags.DEFINE_integer("max_eval_examples", None, "Score the first N evaluation pairs.")
    flags.DEFINE_list("train_flags", [], "Extra flags for every cell, e.g. --precision=float32.")
    flags.DEFINE_bool("plan", False, "Print the cells and the hours they need, run nothing.")
    flags.DEFINE_bool("report_only", False, "Write the report from finished cells only.")
    flags.DEFINE_bool("update_readme", False, "Rewrite README.md's results block.")
    flags.DEFINE_bool("alignment", True, "Measure per-layer L_virt of each student (plot).")
    flags.DEFINE_bool("online_cost", True, "Profile each row's online FLOPs and latency per "
                      "pair (MiniLM-L6 dimensions; once per model kind, kept in results.json).")
    flags.DEFINE_bool("remeasure_online_cost", False, "Profile every row's online cost again "
                      "instead of reusing results.json's (do it with the cores idle).")


PATH_FLAGS = (PathFlag("data_root", paths.INPUT_DIR, unless=("report_only", "plan")),
              PathFlag("output", paths.OUTPUT_DIR))


def main():
    """Resolve the profile and its output, check the paths before any work (OS errors on
    them are user errors), then run."""
    profile = "quick" if FLAGS.quick else FLAGS.profile
    if FLAGS.quick and FLAGS.profile not in (None, "quick"):
        raise ConfigError(f"--quick is --profile=quick; got --profile={FLAGS.profile} too")
    grid = grid_lib.load_grid(profile=profile)
    output = FLAGS.output or grid.get("output")
    if not output:
        raise ConfigError(f"--output is required for profile {grid['profile']!r} (e.g. "
                          "results/NAME)")
    paths.check_flags(FLAGS, PATH_FLAGS)
    roots = paths.flag_roots(FLAGS, PATH_FLAGS)
    if not FLAGS.output:  # the profile's own output folder
        paths.check_path("output", output, paths.OUTPUT_DIR)
        roots.append(("output", output, paths.OUTPUT_DIR))
    with paths.os_errors_as_user_errors(roots):
        return _main(grid, os.path.abspath(output))


def _main(grid, output):
    """Plan (and print the plan), run the unfinished cells unless --report_only, report."""
    tasks = FLAGS.tasks or grid["default_tasks"]
    overrides = {"epochs": FLAGS.epochs, "max_train_examples": FLAGS.max_train_examples,
                 "max_eval_examples": FLAGS.max_eval_examples}
    cells = grid_lib.plan_cells(grid, tasks, FLAGS.models, FLAGS.seeds, FLAGS.lr_grid)
    left_out = grid_lib.left_out_messages(grid, tasks)
    for message in left_out:
        print(message)
    if FLAGS.plan or not FLAGS.report_only:  # a run shows its plan before it starts
        print(grid_lib.format_plan(cells, grid, output, overrides), flush=True)
    if FLAGS.plan:
        return 0
    os.makedirs(output, exist_ok=True)
    failed = [] if FLAGS.report_only else grid_lib.run_grid(
        cells, grid, output, os.path.abspath(FLAGS.data_root), FLAGS.train_flags, overrides,
        log=logging.info)  # progress is log (stderr, one format); the plan and report are output
    results = grid_lib.read_results(output, cells)
    cells = [grid_lib.resolve(c, cells, results) or c for c in cells]
    write_report(cells, grid, output, tasks, overrides, left_out)
    if failed:  # not the user's input, not a bug here: say which, exit 1
        sys.exit(f"{len(failed)} cell(s) failed: " + ", ".join(c["dir"] for c in failed))
    return 0


def write_report(cells, grid, output, tasks, overrides, left_out):
    """results.json, REPORT.md, plots (and the README block); returns the summary."""
    summary = report.summarize(cells, grid, output)
    summary["left_out"] = left_out
    summary["command"] = " ".join(["python3", "tools/reproduce.py"] + [
        a for a in sys.argv[1:] if a not in ("--report_only", "--update_readme")])
    summary["settings"] = {"profile": grid["profile"], "tasks": tasks, "rows": FLAGS.models,
                           "seeds": FLAGS.seeds, "lr_grid": [float(x) for x in (
                               FLAGS.lr_grid or grid["protocol"]["lr_grid"])],
                           "overrides": overrides, "train_flags": FLAGS.train_flags}
    results_file = os.path.join(output, report.RESULTS_FILE)
    if FLAGS.online_cost and summary["tasks"]:
        cache = None if FLAGS.remeasure_online_cost else report.cached_costs(results_file)
        rows = list(dict.fromkeys(r for b in summary["tasks"].values() for r in b["rows"]))
        report.attach_costs(summary, grid, report.online_costs(grid, rows, cache,
                                                               log=logging.info))
    names = plots.make_plots(summary, output)
    if FLAGS.alignment:
        # loads TensorFlow: only a report that measures the alignment pays for it
        from virt_tf.reproduction.alignment import alignment  # pylint: disable=import-outside-toplevel
        summary["alignment"] = alignment(summary, output, FLAGS.data_root, grid)
        names += [n for n in [plots.plot_alignment(summary["alignment"], output)] if n]
    write_text_atomic(results_file, json.dumps(summary, indent=2))
    text = report.format_report(summary, grid)
    text += "\n" + "\n".join(f"![{p}]({p})" for p in names) + "\n"
    text += f"\nCommand: `{summary['command']}`\n"
    write_text_atomic(os.path.join(output, report.REPORT_FILE), text)
    print(text)
    if FLAGS.update_readme:
        report.update_readme(report.format_readme_block(
            summary, grid, os.path.relpath(output, REPO)), README)
    return summary


if __name__ == "__main__":
    define_flags()
    run(main)
