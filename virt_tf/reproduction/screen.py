"""A screen of training levers: runs listed as data, read back into one table.

A screen list (e.g. ``configs/screens/mnli_recipe.txt``) has a line a run,
``NAME RUN_DIR FLAGS... [# VERDICT]``; `tools/recipe_screen.sh` trains them in order. The
verdict (after ``#`` on the run's line: kept or dropped, and why) is the screen's
decision, written by whoever read the result. This module reads the finished ones
(their metrics and saved predictions, `virt_tf.rundir`) and compares each with a
reference run (the fair Siamese) and the teacher on the same evaluation pairs: accuracy,
share of the reference-to-teacher gap it closes, exact McNemar test against the
reference, agreement with the teacher, training seconds a step, and the size of each
objective term at the end of training (so a weight is read beside what it weighs).

A line whose RUN_DIR holds a finished run is reused only when that run trained with the
options the line's command asks (`check_finished_lines`: the comparison of a resume and
of the grid's finished cells, over the run's ``stage.json``); otherwise the screen stops
with one error naming the line and each differing setting.
"""
import os

import numpy as np

from virt_tf import rundir
from virt_tf.config import defaults, pipeline_options
from virt_tf.errors import StageError
from virt_tf.evaluation import predictions
from virt_tf.evaluation.stats import gap_closed, paired
from virt_tf.options import RESUME_FREE, changed_settings, parse_overrides


def read_screen(path, verdicts=False):
    """``[(name, run_dir, flags)]`` of a screen list (``#`` comment lines, blank lines
    skipped); with ``verdicts``, ``[(name, run_dir, flags, verdict)]`` (``""`` if none)."""
    runs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line, _, verdict = line.partition("#")
            if not line.strip():
                continue
            name, run_dir, *flags = line.split()
            runs.append((name, run_dir, " ".join(flags)) +
                        ((verdict.strip(),) if verdicts else ()))
    return runs


def line_options(args):
    """The `RunOptions` that ``python -m virt_tf.train ARGS`` trains with (``args``: its
    ``--name=value`` arguments, the screen's common flags first, then the line's; later
    ones win), layered as the command layers them (`virt_tf.config.pipeline_options`): no
    TensorFlow."""
    flags = " ".join(args)
    named = {k: flag_value(flags, k) for k in ("task", "model") if flag_value(flags, k)}
    return pipeline_options(**named, model_dir=".", config=flag_value(flags, "config"),
                            recipe=flag_value(flags, "recipe"),
                            **parse_overrides(args)).options


def finished_line_changes(run_dir, args):
    """``{setting: (ran, asked)}``: the options the finished run in ``run_dir`` trained with
    (its ``stage.json``) that the command ``args`` (`line_options`) would set otherwise;
    ``{}`` when they match or when the run recorded none. The comparison a resume makes
    (`virt_tf.options.changed_settings`), without loading a model."""
    stage_file = rundir.checkpoint_path(run_dir, rundir.STAGE_FILE)
    if not os.path.exists(stage_file):
        return {}
    try:
        ran = rundir.read_json(stage_file)
    except ValueError as e:
        raise StageError(f"{stage_file}: not valid JSON ({e})") from e
    asked = {k: v for k, v in rundir.jsonable(line_options(args)).items()
             if k not in RESUME_FREE}
    if asked.get("precision") == "auto":  # resolved on the machine that ran it
        asked.pop("precision")
    return changed_settings(ran, asked, rundir.jsonable(defaults()))


def check_finished_lines(path, common_args=(), root="."):
    """The names of the lines of the screen list ``path`` whose run has finished
    (``metrics.json`` in RUN_DIR, below ``root``) with the options the line asks: those the
    screen reuses. A finished run of other options raises one `StageError` naming each
    such line (name and RUN_DIR) and each differing setting with both values.
    ``common_args`` are the flags every line's command gets before its own."""
    reused, refused = [], []
    for name, run_dir, flags in read_screen(path):
        directory = os.path.join(root, run_dir)
        if not rundir.has_metrics(directory):
            continue
        changed = finished_line_changes(directory, list(common_args) + flags.split())
        if changed:
            diff = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
            refused.append(f"line {name!r} ({run_dir}) holds a finished run of a different "
                           f"setting ({diff})")
        else:
            reused.append(name)
    if refused:
        raise StageError(f"{path}: {'; '.join(refused)}; give the line another RUN_DIR or "
                         "the settings its run trained with")
    return reused


TERMS = ("task_loss", "distill_loss", "virt_loss")


def final_terms(run_dir):
    """``{term: value}`` of the objective terms (unweighted batch means) in the last epoch
    record of the run's training log; ``{}`` without one."""
    epochs = rundir.read_train_log(run_dir, "epoch")
    last = epochs[-1] if epochs else {}
    return {t: last[t] for t in TERMS if t in last}


def _finished(run_dir):
    """``(metrics, predicted classes, labels)`` of a finished run, or None (no metrics, or
    no saved predictions to test it on)."""
    saved = predictions.read(run_dir) if rundir.has_metrics(run_dir) else None
    if saved is None:
        return None
    return rundir.read_metrics(run_dir), saved[0], saved[1]


def flag_value(flags, name, default=None):
    """The value of the last ``--NAME=VALUE`` in a run's flags string, else ``default``."""
    found = default
    for flag in flags.split():
        if flag.startswith(f"--{name}="):
            found = flag.split("=", 1)[1]
    return found


def teacher_of(flags, default):
    """The teacher a run learned from: its ``--teacher_dir=`` flag, else ``default``."""
    return flag_value(flags, "teacher_dir", default)


