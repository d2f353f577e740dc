"""The reproduction grid: profiles of ``configs/grid.yaml`` -> cells, commands, estimates, runs.

A *cell* is one ``python -m virt_tf.train`` run of a row (a model with its train
flags) on a task at a seed and a learning rate, into
``OUTPUT/runs/<task>/<row>/lr<lr>_s<seed>``. The teacher of a task (row
``teacher``, seed 0, the paper's learning rate) comes first and every student of
the task distils from it (``--teacher_dir``). A finished cell (its metrics,
`virt_tf.rundir.METRICS_FILE`) is never rerun; an interrupted one resumes from its checkpoints
when its command is run again, so running the grid again continues where it
stopped.

Two kinds of task in a profile:

* explicit rows (``rows: {row: [seeds]}``): every row at the paper's learning
  rate, at the seeds listed (the ``sample`` and ``quick`` profiles);
* the full grid: the profile's ``tuned`` rows search ``lr_grid`` at the first
  seed on the tune split, their other seeds use the chosen rate; the
  ``multi_seed`` rows run every requested seed, the others the first.

Per-task ``teacher:`` / ``students:`` flags apply to that stage only and ``flags:``
to every cell of the task; the command-line overrides (``epochs``,
``max_train_examples``, ``max_eval_examples``) to every cell.

A row is a model and its train flags, plus two keys of the grid's own (`ROW_KEYS`):
``teacher: ROW`` (a cross-encoder row whose seed-0 cell is this row's teacher instead of
the task's, planned before it) and ``labelled: teacher`` (the row trains on every labelled
pair its teacher saw: the teacher stage's training subset instead of the students'). A
cross-encoder row other than ``teacher`` is trained as a student (the students' flags) and
distils from nothing.

The planner imports neither TensorFlow nor numpy (``tools/reproduce.py --plan`` is quick).
"""
import copy
import math
import os
import statistics
import subprocess
import sys
import time

import yaml

import virt_tf
from virt_tf import rundir
from virt_tf.config import CONFIG_DIR, defaults, load_config
from virt_tf.errors import ConfigError, StageError
from virt_tf.options import RESUME_FREE, changed_settings, parse_overrides
from virt_tf.training.precision import cpu_flags

PYTHON = sys.executable
ROW_KEYS = ("teacher", "labelled")  # a row's keys that are the grid's, not train flags


def grid_file():
    """``configs/grid.yaml`` (from the repository or the installed package)."""
    return os.path.join(CONFIG_DIR, "grid.yaml")


def read_grid_file(path=None):
    """The raw content of ``configs/grid.yaml`` (every profile)."""
    path = path or grid_file()
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def profile_names(path=None):
    """The names of the grid file's profiles, in its order."""
    return list(read_grid_file(path)["profiles"])


def load_grid(path=None, profile=None):
    """One profile of the grid file, resolved: a dict the planner and the report read.

    Keys: ``profile``, ``description``, ``protocol``, ``tasks``, ``rows`` (row
    definitions), ``row_order``, ``tuned``, ``multi_seed``, ``paper``, ``labels``,
    ``default_tasks``, ``output``, ``notes`` and the estimate settings.
    """
    raw = read_grid_file(path)
    profile = profile or raw.get("default_profile") or next(iter(raw["profiles"]))
    if profile not in raw["profiles"]:
        raise ConfigError(f"unknown grid profile {profile!r}; {path or grid_file()} has "
                          f"{sorted(raw['profiles'])}")
    prof = copy.deepcopy(raw["profiles"][profile])
    grid = {k: copy.deepcopy(v) for k, v in raw.items() if k not in ("profiles",
                                                                    "default_profile")}
    grid.update(profile=profile, description=prof.get("description", ""),
                protocol=prof["protocol"], tasks=prof["tasks"],
                tuned=prof.get("tuned", []), multi_seed=prof.get("multi_seed", []),
                default_tasks=prof.get("default_tasks", list(prof["tasks"])),
                output=prof.get("output"), notes=prof.get("notes", {}))
    order = list(prof.get("rows") or [])
    for task in prof["tasks"].values():
        order += [r for r in task.get("rows", {}) if r not in order]
    order = ["teacher"] + [r for r in order if r != "teacher"]
    unknown = sorted(set(order) - set(grid["rows"]))
    if unknown:
        raise ConfigError(f"profile {profile!r} names row(s) {unknown} that `rows:` does not "
                          "define")
    grid["row_order"] = order
    check_rows(grid, profile)
    return grid


