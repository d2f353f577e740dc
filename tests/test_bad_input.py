"""Bad input gets one clear line `error: ...` on stderr and exit code 2, never a traceback.

Each case writes a small input into a temporary folder and runs the real CLI
(`python -m virt_tf.train`) in a subprocess. The subprocesses of all cases are
started together by one module fixture (a few at a time) to save wall time;
each test then checks its own case. Inputs that are allowed (empty or
whitespace-only texts, a text far longer than max_seq_length) must train, and
be counted in the log.
"""
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

HEADER = "index\tsentence1\tsentence2\tlabel\n"
GOOD_ROWS = [("the cat sat on the mat", "a cat sat", "entailment"),
             ("the dog runs fast", "the dog is slow", "not_entailment"),
             ("a red car", "a blue car", "not_entailment"),
             ("the house is big", "the house is not small", "entailment"),
             ("a green tree", "a tree", "entailment"),
             ("the cat is small", "the cat is big", "not_entailment"),
             ("the mat is red", "the mat is red", "entailment"),
             ("a dog on a mat", "a cat on a mat", "not_entailment")]
SMALL = ["--task=rte", "--encoder_preset=tiny", "--epochs=1", "--batch_size=8",
         "--max_seq_length=32", "--tune_fraction=0", "--verbose=2"]
PARALLEL = 3


def _tsv(rows):
    return HEADER + "".join(f"{i}\t{a}\t{b}\t{label}\n" for i, (a, b, label) in enumerate(rows))


def _rte(root, name, train=None, dev=None):
    """An rte-layout folder; ``train``/``dev`` are file contents (str or bytes), None = good."""
    d = root / name
    d.mkdir()
    for fname, content in (("train.tsv", train), ("dev.tsv", dev)):
        if content is False:
            continue
        content = _tsv(GOOD_ROWS) if content is None else content
        if isinstance(content, str):
            content = content.encode("utf-8")
        (d / fname).write_bytes(content)
    return d


def _pairs(root, name, train_lines):
    d = root / name
    d.mkdir()
    (d / "train.jsonl").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    good = [json.dumps({"text_a": a, "text_b": b, "label": int(l == "entailment")})
            for a, b, l in GOOD_ROWS]
    (d / "dev.jsonl").write_text("\n".join(good) + "\n", encoding="utf-8")
    return d


def _tiny_cross_dir(root, vocab_file, num_labels):
    """A finished cross-encoder directory (tiny preset) with ``num_labels`` labels."""
    import keras  # pylint: disable=import-outside-toplevel
    from virt_tf.config import preset  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.encoder import EncoderConfig  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import build_classifier, build_now, save_classifier  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(0)
    model = build_now(build_classifier("cross", EncoderConfig.from_dict(preset("tiny")),
                                       num_labels))
    save_classifier(str(root), "cross", model, {"task": "rte", "labels": ["a", "b", "c"]},
                    vocab_file, keras_format=False)
    return model


