"""virt_tf.reproduction.grid: the profiles of configs/grid.yaml, cells, commands, estimates.

No training here: finished cells are fabricated `metrics.json` files.
"""
import json
import os
import subprocess
import sys

import pytest

from virt_tf import rundir
from virt_tf.errors import ConfigError, StageError
from virt_tf.reproduction import grid as grid_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SEEDS3 = ["siamese", "wo_virt", "virt", "dse", "recipe", "siamese_all", "recipe_unlabelled"]
SEED0 = ["teacher_10k", "siamese_concat", "siamese_concat_virt", "siamese_virt", "wo_virt_a", "deformer",
         "deformer_virt", "dipair", "dipair_virt", "poly", "poly_virt"]


def args(cmd):
    return cmd[1:]  # without the interpreter


@pytest.fixture()
def sample():
    return grid_lib.load_grid(profile="sample")


def test_sample_profile_cells(sample):
    cells = grid_lib.plan_cells(sample)
    mnli = [(c["row"], c["seed"]) for c in cells if c["task"] == "mnli"]
    assert mnli[0] == ("teacher", 0)
    assert sorted(mnli[1:]) == sorted([(r, s) for r in SEEDS3 for s in (0, 1, 2)] +
                                      [(r, 0) for r in SEED0])
    qqp = [(c["row"], c["seed"]) for c in cells if c["task"] == "qqp"]
    assert qqp == [("teacher", 0), ("siamese", 0), ("wo_virt", 0), ("virt", 0), ("dse", 0),
                   ("recipe", 0), ("siamese_all", 0), ("teacher_10k", 0),
                   ("recipe_unlabelled", 0)]
    assert {c["lr"] for c in cells} == {5e-5} and not any(c["tuned"] for c in cells)
    assert {c["dir"] for c in cells} >= {"runs/mnli/virt/lr5e-5_s2",
                                         "runs/mnli/teacher/lr5e-5_s0",
                                         "runs/qqp/dse/lr5e-5_s0"}
    recipe = [c for c in cells if c["row"] == "recipe"]
    assert "--recipe=distill_aug" in grid_lib.cell_command(recipe[0], sample, "/o", "/d")
    assert grid_lib.left_out_messages(sample, ["mnli", "qqp"]) == []
    # the recipe's 1x augmentation doubles the training pairs, hence the steps
    siamese = next(c for c in cells if c["row"] == "siamese" and c["task"] == "mnli")
    assert grid_lib.cell_work(siamese, sample)[0] == 2 * 358
    assert grid_lib.cell_work(recipe[0], sample)[0] == 2 * 715
    # a row without a value: left out, with a message naming what is missing
    sample["rows"]["recipe"]["recipe"] = None
    assert not any(c["row"] == "recipe" for c in grid_lib.plan_cells(sample))
    messages = grid_lib.left_out_messages(sample, ["mnli", "qqp"])
    assert len(messages) == 2 and all("recipe" in m and "left out" in m for m in messages)


def test_a_row_with_its_own_teacher_and_the_teachers_labelled_pairs(sample):
    cells = grid_lib.plan_cells(sample, tasks=["mnli"],
                                rows=["recipe_unlabelled", "siamese_all"], seeds=[1])
    assert [(c["row"], c["seed"]) for c in cells] == [
        ("teacher", 0), ("siamese_all", 1), ("teacher_10k", 0), ("recipe_unlabelled", 1)]
    cmd = {c["row"]: args(grid_lib.cell_command(c, sample, "/o", "/d")) for c in cells}
    # the row's own teacher, trained as the students are (their pairs and epochs), no teacher
    assert "--model=cross" in cmd["teacher_10k"] and "--max_train_examples=10000" in \
        cmd["teacher_10k"] and "--epochs=2" in cmd["teacher_10k"]
    assert not any(a.startswith("--teacher_dir") for a in cmd["teacher_10k"])
    assert "--teacher_dir=/o/runs/mnli/teacher_10k/lr5e-5_s0" in cmd["recipe_unlabelled"]
    assert "--recipe=distill_aug" in cmd["recipe_unlabelled"]
    assert "--max_train_examples=10000" in cmd["recipe_unlabelled"]
    # labelled: teacher -> every pair the teacher had (all: no limit), the students' epochs
    assert not any(a.startswith("--max_train_examples") for a in cmd["siamese_all"])
    assert "--epochs=2" in cmd["siamese_all"] and "--model=siamese" in cmd["siamese_all"]
    assert "teacher" not in grid_lib.cell_run_options(cells[1], sample)["model"]
    assert grid_lib.cell_run_options(cells[1], sample)["max_train_examples"] is None
    assert grid_lib.cell_run_options(cells[3], sample)["max_train_examples"] == 10000
    # what reached each row: its own gold pairs, and its teacher's when a term uses it
    assert grid_lib.labelled_pairs(sample, "mnli", "recipe") == (10000, 17761)
    assert grid_lib.labelled_pairs(sample, "mnli", "recipe_unlabelled") == (10000, 10000)
    assert grid_lib.labelled_pairs(sample, "mnli", "siamese") == (10000, None)
    assert grid_lib.labelled_pairs(sample, "mnli", "siamese_all") == (17761, None)
    assert grid_lib.labelled_pairs(sample, "mnli", "teacher") == (17761, None)
    # a teacher stage with its own subset: labelled: teacher follows it
    sample["tasks"]["mnli"]["teacher"]["max_train_examples"] = 15000
    cell = grid_lib.plan_cells(sample, tasks=["mnli"], rows=["siamese_all"], seeds=[0])[1]
    assert "--max_train_examples=15000" in grid_lib.cell_command(cell, sample, "/o", "/d")
    assert grid_lib.labelled_pairs(sample, "mnli", "recipe") == (10000, 15000)