def check_rows(grid, profile):
    """Raise `ConfigError` for a row whose ``teacher`` is not a cross-encoder row or whose
    ``labelled`` is not ``teacher``."""
    for row, spec in grid["rows"].items():
        teacher = spec.get("teacher")
        if teacher is not None and (teacher not in grid["rows"] or
                                    grid["rows"][teacher].get("model") != "cross"):
            raise ConfigError(f"row {row!r} of profile {profile!r}: its teacher {teacher!r} is "
                              "not a row of model cross")
        if spec.get("labelled") is not None and row_teacher(grid, row) is None:
            raise ConfigError(f"row {row!r}: a cross-encoder row has no teacher, so "
                              "labelled: teacher means nothing")
        if spec.get("labelled") not in (None, "teacher"):
            raise ConfigError(f"row {row!r}: labelled must be 'teacher' (the labelled pairs "
                              f"its teacher saw), got {spec['labelled']!r}")


def row_flags(grid, row):
    """``(model, recipe, flags)`` of a row: its train flags without `ROW_KEYS`."""
    spec = {k: v for k, v in grid["rows"][row].items() if k not in ROW_KEYS}
    return spec.pop("model"), spec.pop("recipe", None), spec


def row_teacher(grid, row):
    """The row whose seed-0 cell teaches ``row`` (None for a cross-encoder row)."""
    spec = grid["rows"][row]
    if row == "teacher" or spec.get("model") == "cross":
        return None
    return spec.get("teacher") or "teacher"


def lr_tag(lr):
    """5e-5 -> '5e-5' (the learning rate in a cell's directory name)."""
    return f"{float(lr):.0e}".replace("e-0", "e-")


def teacher_dir(task, row="teacher"):
    """The teacher cell of ``task`` (or of the teacher row ``row``: seed 0, the paper's
    learning rate), relative to the output folder."""
    return os.path.join("runs", task, row, "lr5e-5_s0")


def cell_dir(task, row, lr, seed):
    """A cell's directory, relative to the output folder."""
    return os.path.join("runs", task, row, f"lr{lr_tag(lr)}_s{seed}")


def incomplete_rows(grid):
    """``{row: [options without a value]}``: rows left out of the plan until set."""
    return {row: [k for k, v in spec.items() if v is None]
            for row, spec in grid["rows"].items() if any(v is None for v in spec.values())}


def left_out_messages(grid, tasks):
    """One line per row of ``tasks`` that the plan leaves out, saying why."""
    missing = incomplete_rows(grid)
    out = []
    for task in tasks:
        for row in grid["tasks"][task].get("rows", {}) or grid["row_order"]:
            if row in missing:
                out.append(f"{task} {row}: left out: configs/grid.yaml gives no value for "
                           f"{', '.join(missing[row])} yet (set it and run again)")
    return out


