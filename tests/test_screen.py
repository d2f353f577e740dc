"""The lever screen's table (`virt_tf.reproduction.screen`) from fabricated runs."""
import json

import numpy as np
import pytest

from virt_tf.reproduction.screen import format_screen, read_screen, screen_rows
from virt_tf.evaluation.stats import mcnemar_exact


def _run(folder, preds, labels, accuracy_of=None, **metrics):
    folder.mkdir(parents=True)
    probs = np.eye(3, dtype=np.float32)[preds]
    np.savez(folder / "predictions.npz", probs=probs, labels=labels)
    acc = float(np.mean(preds == labels))
    (folder / "metrics.json").write_text(json.dumps(dict(accuracy=acc, **metrics)))
    return acc


def test_rows_compare_each_run_with_the_reference_and_the_teacher(tmp_path):
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 3, size=200)
    teacher = np.where(rng.rand(200) < 0.8, labels, (labels + 1) % 3)
    ref = np.where(rng.rand(200) < 0.6, labels, (labels + 2) % 3)
    better = np.where(rng.rand(200) < 0.7, labels, teacher)
    t_acc = _run(tmp_path / "t", teacher, labels)
    r_acc = _run(tmp_path / "r", ref, labels, train_seconds=100.0, total_steps=50,
                 tune={"accuracy": 0.5})
    b_acc = _run(tmp_path / "b", better, labels, train_seconds=300.0, total_steps=100,
                 augmented_pairs=7)
    screen = tmp_path / "screen.txt"
    screen.write_text("# comment\n\nsiamese r --model=siamese\nbest b --model=dse --x=1  # kept: "
                      "+2\nlater missing --model=virt\n")
    (tmp_path / "b" / "train_log.jsonl").write_text(
        '{"kind": "epoch", "task_loss": 0.9, "distill_loss": 0.7}\n{"kind": "train"}\n'
        '{"kind": "epoch", "task_loss": 0.5, "distill_loss": 0.25}\n{"kind": "train", '
        '"task_loss": 9}\n')
    runs = read_screen(screen, verdicts=True)
    assert runs[1] == ("best", "b", "--model=dse --x=1", "kept: +2")
    assert read_screen(screen)[1] == ("best", "b", "--model=dse --x=1")
    rows = screen_rows(runs, "siamese", "t", root=str(tmp_path))
    assert [r["name"] for r in rows] == ["siamese", "best"]       # unfinished runs left out
    best = rows[1]
    assert best["gap_closed"] == pytest.approx((b_acc - r_acc) / (t_acc - r_acc))
    only_b = int(np.sum((better == labels) & (ref != labels)))
    only_r = int(np.sum((ref == labels) & (better != labels)))
    assert (best["only_run_right"], best["only_reference_right"]) == (only_b, only_r)
    assert best["mcnemar_p"] == pytest.approx(mcnemar_exact(only_b, only_r))
    assert best["agreement_with_teacher"] == pytest.approx(np.mean(better == teacher))
    assert best["seconds_per_step"] == pytest.approx(3.0) and best["augmented_pairs"] == 7
    assert rows[0]["gap_closed"] == 0.0 and rows[0]["tune_accuracy"] == 0.5
    table = format_screen(rows, "siamese", t_acc)
    assert f"| best | `--model=dse --x=1` | {100 * b_acc:.1f} |" in table
    assert best["terms"] == {"task_loss": 0.5, "distill_loss": 0.25}   # the last epoch's
    assert table.splitlines()[3].endswith("| 0.50 / 0.25 / - | kept: +2 |")
    assert table.splitlines()[2].endswith("| - / - / - | - |")
    # a run with its own teacher: gap share and agreement against that teacher
    weak = np.where(rng.rand(200) < 0.7, labels, (labels + 1) % 3)
    w_acc = _run(tmp_path / "w", weak, labels)
    _run(tmp_path / "s", better, labels, total_steps=10, train_seconds=10.0)
    (tmp_path / "s3.txt").write_text("siamese r\nown s --model=dse --teacher_dir=w\n"
                                     "unfinished s --teacher_dir=missing\n")
    rows = screen_rows(read_screen(tmp_path / "s3.txt"), "siamese", "t", root=str(tmp_path))
    assert [r["name"] for r in rows] == ["siamese", "own"]   # its teacher unfinished: left out
    own = rows[1]
    assert own["teacher_dir"] == "w" and own["teacher_accuracy"] == pytest.approx(w_acc)
    assert own["gap_closed"] == pytest.approx((b_acc - r_acc) / (w_acc - r_acc))
    assert own["agreement_with_teacher"] == pytest.approx(np.mean(better == weak))
    assert rows[0]["teacher_accuracy"] == pytest.approx(t_acc)
    # runs scored on other pairs are refused
    _run(tmp_path / "o", ref[:100], labels[:100])
    (tmp_path / "s2.txt").write_text("siamese r\nother o\n")
    with pytest.raises(ValueError, match="other pairs"):
        screen_rows(read_screen(tmp_path / "s2.txt"), "siamese", "t", root=str(tmp_path))