@pytest.mark.parametrize("row, message", [
    ({"model": "siamese", "teacher": "siamese"}, "not a row of model cross"),
    ({"model": "siamese", "teacher": "nowhere"}, "not a row of model cross"),
    ({"model": "siamese", "labelled": "all"}, "labelled must be 'teacher'"),
    ({"model": "cross", "labelled": "teacher"}, "a cross-encoder row has no teacher")])
def test_bad_row_keys_are_refused(tmp_path, row, message):
    import yaml  # pylint: disable=import-outside-toplevel  (only this test writes a grid)
    raw = grid_lib.read_grid_file()
    raw["rows"]["odd"] = row
    raw["profiles"]["sample"]["tasks"]["mnli"]["rows"]["odd"] = [0]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        grid_lib.load_grid(str(path), profile="sample")


def test_setting_the_recipe_puts_its_row_back(sample):
    sample["rows"]["recipe"]["recipe"] = "best"
    cells = grid_lib.plan_cells(sample)
    recipe = [c for c in cells if c["row"] == "recipe"]
    assert [(c["task"], c["seed"]) for c in recipe] == [("mnli", 0), ("mnli", 1), ("mnli", 2),
                                                        ("qqp", 0)]
    assert "--recipe=best" in grid_lib.cell_command(recipe[0], sample, "/o", "/d")
    assert grid_lib.left_out_messages(sample, ["mnli"]) == []


def test_sample_commands_are_the_protocol(sample):
    cells = grid_lib.plan_cells(sample)
    teacher = args(grid_lib.cell_command(cells[0], sample, "/out", "/data"))
    exact = ["-m", "virt_tf.train", "--task=mnli", "--data_dir=/data/bench/mnli",
             "--model=cross", "--epochs=5", "--select_epoch=best_tune", "--seed=0",
             "--learning_rate=5e-05", "--model_dir=/out/runs/mnli/teacher/lr5e-5_s0"]
    assert teacher[:len(exact)] == exact
    # what follows restates defaults only (configs/base.yaml, configs/tasks/mnli.yaml)
    assert teacher[len(exact):] == ["--tune_fraction=0.1", "--eval_split=dev_matched",
                                    "--verbose=2"]
    wo_virt = next(c for c in cells if c["row"] == "wo_virt" and c["seed"] == 2)
    cmd = args(grid_lib.cell_command(wo_virt, sample, "/out", "/data"))
    for flag in ("--model=virt", "--virt_alpha=0.0", "--epochs=2", "--max_train_examples=10000",
                 "--select_epoch=best_tune", "--seed=2", "--learning_rate=5e-05",
                 "--teacher_dir=/out/runs/mnli/teacher/lr5e-5_s0",
                 "--model_dir=/out/runs/mnli/wo_virt/lr5e-5_s2"):
        assert flag in cmd, flag
    concat_virt = next(c for c in cells if c["row"] == "siamese_concat_virt")
    cmd = args(grid_lib.cell_command(concat_virt, sample, "/out", "/data"))
    assert {"--model=siamese", "--fusion=concat", "--virt_alpha=1.0"} <= set(cmd)
    qqp = [c for c in cells if c["task"] == "qqp"]
    cmd = args(grid_lib.cell_command(qqp[0], sample, "/out", "/data"))
    assert "--data_dir=/data/bench/qqp" in cmd and "--epochs=5" in cmd
    assert not any(a.startswith(("--eval_split", "--max_train")) for a in cmd)
    assert "--teacher_dir=/out/runs/qqp/teacher/lr5e-5_s0" in args(
        grid_lib.cell_command(qqp[1], sample, "/out", "/data"))