def plan_cells(grid, tasks=None, rows=None, seeds=None, lr_grid=None):
    """The grid's cells in run order: dicts with task, row, seed, lr, tuned, dir.

    ``rows`` / ``seeds`` restrict the plan (None: the profile's); the teacher of
    every task is always planned. A tuned row's other seeds have ``lr = -1``
    until its search finishes (`resolve`).
    """
    tasks = list(tasks or grid["default_tasks"])
    unknown = sorted(set(tasks) - set(grid["tasks"]))
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; profile {grid['profile']!r} has "
                          f"{sorted(grid['tasks'])}")
    if rows is not None:
        unknown = sorted(set(rows) - set(grid["rows"]))
        if unknown:
            raise ConfigError(f"unknown row(s) {unknown}; grid.yaml has {sorted(grid['rows'])}")
    paper_lr = float(grid["protocol"]["paper_lr"])
    lr_grid = [float(x) for x in (lr_grid or grid["protocol"]["lr_grid"])]
    seeds = None if seeds is None else [int(s) for s in seeds]
    missing = incomplete_rows(grid)
    wanted = [r for r in grid["row_order"] if r not in missing and (rows is None or r in rows)]
    cells = []

    def add(task, row, seed, lr, tuned=False):
        cell = {"task": task, "row": row, "seed": int(seed), "lr": float(lr), "tuned": tuned,
                "dir": cell_dir(task, row, lr, seed)}
        if all(c["dir"] != cell["dir"] for c in cells):
            cells.append(cell)

    ordered = list(tasks)
    for task in tasks:  # a teacher initialised from another task's teacher needs it
        init = grid["tasks"][task].get("teacher_init")
        if init and init not in ordered:
            ordered.insert(0, init)
    for task in ordered:
        add(task, "teacher", 0, paper_lr)
        if task not in tasks:
            continue
        spec = grid["tasks"][task]
        if spec.get("rows"):
            for row, row_seeds in spec["rows"].items():
                if row in wanted and row != "teacher":
                    for seed in row_seeds:
                        if seeds is None or int(seed) in seeds:
                            teacher = row_teacher(grid, row)
                            if teacher != "teacher" and teacher is not None:
                                add(task, teacher, 0, paper_lr)  # its own teacher first
                            add(task, row, seed, paper_lr)
            continue
        run_seeds = seeds or [0, 1, 2]
        students = [r for r in wanted if r != "teacher"]
        tuned = [r for r in students if r in grid["tuned"]]
        for row in tuned:
            for lr in lr_grid:
                add(task, row, run_seeds[0], lr, tuned=True)
        for row in tuned:
            if row in grid["multi_seed"]:
                for seed in run_seeds[1:]:
                    add(task, row, seed, -1.0)  # the learning rate is chosen by the search
        for row in students:
            if row not in tuned:
                for seed in (run_seeds if row in grid["multi_seed"] else run_seeds[:1]):
                    add(task, row, seed, paper_lr)
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
    return dict(cell, lr=lr, dir=cell_dir(cell["task"], cell["row"], lr, cell["seed"]))


def cell_options(cell, grid, overrides=None):
    """The run options of a cell besides its model and paths: epochs first, then the rest.

    Task ``epochs`` <- task ``flags`` <- the stage's flags (``teacher`` / ``students``)
    <- ``overrides`` (the command line; None values are skipped).
    """
    task = grid["tasks"][cell["task"]]
    stage = task.get("teacher" if cell["row"] == "teacher" else "students") or {}
    options = {"epochs": task.get("epochs")}
    options.update(task.get("flags") or {})
    options.update(stage)
    if grid["rows"].get(cell["row"], {}).get("labelled") == "teacher":
        # the training subset its teacher had, not the students'
        taught = cell_options({"task": cell["task"], "row": row_teacher(grid, cell["row"])},
                              grid)
        options.pop("max_train_examples", None)
        if taught.get("max_train_examples") is not None:
            options["max_train_examples"] = taught["max_train_examples"]
    options.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if options.get("epochs") is None:
        raise ConfigError(f"task {cell['task']} of profile {grid['profile']!r} gives no epochs "
                          f"for its {'teacher' if cell['row'] == 'teacher' else 'students'}")
    return options


def cell_run_options(cell, grid, overrides=None, extra=()):
    """The `RunOptions` a cell's command trains with (its protocol, stage and row flags over
    the configs, then the run options among the ``extra`` flags every cell gets), as
    `virt_tf.config.load_config` layers them: no TensorFlow."""
    task = grid["tasks"][cell["task"]]
    model, recipe, row = row_flags(grid, cell["row"])
    given = cell_options(cell, grid, overrides)
    given.update(select_epoch=grid["protocol"]["select_epoch"], seed=cell["seed"],
                 learning_rate=cell["lr"], tune_fraction=grid["protocol"]["tune_fraction"],
                 **row)
    if task.get("eval_split"):
        given["eval_split"] = task["eval_split"]
    given.update(parse_overrides(extra))
    return load_config(cell["task"], model, overrides=given, recipe=recipe)