def test_a_run_at_another_seed_is_tested_against_the_reference_of_its_seed(tmp_path):
    rng = np.random.RandomState(1)
    labels = rng.randint(0, 3, size=300)
    teacher = np.where(rng.rand(300) < 0.85, labels, (labels + 1) % 3)
    ref0 = np.where(rng.rand(300) < 0.6, labels, (labels + 2) % 3)
    ref1 = np.where(rng.rand(300) < 0.5, labels, (labels + 1) % 3)
    run1 = np.where(rng.rand(300) < 0.7, labels, teacher)
    run2 = np.where(rng.rand(300) < 0.7, labels, teacher)
    t_acc = _run(tmp_path / "t", teacher, labels)
    r0 = _run(tmp_path / "r0", ref0, labels)
    r1 = _run(tmp_path / "r1", ref1, labels)
    a1 = _run(tmp_path / "a1", run1, labels)
    _run(tmp_path / "a2", run2, labels)
    (tmp_path / "s.txt").write_text(
        "siamese r0 --model=siamese --seed=0\nrecipe_s1 a1 --model=siamese --seed=1 --recipe=x\n"
        "siamese_s1 r1 --seed=1 --model=siamese\nsiamese_s2 missing --model=siamese --seed=2\n"
        "recipe_s2 a2 --model=siamese --seed=2 --recipe=x\nother_s1 a1 --model=dse --seed=1\n"
        "recipe_s5 a2 --model=siamese --seed=5 --recipe=x\n")
    runs = read_screen(tmp_path / "s.txt")
    from virt_tf.reproduction.screen import references_by_seed
    assert references_by_seed(runs, "siamese") == {0: "siamese", 1: "siamese_s1",
                                                   2: "siamese_s2"}
    rows = {r["name"]: r for r in screen_rows(runs, "siamese", "t", root=str(tmp_path))}
    rec = rows["recipe_s1"]
    assert rec["reference"] == "siamese_s1"
    assert rec["gap_closed"] == pytest.approx((a1 - r1) / (t_acc - r1))
    only_run = int(np.sum((run1 == labels) & (ref1 != labels)))
    only_ref = int(np.sum((ref1 == labels) & (run1 != labels)))
    assert (rec["only_run_right"], rec["only_reference_right"]) == (only_run, only_ref)
    assert rows["siamese_s1"]["reference"] == "siamese_s1"
    assert rows["siamese_s1"]["gap_closed"] == 0.0
    # its seed's reference has not finished: the seed-0 reference stands in
    assert rows["recipe_s2"]["reference"] == "siamese"
    assert rows["recipe_s2"]["gap_closed"] == pytest.approx(
        (rows["recipe_s2"]["accuracy"] - r0) / (t_acc - r0))
    table = format_screen(list(rows.values()), "siamese", t_acc)
    line = next(l for l in table.splitlines() if l.startswith("| recipe_s1 |"))
    assert f"{only_run} / {only_ref}" in line and "(vs siamese_s1)" in line
    line = next(l for l in table.splitlines() if l.startswith("| recipe_s2 |"))
    assert "(vs siamese, another seed)" in line
    # a seed with no reference line at all is marked too
    assert rows["recipe_s5"]["reference"] == "siamese" and not rows["recipe_s5"]["same_seed"]
    line = next(l for l in table.splitlines() if l.startswith("| recipe_s5 |"))
    assert "(vs siamese, another seed)" in line
    line = next(l for l in table.splitlines() if l.startswith("| siamese_s1 |"))
    assert "| 0% | - |" in line


