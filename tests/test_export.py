"""SavedModel export for TF Serving (`virt_tf.export`, `virt_tf.inference.serving`) on tiny models."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from conftest import save_tiny_classifier  # noqa: E402

LABELS = ["entailment", "not_entailment"]
MAX_SEQ = 24
PAIRS = [
    ("Is the cat on the mat?", "A cat sat on the mat."),
    ("Dogs run fast.", "The dog is not slow at all, it runs very fast in the green park."),
    ("Who wrote it?", "Nobody knows who wrote the small red book that sits on the table "
                      "in the house near the big tree by the river."),  # truncated (pair > 24)
    ("", "An empty question."),
]


def _env():
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return env


def save_tiny(directory, model_name, vocab_file):
    """A tiny random model saved like training does (see conftest)."""
    return save_tiny_classifier(directory, model_name, vocab_file, MAX_SEQ, 1, LABELS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, vocab_file):
    """{model: (classifier, model_dir, export info)} for virt and cross, exported once."""
    from virt_tf.inference import exporting as export

    root = tmp_path_factory.mktemp("export")
    out = {}
    for name in ("virt", "cross"):
        model_dir = root / name
        classifier = save_tiny(model_dir, name, vocab_file)
        info = export.export(str(model_dir), str(root / "serving"))
        out[name] = (classifier, str(model_dir), info)
    return out


def keras_probs(classifier, vocab_file, pairs=PAIRS):
    from virt_tf.data.tasks import Example
    from virt_tf.data.tokenization import BertPairPreprocessor
    from virt_tf.evaluation.metrics import predict_probs

    prep = BertPairPreprocessor(vocab_file, True, MAX_SEQ)
    return predict_probs(classifier, [Example(a, b, 0) for a, b in pairs], prep, batch_size=3)


def pair_ids(vocab_file, pairs=PAIRS):
    import tensorflow as tf
    from virt_tf.data.tokenization import BertPairPreprocessor

    prep = BertPairPreprocessor(vocab_file, True, MAX_SEQ)
    packed = prep(tf.constant([a for a, _ in pairs]), tf.constant([b for _, b in pairs]))
    return {k: {n: v.numpy() for n, v in p.items()} for k, p in packed.items()}


def test_layout_and_export_info(exported):
    _, _, info = exported["virt"]
    assert info["version"] == 1
    assert info["model_path"].endswith(os.path.join("serving", "virt", "1"))
    assert info["preprocessing_path"].endswith(os.path.join("serving", "virt_preprocessing", "1"))
    for path in (info["model_path"], info["preprocessing_path"]):
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        with open(os.path.join(path, "assets.extra", "virt_tf_export.json")) as f:
            assert json.load(f)["labels"] == LABELS
    assert info["signatures"] == ["encode", "score", "serving_default"]
    assert exported["cross"][2]["signatures"] == ["serving_default"]
    assert not any(d.endswith(".tmp") for d in os.listdir(os.path.dirname(info["model_path"])))


def test_next_version_and_no_silent_overwrite(exported, tmp_path):
    from virt_tf.inference import exporting as export

    _, model_dir, info = exported["cross"]
    serving = os.path.dirname(os.path.dirname(info["model_path"]))
    assert export.next_version(os.path.join(serving, "cross"),
                               os.path.join(serving, "cross_preprocessing")) == 2
    (tmp_path / "m" / "7").mkdir(parents=True)
    (tmp_path / "m" / "notes").mkdir()
    assert export.next_version(str(tmp_path / "m"), str(tmp_path / "absent")) == 8
    with pytest.raises(FileExistsError, match="--overwrite"):
        export.export(model_dir, serving, version=1)


def test_overwrite_replaces_a_version_in_place(exported, tmp_path):
    """``overwrite=True`` writes both SavedModels of an existing version again: the folders
    are replaced whole (renamed in, nothing left under a temporary name)."""
    from virt_tf.inference import exporting as export

    _, model_dir, _ = exported["cross"]
    serving = str(tmp_path / "serving")
    first = export.export(model_dir, serving, version=3)
    stale = os.path.join(first["model_path"], "stale.txt")
    with open(stale, "w", encoding="utf-8") as f:
        f.write("from an earlier export")
    again = export.export(model_dir, serving, version=3, overwrite=True)
    assert again["model_path"] == first["model_path"] and again["version"] == 3
    assert not os.path.exists(stale)  # the old folder went, not merged
    for path in (again["model_path"], again["preprocessing_path"]):
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        assert sorted(os.listdir(os.path.dirname(path))) == ["3"]


def test_model_savedmodel_has_no_tensorflow_text_op(exported):
    from virt_tf.inference.serving import non_core_ops, saved_model_op_types

    for name in ("virt", "cross"):
        info = exported[name][2]
        assert saved_model_op_types(info["model_path"]) & {"MatMul", "BatchMatMulV2"}
        assert non_core_ops(info["model_path"]) == []
        # the check can fail: the preprocessing SavedModel does hold tensorflow-text ops
        assert non_core_ops(info["preprocessing_path"])


FRESH_PROCESS = r"""
import sys
sys.modules["tensorflow_text"] = None  # any import of it would now fail
import numpy as np
import tensorflow as tf
inputs = np.load(sys.argv[1], allow_pickle=False)
out = {}
virt = tf.saved_model.load(sys.argv[2])
ids = {k: tf.constant(inputs[k]) for k in inputs.files if k.endswith(("_a", "_b"))}
out["virt_default"] = virt.signatures["serving_default"](**ids)["probabilities"].numpy()
enc = {}
for side in ("a", "b"):
    e = virt.signatures["encode"](**{k[:-2]: v for k, v in ids.items() if k.endswith(side)})
    enc[side] = e