def finished_cell_changes(cell, grid, path, overrides=None, extra=()):
    """``{setting: (ran, asked)}``: the options a finished cell in ``path`` trained with (its
    ``stage.json``) that its command would now set otherwise ({} when they match, or when
    the cell recorded none). The same comparison a resume makes, without loading a model."""
    stage_file = rundir.checkpoint_path(path, rundir.STAGE_FILE)
    if not os.path.exists(stage_file):
        return {}
    asked = rundir.jsonable(cell_run_options(cell, grid, overrides, extra))
    asked = {k: v for k, v in asked.items() if k not in RESUME_FREE}
    if asked.get("precision") == "auto":  # resolved per machine when the cell ran
        asked.pop("precision")
    return changed_settings(rundir.read_json(stage_file), asked, rundir.jsonable(defaults()))


def cell_command(cell, grid, output, data_root, extra=(), overrides=None):
    """The ``python -m virt_tf.train`` command of a cell (a list of arguments).

    The stage's protocol first (task, data, model, epochs, epoch selection, seed,
    learning rate, directory), then the stage's and the row's flags, then flags
    that restate a default (tune fraction, evaluation split) and the verbosity.
    """
    task = grid["tasks"][cell["task"]]
    model, recipe, row = row_flags(grid, cell["row"])
    if recipe is not None:
        row = {"recipe": recipe, **row}
    options = cell_options(cell, grid, overrides)
    cmd = [PYTHON, "-m", "virt_tf.train", f"--task={cell['task']}",
           f"--data_dir={os.path.join(data_root, task['data'])}", f"--model={model}",
           f"--epochs={options.pop('epochs')}",
           f"--select_epoch={grid['protocol']['select_epoch']}", f"--seed={cell['seed']}",
           f"--learning_rate={cell['lr']}", f"--model_dir={os.path.join(output, cell['dir'])}"]
    cmd += [f"--{k}={v}" for k, v in options.items()]
    if cell["row"] == "teacher" and task.get("teacher_init"):
        cmd.append(f"--init_checkpoint={os.path.join(output, teacher_dir(task['teacher_init']))}")
    teacher = row_teacher(grid, cell["row"])
    if teacher is not None:
        cmd.append(f"--teacher_dir={os.path.join(output, teacher_dir(cell['task'], teacher))}")
    cmd += [f"--{k}={v}" for k, v in row.items()]
    cmd.append(f"--tune_fraction={grid['protocol']['tune_fraction']}")
    if task.get("eval_split"):
        cmd.append(f"--eval_split={task['eval_split']}")
    return cmd + ["--verbose=2"] + list(extra)


def read_results(output, cells):
    """``{cell dir: its metrics}`` of the finished cells (`virt_tf.rundir.read_metrics`)."""
    out = {}
    for cell in cells:
        directory = os.path.join(output, cell["dir"])
        if cell["lr"] >= 0 and rundir.has_metrics(directory):
            out[cell["dir"]] = rundir.read_metrics(directory)
    return out


# ----------------------------------------------------------------------------- estimates
def row_config(grid, task, row):
    """``(model, cfg)``: a row's model and its resolved run options (its recipe included)."""
    model, recipe, spec = row_flags(grid, row)
    return model, load_config(task, model, overrides=spec, recipe=recipe)


def teacher_use(cfg, model):
    """``(in_step, cached)``: whether the teacher runs in every training step (L_virt needs
    its attention maps, or its logits are not cached) and whether its logits are computed
    once before training (logit distillation with ``cache_teacher_logits``)."""
    if model == "cross":
        return False, False
    logits = cfg.get("logit_beta", 0) > 0
    cached = logits and bool(cfg.get("cache_teacher_logits"))
    in_step = cfg.get("virt_alpha", 0) > 0 or (logits and not cached)
    return bool(in_step), bool(cached)


def row_kind(grid, task, row):
    """``(model, teacher in the step)``: what sets a row's step cost."""
    model, cfg = row_config(grid, task, row)
    return model, teacher_use(cfg, model)[0]