def test_screen_table_command_rewrites_the_doc_block(tmp_path, repo_dir):
    import os
    import subprocess
    import sys
    rng = np.random.RandomState(2)
    labels = rng.randint(0, 3, size=100)
    _run(tmp_path / "t", labels, labels)
    _run(tmp_path / "r", np.where(rng.rand(100) < 0.6, labels, (labels + 1) % 3), labels,
         train_seconds=10.0, total_steps=5)
    (tmp_path / "s.txt").write_text("siamese r --model=siamese  # reference\n")
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- screen:begin -->\nold table\n<!-- screen:end -->\noutro\n")
    cmd = [sys.executable, os.path.join(repo_dir, "tools", "screen_table.py"),
           f"--screen={tmp_path / 's.txt'}", f"--teacher_dir={tmp_path / 't'}"]
    (tmp_path / "t" / "model_config.json").write_text("{}")
    proc = subprocess.run(cmd + [f"--update_doc={doc}"], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = doc.read_text()
    assert text.startswith("intro\n<!-- screen:begin -->\n| run | flags |")
    assert "| siamese | `--model=siamese` |" in text and "old table" not in text
    assert text.endswith("<!-- screen:end -->\noutro\n")
    bare = tmp_path / "bare.md"
    bare.write_text("no block\n")
    proc = subprocess.run(cmd + [f"--update_doc={bare}"], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error:")
    assert bare.read_text() == "no block\n"


# A finished screen run: a tiny Siamese without a teacher, trained as a line would ask.
COMMON = ["--task=rte", "--epochs=1", "--max_train_examples=16", "--max_tune_examples=8",
          "--max_eval_examples=16", "--batch_size=8", "--verbose=2"]
LINE = "--model=siamese --seed=5 --virt_alpha=0"


def _files(directory):
    """Every file below ``directory`` with its size and modification time."""
    import os
    out = {}
    for folder, _, files in os.walk(directory):
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            out[os.path.join(folder, name)] = (stat.st_size, stat.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shared_data):
    """The directory of a finished tiny run of ``COMMON + LINE`` on the RTE files."""
    import os
    import virt_tf
    directory = tmp_path_factory.mktemp("screen") / "siamese"
    virt_tf.train_pipeline(virt_tf.pipeline_options(
        "rte", "siamese", model_dir=str(directory), data_dir=os.path.join(shared_data, "rte"),
        encoder_preset="tiny", epochs=1, max_train_examples=16, max_tune_examples=8,
        max_eval_examples=16, batch_size=8, seed=5, virt_alpha=0.0, verbose=2))
    return directory


def test_a_finished_run_is_reused_only_when_its_line_asks_its_settings(finished_run,
                                                                         tmp_path):
    from virt_tf.errors import StageError
    from virt_tf.reproduction.screen import check_finished_lines
    screen = tmp_path / "screen.txt"
    screen.write_text(f"same {finished_run} {LINE}  # the run's own settings\n"
                      f"later {tmp_path / 'later'} --model=siamese --seed=6\n")
    assert check_finished_lines(str(screen), COMMON) == ["same"]   # unfinished: not checked
    before = _files(finished_run)
    screen.write_text(f"same {finished_run} {LINE}\n"
                      f"changed {finished_run} {LINE} --seed=6 --learning_rate=1e-4\n"
                      f"model {finished_run} {LINE} --model=dse\n")
    with pytest.raises(StageError) as raised:
        check_finished_lines(str(screen), COMMON)
    message = str(raised.value)
    assert "'same'" not in message and "\n" not in message
    assert (f"line 'changed' ({finished_run}) holds a finished run of a different setting "
            "(learning_rate 5e-05 -> 0.0001, seed 5 -> 6)") in message
    assert f"line 'model' ({finished_run}) holds" in message
    assert "model 'siamese' -> 'dse'" in message
    assert _files(finished_run) == before   # nothing in the run changed
    # the screen's common flags count too: the same line under another protocol
    screen.write_text(f"same {finished_run} {LINE}\n")
    with pytest.raises(StageError, match=r"line 'same' .*epochs 1 -> 2"):
        check_finished_lines(str(screen), [*COMMON, "--epochs=2"])


def test_the_screen_script_refuses_a_changed_line_before_training(finished_run, tmp_path,
                                                                   repo_dir, shared_data):
    import os
    import subprocess
    screen = tmp_path / "screen.txt"
    screen.write_text(f"changed {finished_run} {LINE} --learning_rate=1e-4\n"
                      f"next {tmp_path / 'next'} --model=siamese\n")
    before = _files(finished_run)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(["bash", os.path.join(repo_dir, "tools", "recipe_screen.sh"),
                           os.path.join(shared_data, "rte"), str(finished_run), str(screen)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: StageError: {screen}: line 'changed' ({finished_run}) "
                           "holds a finished run of a different setting (")
    assert "learning_rate 5e-05 -> 0.0001" in last and "task 'rte' -> 'mnli'" in last
    assert not (tmp_path / "next").exists() and _files(finished_run) == before
