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