def seed_of(flags):
    """The ``--seed=`` of a run's flags (``0``, the default, without one)."""
    return int(flag_value(flags, "seed", 0))


def _without_seed(flags):
    return sorted(f for f in flags.split() if not f.startswith("--seed="))


def references_by_seed(runs, reference):
    """``{seed: name}``: the reference run and its copies at other seeds (lines whose flags
    are the reference's but for ``--seed=``), so each run is tested against the reference
    of its own seed."""
    ref_flags = next(run[2] for run in runs if run[0] == reference)
    out = {}
    for name, _, flags, *_ in runs:
        if _without_seed(flags) == _without_seed(ref_flags):
            out.setdefault(seed_of(flags), name)
    out[seed_of(ref_flags)] = reference
    return out


def screen_rows(runs, reference, teacher_dir, root="."):
    """One dict a finished run of ``runs`` (as `read_screen` gives them, with or without
    verdicts), compared with the run named ``reference`` and with the teacher in
    ``teacher_dir`` (or, for a run given ``--teacher_dir=``, with that teacher: its gap
    share and agreement are measured against the teacher it learned from). A run at another
    seed is compared with the reference of its seed where that has finished (see
    `references_by_seed`), else with ``reference``."""
    teacher = _finished(os.path.join(root, teacher_dir))
    by_name = {run[0]: _finished(os.path.join(root, run[1])) for run in runs}
    if teacher is None or by_name.get(reference) is None:
        return []
    labels = teacher[2]
    seeds = references_by_seed(runs, reference)
    for ref in seeds.values():
        if by_name[ref] is not None and not np.array_equal(labels, by_name[ref][2]):
            raise ValueError(f"{ref} and the teacher were scored on different pairs")
    rows = []
    for name, run_dir, flags, *verdict in runs:
        found = by_name[name]
        if found is None:
            continue
        ref = seeds.get(seed_of(flags))
        same_seed = ref is not None and by_name[ref] is not None
        ref = ref if same_seed else reference
        r_metrics, r_pred, _ = by_name[ref]
        metrics, pred, run_labels = found
        if not np.array_equal(run_labels, labels):
            raise ValueError(f"{name} was scored on other pairs than the teacher")
        own_dir = teacher_of(flags, teacher_dir)
        own = teacher if own_dir == teacher_dir else _finished(os.path.join(root, own_dir))
        if own is None:
            continue
        own_metrics, own_pred, own_labels = own
        if not np.array_equal(own_labels, labels):
            raise ValueError(f"{own_dir} was scored on other pairs than the teacher")
        test = paired(pred, r_pred, labels)
        steps = metrics.get("total_steps") or 0
        rows.append({
            "name": name, "flags": flags, "reference": ref, "same_seed": same_seed,
            "accuracy": metrics["accuracy"],
            "tune_accuracy": metrics.get("tune", {}).get("accuracy"),
            "teacher_dir": own_dir, "teacher_accuracy": own_metrics["accuracy"],
            "gap_closed": gap_closed(metrics["accuracy"], r_metrics["accuracy"],
                                     own_metrics["accuracy"]),
            "only_run_right": test["only_a_right"],
            "only_reference_right": test["only_b_right"], "mcnemar_p": test["mcnemar_p"],
            "agreement_with_teacher": float(np.mean(pred == own_pred)),
            "seconds_per_step": metrics["train_seconds"] / steps if steps else None,
            "train_minutes": metrics.get("train_seconds", 0) / 60.0,
            "augmented_pairs": metrics.get("augmented_pairs", 0),
            "steps": steps, "terms": final_terms(os.path.join(root, run_dir)),
            "verdict": verdict[0] if verdict else ""})
    return rows


def format_screen(rows, reference, teacher_accuracy=None):
    """The rows as a Markdown table (accuracies in %)."""
    head = ("| run | flags | dev | tune | teacher | gap closed | vs " + reference +
            " of the same seed (only run / only ref, p) | agrees w/ teacher | steps | s/step | "
            "train min | terms at end (task / distill / virt) | kept? |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        tune = "-" if r["tune_accuracy"] is None else f"{100 * r['tune_accuracy']:.1f}"
        sps = "-" if r["seconds_per_step"] is None else f"{r['seconds_per_step']:.2f}"
        ref = r.get("reference", reference)
        test = ("-" if r["name"] == ref else
                f"{r['only_run_right']} / {r['only_reference_right']}, p = {r['mcnemar_p']:.2g}"
                + ("" if ref == reference and r.get("same_seed", True) else
                   f" (vs {ref}{'' if r.get('same_seed', True) else ', another seed'})"))
        lines.append(f"| {r['name']} | `{r['flags']}` | {100 * r['accuracy']:.1f} | {tune} | "
                     f"{100 * r['teacher_accuracy']:.1f} | "
                     f"{100 * r['gap_closed']:.0f}% | {test} | "
                     f"{100 * r['agreement_with_teacher']:.1f} | {r['steps']} | {sps} | "
                     f"{r['train_minutes']:.0f} | {_terms(r.get('terms', {}))} | "
                     f"{r.get('verdict') or '-'} |")
    if teacher_accuracy is not None:
        lines.append(f"\nTeacher: {100 * teacher_accuracy:.1f} (a run given --teacher_dir is "
                     "measured against its own teacher: gap closed and agreement).")
    return "\n".join(lines)


def _terms(terms):
    return " / ".join("-" if t not in terms else f"{terms[t]:.2f}" for t in TERMS)
