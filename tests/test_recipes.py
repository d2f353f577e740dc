"""Named recipes (configs/recipes): data that works with every representation model, from
the command line (`--recipe`) and from Python (`virt_tf.recipe`), end to end on `pairs`."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import virt_tf
from virt_tf.config import ConfigError, load_config, model_names, recipe_names

REPRESENTATION = [m for m in model_names() if m != "cross"]


def test_there_is_a_recipe():
    assert recipe_names(), "configs/recipes holds no recipe"


@pytest.mark.parametrize("name", recipe_names())
@pytest.mark.parametrize("model", REPRESENTATION)
def test_every_recipe_fits_every_representation_model(name, model):
    cfg = load_config("mnli", model, recipe=name)
    assert cfg["recipe"] == name and cfg["model"] == model
    rec = virt_tf.recipe(name)
    for key, value in rec.options.items():
        assert cfg[key] == value, key          # the recipe wins over the model's own file
    terms = rec.terms(model)
    assert terms and any(t.needs_teacher for t in terms)
    # a flag given on the command line wins over the recipe
    assert load_config("mnli", model, overrides={"logit_beta": 0.25},
                       recipe=name)["logit_beta"] == 0.25


def test_unknown_recipe_and_a_recipe_that_sets_the_model_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown recipe 'nope'; known: "):
        load_config("mnli", "siamese", recipe="nope")
    import shutil
    import virt_tf.config as config
    configs = tmp_path / "configs"
    shutil.copytree(config.CONFIG_DIR, configs)
    (configs / "recipes" / "bad.yaml").write_text("model: virt\nlogit_beta: 1.0\n")
    monkeypatch.setattr(config, "CONFIG_DIR", str(configs))
    with pytest.raises(ConfigError, match="may not set the model"):
        load_config("mnli", "siamese", recipe="bad")


def _pairs_file(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for a, b, label in rows:
            f.write(json.dumps({"text_a": a, "text_b": b, "label": label}) + "\n")


def _run(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m"] + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_recipe_end_to_end_on_a_pairs_task(tmp_path, repo_dir):
    """train (teacher, then the recipe's student with its augmentation), evaluate, export,
    encode and score, all on the generic pairs task."""
    rng = np.random.RandomState(0)
    words = ["the", "cat", "dog", "sat", "on", "mat", "is", "not", "big", "red", "blue", "car"]
    rows = []
    for i in range(60):
        a = " ".join(rng.choice(words, size=5))
        b = " ".join(rng.choice(words, size=3))
        rows.append((a, b, "match" if i % 2 else "other"))
    data = tmp_path / "data"
    data.mkdir()
    _pairs_file(data / "train.jsonl", rows[:48])
    _pairs_file(data / "dev.jsonl", rows[48:])
    out = tmp_path / "student"
    name = recipe_names()[0]
    proc = _run(["virt_tf.train", "--task=pairs", f"--data_dir={data}", f"--model_dir={out}",
                 "--model=siamese", f"--recipe={name}", "--encoder_preset=tiny", "--epochs=1",
                 "--max_train_examples=24", "--batch_size=8", "--verbose=2"], repo_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    sources, multiple = virt_tf.recipe(name).augment
    assert metrics["model"] == "siamese" and metrics["teacher"]["model"] == "cross"
    if sources:
        assert metrics["augmented_pairs"] > 0
        assert metrics["train_examples"] == 24 + metrics["augmented_pairs"]
    config = json.loads((out / "model_config.json").read_text())
    assert config["train_config"]["recipe"] == name

    ev = _run(["virt_tf.evaluate", f"--model_dir={out}", f"--data_dir={data}"], repo_dir)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads(ev.stdout[ev.stdout.index("{"):])["accuracy"] == pytest.approx(
        metrics["accuracy"], abs=1e-9)

    ex = _run(["virt_tf.export", f"--model_dir={out}", f"--export_dir={tmp_path / 'serving'}",
               "--name=student"], repo_dir)
    assert ex.returncode == 0, ex.stderr[-3000:]
    assert (tmp_path / "serving" / "student" / "1" / "saved_model.pb").is_file()

    texts = {f"t{i}": t for i, t in enumerate(sorted({r[0] for r in rows[48:]} |
                                                      {r[1] for r in rows[48:]}))}
    ids = {t: i for i, t in texts.items()}
    (tmp_path / "texts.tsv").write_text(
        "id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in texts.items()))
    (tmp_path / "pairs.tsv").write_text(
        "".join(f"{ids[a]}\t{ids[b]}\n" for a, b, _ in rows[48:]))
    enc = _run(["virt_tf.encode", f"--model_dir={out}", f"--input={tmp_path / 'texts.tsv'}",
                f"--output={tmp_path / 'cache.npz'}"], repo_dir)
    assert enc.returncode == 0, enc.stderr[-3000:]
    sc = _run(["virt_tf.score", f"--model_dir={out}", f"--cache={tmp_path / 'cache.npz'}",
               f"--pairs={tmp_path / 'pairs.tsv'}", f"--output={tmp_path / 'scores.tsv'}"],
              repo_dir)
    assert sc.returncode == 0, sc.stderr[-3000:]
    scored = [l.split("\t") for l in (tmp_path / "scores.tsv").read_text().splitlines()[1:]]
    probs = np.array([[float(x) for x in r[3:]] for r in scored])
    with np.load(out / "predictions.npz") as saved:   # the dev pairs, as training scored them
        np.testing.assert_allclose(probs, saved["probs"], atol=1e-4, rtol=0)