def cell_work(cell, grid, overrides=None):
    """``(training steps, pairs scored)`` of a cell, from the data sizes in grid.yaml (a row
    with teacher-labelled augmentation trains on its extra pairs too; a row with cached
    teacher logits adds its training pairs to the pairs scored, once)."""
    options = cell_options(cell, grid, overrides)
    data = grid["tasks"][cell["task"]]["data"]
    sizes = grid.get("data_sizes", {}).get(data, {"train": 10000, "tune": 1000, "dev": 1000})
    train = min(sizes["train"], options.get("max_train_examples") or sizes["train"])
    tune = min(sizes["tune"], options.get("max_tune_examples") or sizes["tune"])
    dev = min(sizes["dev"], options.get("max_eval_examples") or sizes["dev"])
    epochs = int(options["epochs"])
    model, cfg = row_config(grid, cell["task"], cell["row"])
    if cfg.get("augment"):   # teacher-labelled extra pairs train too
        train += round(train * float(cfg.get("augment_multiple", 1.0)))
    scored = dev + tune * epochs
    if teacher_use(cfg, model)[1]:   # the teacher scores every training pair once
        scored += train
    return math.ceil(train / options.get("batch_size", 28)) * epochs, scored


def labelled_pairs(grid, task, row, overrides=None):
    """``(own, teacher's)``: the gold training pairs a row's cells train on and those its
    teacher trained on (None: no teacher term in the row's objective, or a teacher row;
    either None when grid.yaml's ``data_sizes`` does not know the task's data). A student
    whose teacher saw more labelled pairs than itself had them reach it through the
    teacher's outputs."""
    sizes = grid.get("data_sizes", {}).get(grid["tasks"][task]["data"])

    def count(name):
        if sizes is None:
            return None
        limit = cell_options({"task": task, "row": name}, grid, overrides).get(
            "max_train_examples")
        return min(sizes["train"], limit or sizes["train"])

    teacher = row_teacher(grid, row)
    if teacher is not None and not any(teacher_use(*reversed(row_config(grid, task, row)))):
        teacher = None   # the teacher's outputs reach nothing of it
    return count(row), (None if teacher is None else count(teacher))


def machine_class(flags=None):
    """``avx512`` or ``avx2``: the CPU class whose configured step costs apply (from the
    instruction-set flags, `virt_tf.training.precision.cpu_flags` by default)."""
    if flags is None:
        flags = cpu_flags()
    return "avx512" if "avx512f" in flags else "avx2"


def configured_rates(grid, machine=None):
    """``(seconds a step by model, seconds the teacher adds to a step)`` of grid.yaml for the
    CPU class ``machine`` (default: this machine's, `machine_class`)."""
    machine = machine or machine_class()
    steps, teacher = grid["step_seconds"], grid["teacher_in_step"]
    if machine not in steps or machine not in teacher:
        raise ConfigError(f"grid.yaml step_seconds or teacher_in_step has no entry for the "
                          f"CPU class {machine!r} (step_seconds has {sorted(steps)})")
    return steps[machine], teacher[machine]


def estimate_seconds(cell, cells, results, grid, overrides=None, machine=None):
    """``(seconds, source)``: the time a cell will take here and where the rate comes from.

    Seconds per step are the median of finished cells of the same task and row,
    else of the same task and kind (model, teacher in the step or not), else the
    configured step costs of grid.yaml (``step_seconds`` + ``teacher_in_step``) of the CPU
    class ``machine`` (default: this machine's).
    """
    steps, scored = cell_work(cell, grid, overrides)
    kind = row_kind(grid, cell["task"], cell["row"])
    finished = [(c, results[c["dir"]]) for c in cells if c["dir"] in results
                and c["task"] == cell["task"] and results[c["dir"]].get("total_steps")]
    rate, source = None, None
    for label, match in (("measured: same row", lambda c: c["row"] == cell["row"]),
                         ("measured: same model", lambda c: row_kind(grid, c["task"], c["row"])
                          == kind)):
        rates = [m["train_seconds"] / m["total_steps"] for c, m in finished if match(c)]
        if rates:
            rate, source = statistics.median(rates), f"{label} ({len(rates)} cell(s))"
            break
    if rate is None:
        steps_cost, teacher_cost = configured_rates(grid, machine)
        rate = steps_cost[kind[0]] + (teacher_cost if kind[1] else 0.0)
        source = "configured step cost"
    seconds = (steps * rate + scored * grid["eval_seconds_per_pair"] +
               grid["startup_seconds"])
    return seconds, source