def test_quick_profile_is_the_main_job():
    quick = grid_lib.load_grid(profile="quick")
    cells = grid_lib.plan_cells(quick)
    assert [(c["row"], c["seed"]) for c in cells] == [("teacher", 0), ("siamese", 0),
                                                      ("virt", 0)]
    for c in cells:
        cmd = args(grid_lib.cell_command(c, quick, "/o", "/d"))
        assert {"--epochs=2", "--max_train_examples=2500", "--max_eval_examples=1000",
                "--max_tune_examples=500"} <= set(cmd)
    # command-line overrides reach every cell
    cmd = grid_lib.cell_command(cells[0], quick, "/o", "/d", ["--encoder_preset=tiny"],
                                {"epochs": 1, "max_train_examples": 16})
    assert "--epochs=1" in cmd and "--max_train_examples=16" in cmd
    assert "--epochs=2" not in cmd and cmd[-1] == "--encoder_preset=tiny"


def test_full_profile_keeps_the_learning_rate_search():
    full = grid_lib.load_grid()
    assert full["profile"] == "full"
    cells = grid_lib.plan_cells(full, ["rte"], ["teacher", "siamese", "poly"], [0, 1])
    assert [(c["task"], c["row"], c["seed"], c["lr"]) for c in cells] == [
        ("mnli", "teacher", 0, 5e-5), ("rte", "teacher", 0, 5e-5),
        ("rte", "siamese", 0, 5e-5), ("rte", "siamese", 0, 1e-4), ("rte", "siamese", 1, -1.0),
        ("rte", "poly", 0, 5e-5)]
    rte_teacher = grid_lib.cell_command(cells[1], full, "/o", "/d")
    assert "--init_checkpoint=/o/runs/mnli/teacher/lr5e-5_s0" in rte_teacher
    assert "--epochs=10" in rte_teacher
    results = {cells[2]["dir"]: {"tune": {"accuracy": 0.6}},
               cells[3]["dir"]: {"tune": {"accuracy": 0.7}}}
    assert grid_lib.resolve(cells[4], cells, results)["dir"] == "runs/rte/siamese/lr1e-4_s1"
    assert grid_lib.resolve(cells[4], cells, {}) is None
    with pytest.raises(ConfigError, match="unknown task"):
        grid_lib.plan_cells(full, ["boolq"])
    with pytest.raises(ConfigError, match="unknown grid profile"):
        grid_lib.load_grid(profile="nope")


def _finish(output, cell, train_seconds, steps):
    path = os.path.join(output, cell["dir"])
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump({"accuracy": 0.6, "train_seconds": train_seconds, "total_steps": steps,
                   "tune": {"accuracy": 0.6}}, f)