out["virt_score"] = virt.signatures["score"](
    states_a=enc["a"]["states"], mask_a=enc["a"]["mask"],
    states_b=enc["b"]["states"], mask_b=enc["b"]["mask"])["probabilities"].numpy()
cross = tf.saved_model.load(sys.argv[3])
pair = {k[5:]: tf.constant(inputs[k]) for k in inputs.files if k.startswith("pair_")}
out["cross_default"] = cross.signatures["serving_default"](**pair)["probabilities"].numpy()
assert sys.modules["tensorflow_text"] is None
assert not any(m.startswith("tensorflow_text") and sys.modules[m] is not None
               for m in sys.modules)
assert "virt_tf" not in sys.modules
np.savez(sys.argv[4], **out)
print("ok")
"""


def test_fresh_process_without_tensorflow_text_matches_keras(exported, vocab_file, tmp_path):
    ids = pair_ids(vocab_file)
    arrays = {f"{k}_{side}": v for side, key in (("a", "text_a"), ("b", "text_b"))
              for k, v in ids[key].items()}
    arrays.update({f"pair_{k}": v for k, v in ids["pair"].items()})
    np.savez(tmp_path / "inputs.npz", **arrays)
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "inputs.npz"),
         exported["virt"][2]["model_path"], exported["cross"][2]["model_path"],
         str(tmp_path / "out.npz")],
        capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    virt_keras = keras_probs(exported["virt"][0], vocab_file)
    cross_keras = keras_probs(exported["cross"][0], vocab_file)
    assert np.std(virt_keras[:, 0]) > 1e-3 and np.std(cross_keras[:, 0]) > 1e-3  # not constant
    np.testing.assert_allclose(out["virt_default"], virt_keras, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["virt_score"], virt_keras, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["cross_default"], cross_keras, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["virt", "cross"])
def test_preprocessing_plus_model_equals_keras_pipeline(exported, vocab_file, name):
    import tensorflow as tf

    classifier, _, info = exported[name]
    prep = tf.saved_model.load(info["preprocessing_path"])
    model = tf.saved_model.load(info["model_path"])
    ids = prep.signatures["serving_default"](text_a=tf.constant([a for a, _ in PAIRS]),
                                            text_b=tf.constant([b for _, b in PAIRS]))
    probs = model.signatures["serving_default"](**ids)["probabilities"].numpy()
    np.testing.assert_allclose(probs, keras_probs(classifier, vocab_file), atol=1e-5, rtol=0)
    if name == "cross":
        assert set(ids) == {"input_word_ids", "input_mask", "input_type_ids"}
        assert "encode" not in prep.signatures and "encode" not in model.signatures
        return
    # the offline route: texts encoded one by one, scored later (pairs within the budget)
    short = PAIRS[:2]
    states = {}
    for side, texts in (("a", [a for a, _ in short]), ("b", [b for _, b in short])):
        single = prep.signatures["encode"](text=tf.constant(texts))
        states[side] = model.signatures["encode"](**single)
    offline = model.signatures["score"](
        states_a=states["a"]["states"], mask_a=states["a"]["mask"],
        states_b=states["b"]["states"], mask_b=states["b"]["mask"])["probabilities"].numpy()
    np.testing.assert_allclose(offline, keras_probs(classifier, vocab_file, short), atol=1e-5,
                               rtol=0)


def test_saved_model_cli_lists_signatures(exported):
    info = exported["virt"][2]
    # through this interpreter, not a `saved_model_cli` script found on PATH (which may
    # belong to another Python or TensorFlow)
    result = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli",
                             "show", "--dir", info["model_path"], "--all"],
                            capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    for signature in ("encode", "score", "serving_default"):
        assert f"signature_def['{signature}']" in text
    for tensor in ("states_a", "mask_b", "input_word_ids_a", "input_type_ids_b", "probabilities"):
        assert f"['{tensor}']" in text
    assert "shape: (-1, -1, 16)" in text  # states: [batch, seq, hidden]


def test_score_wrong_dtype_or_shape_gives_clear_error(exported):
    import tensorflow as tf
    from virt_tf.inference.serving import ExportedModel, ServingInputError

    model = ExportedModel(exported["virt"][2]["model_path"])
    assert model.hidden_size == 16
    ids = np.array([[101, 2023, 2003, 102], [101, 2175, 102, 0]], np.int32)
    enc = model.encode(ids, (ids > 0).astype(np.int32))
    states, mask = enc["states"], enc["mask"]
    assert states.shape == (2, 4, 16) and states.dtype == np.float32
    assert model.score(states, mask, states, mask).shape == (2, 2)
    bad = [
        (dict(states_a=states.astype(np.float16)), r"states_a must be float32 \[batch, seq, 16\]"
                                                   r", got float16"),
        (dict(states_b=states.astype(np.int32)), "states_b must be float32"),
        (dict(states_a=states[:, :, :8]), r"states_a must be float32 \[batch, seq, 16\], got "
                                          r"float32 \[2, 4, 8\]"),
        (dict(states_a=states[0]), "states_a must be float32"),
        (dict(mask_a=mask[:, :3]), r"mask_a must be int32 \[2, 4\]"),
        (dict(mask_b=mask.astype(np.int64)), "mask_b must be int32"),
        (dict(states_b=states[:1], mask_b=mask[:1]), "states_a has batch 2 but states_b has 1"),
    ]
    for change, message in bad:
        args = dict(states_a=states, mask_a=mask, states_b=states, mask_b=mask)
        args.update(change)
        with pytest.raises(ServingInputError, match=message):
            model.score(**args)
    with pytest.raises(ServingInputError, match="input_word_ids must be int32"):
        model.encode(ids.astype(np.float32), ids)
    # the graph checks too (TF Serving feeds tensors without comparing their shapes)
    signature = model.signatures["score"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask_a must be int32"):
        signature(states_a=tf.constant(states), mask_a=tf.constant(mask[:, :3]),
                  states_b=tf.constant(states), mask_b=tf.constant(mask))
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        signature(states_a=tf.constant(states), mask_a=tf.constant(mask),
                  states_b=tf.constant(states[:1]), mask_b=tf.constant(mask[:1]))
    cross = ExportedModel(exported["cross"][2]["model_path"])
    with pytest.raises(ServingInputError, match="cross-encoder, which has no offline part"):
        cross.score(states, mask, states, mask)
    with pytest.raises(ServingInputError, match="serving_default takes"):
        cross.predict(input_word_ids=ids)


def test_export_cli(exported, tmp_path):
    _, model_dir, _ = exported["cross"]
    ok = subprocess.run([sys.executable, "-m", "virt_tf.export", f"--model_dir={model_dir}",
                         f"--export_dir={tmp_path / 'serving'}", "--name=teacher"],
                        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "encode and score do not apply" in ok.stdout
    assert (tmp_path / "serving" / "teacher" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "serving" / "teacher_preprocessing" / "1" / "saved_model.pb").is_file()
    bad = subprocess.run([sys.executable, "-m", "virt_tf.export",
                          f"--model_dir={tmp_path / 'missing'}",
                          f"--export_dir={tmp_path / 'serving'}"],
                         capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert bad.returncode == 2
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("error: MissingFileError: ") and "missing" in last
