"""Do the value tests catch the mistakes they are written against? A small mutation check.

Each mutation below is a plausible bug in the paper's maths or in the CLI's
contracts (1/m and 1/n swapped in Eq. 7, no 1/(2L), the padded length in
Eq. 8's mean, no residual in Eq. 9, F1 of the wrong class, no T^2, a resume
that forgets the learning rate, a bug reported as bad input, ...). For each
one the tool copies the project's tracked files into a scratch folder, makes
that one edit (which must match exactly once), runs the tests named for it
and expects them to FAIL; the same tests on the unchanged copy must PASS.
It prints a Markdown table and exits 1 if any mutation survives.

    python3 tools/mutation_check.py                 # every mutation (minutes)
    python3 tools/mutation_check.py --only=eq7_swap_m_n,cli_bug_as_input
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = "tests/test_reference_values.py::"

# name: (what the bug is, [(file, old, new), ...], [test node ids])
MUTATIONS = {
    "eq7_swap_m_n": (
        "Eq. 7: 1/m and 1/n swapped",
        [("virt_tf/losses.py", "total += inv_m * _map_distance(st_xy",
          "total += inv_n * _map_distance(st_xy"),
         ("virt_tf/losses.py", "total += inv_n * _map_distance(st_yx",
          "total += inv_m * _map_distance(st_yx")],
        [REF + "test_virt_loss_matches_eq7_reference"]),
    "eq7_no_1_over_2L": (
        "Eq. 7: 1/2 instead of 1/(2L)",
        [("virt_tf/losses.py", "return total / (2.0 * len(layers))", "return total / 2.0")],
        [REF + "test_virt_loss_matches_eq7_reference",
         REF + "test_virt_loss_layer_subset_matches_reference"]),
    "eq7_norm": (
        "Eq. 7: Frobenius norm where the squared norm is asked for",
        [("virt_tf/losses.py", 'if norm == "squared":', 'if norm != "squared":')],
        [REF + "test_virt_loss_matches_eq7_reference"]),
    "eq7_cls_in_y": (
        "Eq. 5-6: y's [CLS] taken as content (block one position off)",
        [("virt_tf/losses.py", "qy = f32(student_queries_y[l][:, :, 1:1 + ny])",
          "qy = f32(student_queries_y[l][:, :, 0:ny])")],
        [REF + "test_virt_loss_matches_eq7_reference"]),
    "eq8_padded_mean": (
        "Eq. 8: mean over the padded length",
        [("virt_tf/modeling/layers/pooling.py",
          "count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)",
          "count = tf.cast(tf.shape(states)[1], states.dtype)")],
        [REF + "test_eq8_interaction_matches_reference"]),
    "eq8_no_sqrt_d": (
        "Eq. 8: no 1/sqrt(d)",
        [("virt_tf/modeling/layers/interaction.py",
          "transpose_b=True) / tf.sqrt(d)", "transpose_b=True)")],
        [REF + "test_eq8_interaction_matches_reference"]),
    "eq8_v_self": (
        "Eq. 8: v attends over y itself instead of over x",
        [("virt_tf/modeling/layers/interaction.py",
          "v = self.attend(states_y, mask_y, states_x, mask_x)",
          "v = self.attend(states_y, mask_y, states_y, mask_y)")],
        [REF + "test_eq8_interaction_matches_reference"]),
    "eq9_sign": (
        "Eq. 9: v - u instead of u - v",
        [("virt_tf/modeling/layers/fusion.py", "parts = [u, v, u - v, tf.maximum(u, v)]",
          "parts = [u, v, v - u, tf.maximum(u, v)]")],
        [REF + "test_eq9_fusion_classifier_matches_reference"]),
    "eq9_no_residual": (
        "Eq. 9: MLP1(r) without + r",
        [("virt_tf/modeling/layers/fusion.py",
          "h = self.mlp1(self._dropout(r, training=training)) + r",
          "h = self.mlp1(self._dropout(r, training=training))")],
        [REF + "test_eq9_fusion_classifier_matches_reference"]),
    "schedule_off_by_one": (
        "warmup one step ahead",
        [("virt_tf/training/optimization.py", "warm = self.peak * step / max(1, self.warmup_steps)",
          "warm = self.peak * (step + 1) / max(1, self.warmup_steps)")],
        [REF + "test_warmup_then_linear_decay_closed_form"]),
    "f1_class_0": (
        "F1 of class 0",
        [("virt_tf/evaluation/metrics.py", "p.update_state(labels == 1, pred == 1)",
          "p.update_state(labels == 0, pred == 0)"),
         ("virt_tf/evaluation/metrics.py", "r.update_state(labels == 1, pred == 1)",
          "r.update_state(labels == 0, pred == 0)")],
        [REF + "test_f1_and_roc_auc_match_hand_computation"]),
    "auc_50_thresholds": (
        "ROC-AUC coarsened to 50 thresholds",
        [("virt_tf/evaluation/metrics.py", "keras.metrics.AUC(num_thresholds=1000)",
          "keras.metrics.AUC(num_thresholds=50)")],
        [REF + "test_f1_and_roc_auc_match_hand_computation"]),
    "kd_no_T2": (
        "logit distillation without T^2",
        [("virt_tf/losses.py", "axis=-1) * temperature ** 2", "axis=-1)")],
        [REF + "test_logit_distillation_matches_tempered_kl",
         "tests/test_models.py::test_logit_distillation_runs_in_a_train_step"]),
    "kd_beta_ignored": (
        "VirtModel ignores the terms' weights (beta, alpha)",
        [("virt_tf/models/virt.py", "total += self._weight(term) * per_example",
          "total += per_example")],
        ["tests/test_models.py::test_logit_distillation_runs_in_a_train_step"]),
    "cli_bug_as_input": (
        "every ValueError reported as bad input",
        [("virt_tf/cli/common.py", "return (UserError,)", "return (UserError, ValueError)")],
        ["tests/test_bad_input.py::test_a_bug_is_not_bad_input"]),
    "resume_forgets_lr": (
        "resume ignores a changed learning rate",
        [("virt_tf/options.py",
          'RESUME_FREE = frozenset({"checkpoint_steps", "max_eval_examples", "eval_split"})',
          'RESUME_FREE = frozenset({"checkpoint_steps", "max_eval_examples", "eval_split", '
          '"learning_rate"})')],
        ["tests/test_resume_settings.py::test_resume_refuses_a_changed_setting"]),
}


def tracked_files():
    """The repository's files that git tracks (what a scratch copy holds)."""
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    return [f for f in out if f and os.path.isfile(os.path.join(REPO, f))]