def test_estimates_learn_from_finished_cells(sample, tmp_path):
    cells = grid_lib.plan_cells(sample, ["mnli"])
    by = {(c["row"], c["seed"]): c for c in cells}
    out = str(tmp_path)
    # before anything ran: the configured step costs of grid.yaml
    seconds, source = grid_lib.estimate_seconds(by[("siamese", 1)], cells, {}, sample,
                                                machine="avx2")
    steps, scored = grid_lib.cell_work(by[("siamese", 1)], sample)
    assert steps == 358 * 2 and scored == 9815 + 2 * 1973
    assert source == "configured step cost"
    assert seconds == pytest.approx(steps * 2.1 + scored * 0.015 + 60)
    virt_seconds, _ = grid_lib.estimate_seconds(by[("virt", 1)], cells, {}, sample,
                                                machine="avx2")
    assert virt_seconds == pytest.approx(steps * (2.2 + 0.8) + scored * 0.015 + 60)
    # an AVX-512 machine has its own configured costs
    fast, _ = grid_lib.estimate_seconds(by[("virt", 1)], cells, {}, sample, machine="avx512")
    assert fast == pytest.approx(steps * (0.8 + 0.3) + scored * 0.015 + 60)
    assert grid_lib.machine_class({"avx2", "avx512f", "avx512_bf16"}) == "avx512"
    assert grid_lib.machine_class({"sse4_2", "avx2"}) == "avx2"
    with pytest.raises(ConfigError, match="no entry for the CPU class 'neon'"):
        grid_lib.configured_rates(sample, "neon")
    assert grid_lib.cell_work(by[("teacher", 0)], sample)[0] == 635 * 5
    # cached teacher logits: a Siamese-cost step, and the teacher scores each training pair once
    # (gold 10k + 10k augmented); L_virt needs the teacher's attention in every step
    assert grid_lib.row_kind(sample, "mnli", "recipe") == ("siamese", False)
    assert grid_lib.row_kind(sample, "mnli", "dse") == ("dse", False)
    assert grid_lib.row_kind(sample, "mnli", "siamese_virt") == ("siamese", True)
    recipe_steps, recipe_scored = grid_lib.cell_work(by[("recipe", 1)], sample)
    assert recipe_scored == scored + 20000
    assert grid_lib.cell_work(by[("virt", 1)], sample)[1] == scored
    # a finished seed 0 of the row sets the rate of its other seeds
    _finish(out, by[("siamese", 0)], 1000.0, 500)
    results = grid_lib.read_results(out, cells)
    seconds, source = grid_lib.estimate_seconds(by[("siamese", 1)], cells, results, sample)
    assert source == "measured: same row (1 cell(s))"
    assert seconds == pytest.approx(steps * 2.0 + scored * 0.015 + 60)
    # a row of the same kind (siamese model, no teacher in the step) learns from it too
    _, source = grid_lib.estimate_seconds(by[("siamese_concat", 0)], cells, results, sample)
    assert source.startswith("measured: same model")
    _, source = grid_lib.estimate_seconds(by[("siamese_virt", 0)], cells, results, sample)
    assert source == "configured step cost"  # L_virt: the teacher runs in its steps
    seconds, source = grid_lib.estimate_seconds(by[("recipe", 1)], cells, results, sample)
    assert source.startswith("measured: same model")  # the Siamese's rate, cached logits
    assert seconds == pytest.approx(recipe_steps * 2.0 + recipe_scored * 0.015 + 60)
    plan = grid_lib.format_plan(cells, sample, out)
    assert plan.splitlines()[1].split()[:2] == ["mnli", "siamese"] and " done" in \
        plan.splitlines()[1]
    assert f"{len(cells)} cells (1 done)" in plan and "h left" in plan


def test_plan_command_line(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "reproduce.py"),
                           "--profile=sample", "--plan", f"--output={tmp_path}"],
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert sum(" seed " in l for l in lines) == 42
    assert "42 cells (0 done)" in proc.stdout and "left out" not in proc.stdout
    assert not os.listdir(tmp_path)  # nothing ran, nothing written


def _finished_cell(output, cell, grid, **recorded):
    """A fabricated finished cell whose ``stage.json`` records the options its command asks
    for, with ``recorded`` changed."""
    path = os.path.join(output, cell["dir"])
    options = rundir.jsonable(grid_lib.cell_run_options(cell, grid))
    rundir.write_json(rundir.checkpoint_path(path, rundir.STAGE_FILE),
                      dict(options, train_data="0" * 16, **recorded))
    rundir.write_json(os.path.join(path, rundir.METRICS_FILE), {"accuracy": 0.5})
    return path


def test_the_grid_skips_a_finished_cell_that_ran_its_settings(tmp_path, monkeypatch):
    grid = grid_lib.load_grid(profile="quick")
    cells = grid_lib.plan_cells(grid)
    for cell in cells:
        _finished_cell(tmp_path, cell, grid)
    monkeypatch.setattr(grid_lib.subprocess, "run", lambda *a, **k: pytest.fail("ran a cell"))
    lines = []
    assert grid_lib.run_grid(cells, grid, str(tmp_path), "data", log=lines.append) == []
    assert lines == []


def test_the_grid_refuses_a_finished_cell_of_other_settings(tmp_path, monkeypatch):
    grid = grid_lib.load_grid(profile="quick")
    cells = grid_lib.plan_cells(grid)
    siamese = next(c for c in cells if c["row"] == "siamese")
    for cell in cells:
        _finished_cell(tmp_path, cell, grid,
                       **({"learning_rate": 1e-4, "fusion": "concat"} if cell is siamese else {}))
    monkeypatch.setattr(grid_lib.subprocess, "run", lambda *a, **k: pytest.fail("ran a cell"))
    with pytest.raises(StageError) as raised:
        grid_lib.run_grid(cells, grid, str(tmp_path), "data", log=lambda line: None)
    message = str(raised.value)
    assert message.startswith(os.path.join(str(tmp_path), siamese["dir"]))
    assert "fusion 'concat' -> 'paper'" in message and "learning_rate 0.0001 -> 5e-05" in message