def format_plan(cells, grid, output, overrides=None, machine=None):
    """The ``--plan`` printout: every cell, done or its estimate and its source; the total
    (configured step costs of the CPU class ``machine``, default this machine's)."""
    machine = machine or machine_class()
    results = read_results(output, cells)
    lines, total, sources = [], 0.0, {}
    for c in cells:
        done = c["dir"] in results
        if done:
            status, source = "done", ""
        else:
            seconds, source = estimate_seconds(c, cells, results, grid, overrides, machine)
            total += seconds
            sources[source.split(" (")[0]] = sources.get(source.split(" (")[0], 0) + 1
            status = f"~{seconds / 60:.0f} min"
        lr = "chosen" if c["lr"] < 0 else format(c["lr"], "g")
        lines.append(f"{c['task']:<5} {c['row']:<20} seed {c['seed']} lr {lr:<7} "
                     f"{status:<9} {source}")
    done = sum(c["dir"] in results for c in cells)
    lines.append(f"{len(cells)} cells ({done} done), about {total / 3600:.1f} h left on this "
                 f"machine; rates: " + (", ".join(f"{k}: {v} cell(s)" for k, v in
                                                   sources.items()) or "-"))
    lines.append(f"(configured step costs: configs/grid.yaml `step_seconds` of a 2-core "
                 f"{machine.upper()} CPU, this machine's class; measured: seconds per step of "
                 "the finished cells)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ running
def package_root():
    """The folder holding the ``virt_tf`` package (the repository, or site-packages)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(virt_tf.__file__)))


def run_grid(cells, grid, output, data_root, extra=(), overrides=None, log=print):
    """Run every unfinished cell in order; returns the list of failed cells."""
    failed = []
    results = read_results(output, cells)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_root()] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    start = time.time()
    for i, pending in enumerate(cells):
        cell = resolve(pending, cells, results)
        if cell is None:
            log(f"[{i + 1}/{len(cells)}] {pending['task']} {pending['row']} seed "
                f"{pending['seed']}: waiting for its learning-rate search; skipped")
            continue
        cells[i] = cell
        path = os.path.join(output, cell["dir"])
        if rundir.has_metrics(path):  # finished: kept only when it ran what the grid asks
            changed = finished_cell_changes(cell, grid, path, overrides, extra)
            if changed:
                diff = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
                raise StageError(f"{path}: a finished cell of a different setting ({diff}); "
                                 "remove it or run the grid with the settings it ran")
            continue
        results = read_results(output, cells)  # the estimate learns from every finished cell
        left = sum(estimate_seconds(c, cells, results, grid, overrides)[0] for c in cells[i:]
                   if c["dir"] not in results)
        log(f"[{i + 1}/{len(cells)}] {cell['task']} {cell['row']} lr {cell['lr']:g} seed "
            f"{cell['seed']}: starting; about {left / 3600:.1f} h left in the grid")
        os.makedirs(path, exist_ok=True)
        t0 = time.time()
        cmd = cell_command(cell, grid, output, data_root, extra, overrides)
        with open(os.path.join(path, rundir.CELL_LOG), "a", encoding="utf-8") as f:
            f.write(" ".join(cmd) + "\n")
            f.flush()
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False,
                                  env=env)
        if proc.returncode != 0:
            failed.append(cell)
            log(f"    FAILED (exit {proc.returncode}); see {os.path.join(path, rundir.CELL_LOG)}")
            continue
        results = read_results(output, cells)
        m = results[cell["dir"]]
        log(f"    done in {(time.time() - t0) / 60:.1f} min: dev {100 * m['accuracy']:.1f}, "
            f"tune {100 * m.get('tune', {}).get('accuracy', float('nan')):.1f} "
            f"(epoch {m.get('selected_epoch', {}).get('epoch')}); grid so far "
            f"{(time.time() - start) / 3600:.2f} h")
    return failed