def make_copy(dest, files):
    """Copy ``files`` (paths relative to the repository) into ``dest``."""
    for f in files:
        target = os.path.join(dest, f)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(REPO, f), target)


def apply(dest, edits):
    """Make each ``(file, old, new)`` edit in the copy ``dest``; ``old`` must occur once."""
    for path, old, new in edits:
        full = os.path.join(dest, path)
        with open(full, encoding="utf-8") as fh:
            text = fh.read()
        count = text.count(old)
        if count != 1:
            raise SystemExit(f"mutation text found {count} times in {path}: {old!r} "
                             "(update tools/mutation_check.py with the code)")
        with open(full, "w", encoding="utf-8") as fh:
            fh.write(text.replace(old, new))


def run_tests(dest, nodes, shared):
    """Run the test ``nodes`` in the copy ``dest``: ``(exit code, last line, seconds)``."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=dest)
    if os.path.isdir(os.path.join(shared, "data")):
        env.setdefault("VIRT_TF_DATA", os.path.join(shared, "data"))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           *nodes], cwd=dest, env=env, capture_output=True, text=True)
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    return proc.returncode, summary, time.time() - t0


def main():
    """Check the unchanged code, then each mutation; print the table (exit 1: a survivor)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="Comma-separated mutation names.")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(MUTATIONS)
    unknown = sorted(set(names) - set(MUTATIONS))
    if unknown:
        raise SystemExit(f"unknown mutations {unknown}; known: {sorted(MUTATIONS)}")
    files = tracked_files()
    # the tests read ../shared/data beside the project (VIRT_TF_DATA points the copies there)
    shared = os.path.join(os.path.dirname(REPO), "shared")
    rows, survived = [], []
    with tempfile.TemporaryDirectory() as scratch:
        clean = os.path.join(scratch, "clean")
        make_copy(clean, files)
        all_nodes = sorted({n for m in names for n in MUTATIONS[m][2]})
        code, summary, secs = run_tests(clean, all_nodes, shared)
        print(f"unchanged code: {summary} ({secs:.0f} s)", flush=True)
        if code != 0:
            raise SystemExit("the tests fail on the unchanged code: fix that first")
        for name in names:
            what, edits, nodes = MUTATIONS[name]
            dest = os.path.join(scratch, name)
            make_copy(dest, files)
            apply(dest, edits)
            code, summary, secs = run_tests(dest, nodes, shared)
            caught = code != 0
            if not caught:
                survived.append(name)
            rows.append((name, what, ", ".join(n.split("::")[-1] for n in nodes),
                         "caught" if caught else "SURVIVED", summary))
            print(f"{name}: {'caught' if caught else 'SURVIVED'} ({summary}, {secs:.0f} s)",
                  flush=True)
            shutil.rmtree(dest, ignore_errors=True)
    print("\n| mutation | the bug | tests | result | pytest |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