def _misshaped_resume_dir(root):
    """A stage folder whose checkpoint holds a 3-label model (rte has 2 labels)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from virt_tf.training.optimization import create_optimizer  # pylint: disable=import-outside-toplevel
    from virt_tf.training.resume import make_checkpoint  # pylint: disable=import-outside-toplevel
    from virt_tf.config import preset  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.encoder import EncoderConfig  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import build_classifier, build_now  # pylint: disable=import-outside-toplevel

    model = build_now(build_classifier("cross", EncoderConfig.from_dict(preset("tiny")), 3))
    optimizer = create_optimizer(1e-4, 10)
    optimizer.build(model.trainable_variables)
    manager = tf.train.CheckpointManager(make_checkpoint(model, optimizer),
                                         str(root / "checkpoints"), max_to_keep=2)
    manager.save(checkpoint_number=1)


def _hf_dir(root, vocab_file, bad_name):
    """A tiny Hugging Face BERT folder whose tensor ``bad_name`` has the wrong shape."""
    from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel

    h, inter, layers, vocab = 32, 64, 2, 30522
    config = {"model_type": "bert", "hidden_size": h, "num_hidden_layers": layers,
              "num_attention_heads": 4, "intermediate_size": inter, "vocab_size": vocab,
              "max_position_embeddings": 64, "type_vocab_size": 2, "hidden_act": "gelu"}
    shapes = {"embeddings.word_embeddings.weight": (vocab, h),
              "embeddings.position_embeddings.weight": (64, h),
              "embeddings.token_type_embeddings.weight": (2, h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    for l in range(layers):
        p = f"encoder.layer.{l}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense"):
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (h, h), (h,)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (h,), (h,)
        shapes[p + "intermediate.dense.weight"], shapes[p + "intermediate.dense.bias"] = \
            (inter, h), (inter,)
        shapes[p + "output.dense.weight"], shapes[p + "output.dense.bias"] = (h, inter), (h,)
    shapes[bad_name] = tuple(s + 1 for s in shapes[bad_name])
    rng = np.random.RandomState(0)
    save_file({k: (0.02 * rng.randn(*s)).astype(np.float32) for k, s in shapes.items()},
              str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (root / "vocab.txt").write_bytes(open(vocab_file, "rb").read())


def _cases(root, vocab_file):
    """name -> (extra CLI args, substrings the error line must contain)."""
    long_text = " ".join(["cat"] * 3000)
    cases = {}

    d = _rte(root, "missing", dev=False)
    cases["missing data file"] = ([f"--data_dir={d}"], [str(d / "dev.tsv"), "file not found"])
    cases["missing data folder"] = ([f"--data_dir={root / 'nowhere'}"],
                                    [f"--data_dir {root / 'nowhere'}", "folder not found"])
    d = _rte(root, "empty", train="")
    cases["empty file"] = ([f"--data_dir={d}"], [str(d / "train.tsv"), "file is empty"])
    d = _rte(root, "header_only", train=HEADER)
    cases["header without rows"] = ([f"--data_dir={d}"],
                                    [str(d / "train.tsv"), "header but no data rows"])
    rows = _tsv(GOOD_ROWS).splitlines(keepends=True)
    rows[3] = "2\tonly two\tcolumns\n"
    d = _rte(root, "columns", train="".join(rows))
    cases["wrong column count"] = ([f"--data_dir={d}"], [
        f"{d / 'train.tsv'}:4:", "expected 4 tab-separated columns, found 3"])
    rows = _tsv(GOOD_ROWS).splitlines(keepends=True)
    rows[5] = "4\ta cat\ta dog\tmaybe\n"
    d = _rte(root, "label", train="".join(rows))
    cases["unknown label"] = ([f"--data_dir={d}"], [f"{d / 'train.tsv'}:6:",
                                                    "unknown label 'maybe'"])
    raw = _tsv(GOOD_ROWS).encode("utf-8").split(b"\n")
    raw[2] = b"1\tthe caf\xe9 is \xff open\ta cafe\tentailment"
    d = _rte(root, "latin1", train=b"\n".join(raw))
    cases["bytes that are not UTF-8"] = ([f"--data_dir={d}"], [f"{d / 'train.tsv'}:3:",
                                                               "not UTF-8"])
    good_json = [json.dumps({"text_a": a, "text_b": b, "label": int(l == "entailment")})
                 for a, b, l in GOOD_ROWS]
    d = _pairs(root, "bad_json", good_json[:1] + ['{"text_a": "a cat", "text_b": '] + good_json)
    cases["invalid JSON line"] = (["--task=pairs", f"--data_dir={d}"],
                                  [f"{d / 'train.jsonl'}:2:", "invalid JSON"])
    d = _pairs(root, "no_field", good_json[:2] + [json.dumps({"text_a": "x", "label": 1})]
               + good_json)
    cases["missing field"] = (["--task=pairs", f"--data_dir={d}"],
                              [f"{d / 'train.jsonl'}:3:", "missing field(s) ['text_b']"])
    d = _pairs(root, "null_text", good_json[:3] + [json.dumps(
        {"text_a": None, "text_b": "x", "label": 0})] + good_json)
    cases["text that is not a string"] = (["--task=pairs", f"--data_dir={d}"],
                                          [f"{d / 'train.jsonl'}:4:", "not a string"])

    good = _rte(root, "good")
    cases["negative alpha"] = ([f"--data_dir={good}", "--virt_alpha=-0.5"],
                               ["virt_alpha must be >= 0, got -0.5"])
    cases["batch size 0"] = ([f"--data_dir={good}", "--batch_size=0"],
                             ["batch_size must be a positive number, got 0"])
    cases["learning rate NaN"] = ([f"--data_dir={good}", "--learning_rate=nan"],
                                  ["learning_rate must be a positive number, got nan"])
    cases["max_seq_length out of range"] = ([f"--data_dir={good}", "--max_seq_length=4"],
                                            ["max_seq_length must be in [5, 512], got 4"])
    cfg = root / "list.yaml"
    cfg.write_text("- epochs\n- 3\n", encoding="utf-8")
    cases["config file of the wrong kind"] = ([f"--data_dir={good}", f"--config={cfg}"],
                                              [str(cfg), "expected a mapping"])

    # Checkpoint folders (these cases get as far as TensorFlow).
    junk = root / "junk_teacher"
    junk.mkdir()
    (junk / "weights.bin").write_bytes(b"\x80\x04not a model")
    cases["teacher folder of the wrong format"] = (
        [f"--data_dir={good}", "--model=virt", f"--teacher_dir={junk}"],
        [str(junk), "no model_config.json"])
    shaped = root / "misshaped_teacher"
    _tiny_cross_dir(shaped, vocab_file, num_labels=3)
    with open(shaped / "model_config.json", encoding="utf-8") as f:
        conf = json.load(f)
    conf["classifier"]["num_labels"] = 2
    (shaped / "model_config.json").write_text(json.dumps(conf), encoding="utf-8")
    cases["teacher weights with mis-shaped variables"] = (
        [f"--data_dir={good}", "--model=virt", f"--teacher_dir={shaped}"],
        [str(shaped / "model.weights.h5"), "does not fit", "classifier"])
    resume = root / "misshaped_resume"
    _misshaped_resume_dir(resume)
    cases["resume checkpoint with mis-shaped variables"] = (
        [f"--data_dir={good}", "--model=cross", f"--model_dir={resume}"],
        [str(resume / "checkpoints" / "ckpt-1"), "cannot resume", "shape"])
    changed = root / "changed_options"
    _misshaped_resume_dir(changed)
    (changed / "checkpoints" / "stage.json").write_text(json.dumps(
        {"model": "cross", "epochs": 1, "steps_per_epoch": 2, "total_steps": 2,
         "train_examples": 8, "batch_size": 4, "seed": 0}), encoding="utf-8")
    cases["resume with other options than the checkpoints"] = (
        [f"--data_dir={good}", "--model=cross", f"--model_dir={changed}"],
        [str(changed), "different setting", "batch_size 4 -> 8", "steps_per_epoch 2 -> 1"])
    state = root / "bad_state"
    (state / "checkpoints").mkdir(parents=True)
    (state / "checkpoints" / "checkpoint").write_text("this is {not a checkpoint state\n",
                                                     encoding="utf-8")
    cases["checkpoint folder of the wrong format"] = (
        [f"--data_dir={good}", "--model=cross", f"--model_dir={state}"],
        [str(state / "checkpoints"), "not a checkpoint directory"])
    hf = root / "hf_misshaped"
    hf.mkdir()
    _hf_dir(hf, vocab_file, "encoder.layer.1.intermediate.dense.weight")
    cases["pretrained checkpoint with a mis-shaped variable"] = (
        [f"--data_dir={good}", "--model=cross", f"--init_checkpoint={hf}",
         "--encoder_preset="], [str(hf), "layer_1/intermediate/kernel", "has shape (33, 65)"])
    nohf = root / "no_weights"
    nohf.mkdir()
    (nohf / "config.json").write_text((hf / "config.json").read_text(), encoding="utf-8")
    (nohf / "vocab.txt").write_bytes((hf / "vocab.txt").read_bytes())
    (nohf / "pytorch_model.bin").write_bytes(b"\x80\x02pickled weights are not read")
    cases["pretrained folder of an unknown format"] = (
        [f"--data_dir={good}", "--model=cross", f"--init_checkpoint={nohf}",
         "--encoder_preset="], [str(nohf), "no model.safetensors and no TF checkpoint"])

    # Allowed input: empty and whitespace-only texts, a text far longer than max_seq_length.
    rows = list(GOOD_ROWS)
    rows[1] = ("", "the dog is slow", "not_entailment")
    rows[2] = ("a red car", "   ", "not_entailment")
    rows[4] = (long_text, "a tree", "entailment")
    d = _rte(root, "allowed", train=_tsv(rows))
    cases["allowed: empty, blank and very long texts"] = ([f"--data_dir={d}"], None)
    return cases


@pytest.fixture(scope="module")
def results(tmp_path_factory, repo_dir, vocab_file):
    """Run every case's CLI, ``PARALLEL`` at a time: name -> (returncode, stderr, model_dir)."""
    root = tmp_path_factory.mktemp("bad_input")
    cases = _cases(root, vocab_file)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=repo_dir)
    pending = list(cases.items())
    running, done = {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            name, (args, _) = pending.pop(0)
            model_dir = root / f"out_{len(done) + len(running)}"
            command = [sys.executable, "-m", "virt_tf.train", f"--model_dir={model_dir}",
                       *SMALL, *args]
            log = open(root / f"{model_dir.name}.log", "w+", encoding="utf-8")  # pylint: disable=consider-using-with
            proc = subprocess.Popen(command, cwd=repo_dir, env=env, stdout=subprocess.DEVNULL,
                                    stderr=log)
            running[name] = (proc, log, model_dir, time.time())
        for name, (proc, log, model_dir, t0) in list(running.items()):
            if proc.poll() is None and time.time() - t0 > 300:
                proc.kill()
            if proc.poll() is not None:
                log.seek(0)
                done[name] = (proc.returncode, log.read(), model_dir)
                log.close()
                del running[name]
        time.sleep(0.05)
    return cases, done


# case -> the `virt_tf.errors` class the CLI must report (raised where the input is checked)
BAD = {"missing data file": "DataError", "missing data folder": "MissingFileError",
       "empty file": "DataError", "header without rows": "DataError",
       "wrong column count": "DataError", "unknown label": "DataError",
       "bytes that are not UTF-8": "DataError", "invalid JSON line": "DataError",
       "missing field": "DataError", "text that is not a string": "DataError",
       "negative alpha": "ConfigError", "batch size 0": "ConfigError",
       "learning rate NaN": "ConfigError", "max_seq_length out of range": "ConfigError",
       "config file of the wrong kind": "ConfigError",
       "teacher folder of the wrong format": "PathError",
       "teacher weights with mis-shaped variables": "CheckpointError",
       "resume checkpoint with mis-shaped variables": "StageError",
       "checkpoint folder of the wrong format": "StageError",
       "resume with other options than the checkpoints": "StageError",
       "pretrained checkpoint with a mis-shaped variable": "CheckpointError",
       "pretrained folder of an unknown format": "CheckpointError"}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_line_error_and_exit_code_2(results, case):
    cases, done = results
    returncode, stderr, _ = done[case]
    assert returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.rstrip("\n").splitlines()
    errors = [l for l in lines if l.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    assert errors[0].startswith(f"error: {BAD[case]}: "), (BAD[case], errors[0])
    for expected in cases[case][1]:
        assert expected in errors[0], (expected, errors[0])
    print(errors[0])


def test_every_case_is_checked(results):
    cases, _ = results
    assert sorted(cases) == sorted(list(BAD) + ["allowed: empty, blank and very long texts"])


def test_a_bug_is_not_bad_input(repo_dir):
    """Only `UserError`s become one line and exit 2; any other exception, even a plain
    ValueError from inside the program, keeps its traceback and exits 1."""
    code = ("from virt_tf.cli.common import run_cli\n"
            "def buggy():\n    return int('not a number')\n"
            "run_cli(buggy)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_dir, capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=repo_dir))
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ValueError: invalid literal" in proc.stderr
    assert not any(l.startswith("error:") for l in proc.stderr.splitlines())
    user = ("from virt_tf.cli.common import run_cli\nfrom virt_tf.errors import DataError\n"
            "def bad():\n    raise DataError('x.tsv:3: unknown label')\nrun_cli(bad)\n")
    proc = subprocess.run([sys.executable, "-c", user], cwd=repo_dir, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=repo_dir))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: DataError: x.tsv:3: unknown label"


def test_empty_blank_and_long_texts_are_allowed_truncated_and_counted(results):
    _, done = results
    returncode, stderr, model_dir = done["allowed: empty, blank and very long texts"]
    assert returncode == 0, stderr[-3000:]
    assert "2 empty or whitespace-only texts" in stderr
    assert "1 of 8 training pairs are longer than max_seq_length=32 and are truncated" in stderr
    # The run's log: the command's one format (`virt_tf.cli.common.LOG_FORMAT`), and none of
    # the warnings Keras (`shuffle=True` beside a dataset) or TensorFlow (the evaluation's
    # retracing) printed in every training run.
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d WARNING pipeline: 2 empty or "
                     "whitespace-only texts", stderr, re.MULTILINE), stderr[-3000:]
    assert "shuffle" not in stderr and "retracing" not in stderr, stderr[-3000:]
    with open(model_dir / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    assert metrics["truncated_train_pairs"] == 1 and metrics["train_examples"] == 8
    assert np.isfinite(metrics["loss"])


def test_long_and_empty_texts_pack_within_max_seq_length(vocab_file):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from virt_tf.data.tokenization import BertPairPreprocessor  # pylint: disable=import-outside-toplevel

    prep = BertPairPreprocessor(vocab_file, True, 32)
    a = tf.constant([" ".join(["cat"] * 3000), "", "   "])
    b = tf.constant(["a tree", "the dog", ""])
    out = prep(a, b)
    assert out["pair"]["input_word_ids"].shape[1] == 32
    assert int(tf.reduce_sum(out["pair"]["input_mask"][0])) == 32
    assert [int(x) for x in tf.reduce_sum(out["text_a"]["input_mask"], axis=1)][1:] == [2, 2]
    assert int(tf.reduce_sum(out["text_b"]["input_mask"][2])) == 2
    assert prep.count_truncated(a, b) == 1
