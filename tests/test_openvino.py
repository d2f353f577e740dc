"""OpenVINO for offline encoding: export, ``encode --backend=openvino``, the same cache.

Needs the optional package ``openvino`` (installed by tools/install.sh). Tolerance: with
inference precision f32 OpenVINO runs the same float32 graph with other kernels (other
summation orders, a fused GELU/LayerNorm), so states differ from TensorFlow's by float32
rounding: within 1e-4 absolute on states of size ~1-3 (measured 5e-7 here); the
probabilities scored from either cache agree within 1e-5 (measured 1.2e-7), and any two
of the test pairs differ by far more.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import openvino  # noqa: E402  (not skipped when absent: tools/install.sh installs it)

from test_cache import (MAX_SEQ, PAIRS, TEXTS, _env, save_tiny, write_pairs,  # noqa: E402
                        write_texts)

STATES_ATOL = 1e-4
PROBS_ATOL = 1e-5


@pytest.fixture(scope="module")
def model(tmp_path_factory, vocab_file):
    root = tmp_path_factory.mktemp("ov")
    model_dir = root / "virt"
    save_tiny(model_dir, "virt", vocab_file)
    return {"root": root, "model_dir": str(model_dir), "texts": write_texts(root / "t.tsv"),
            "pairs": write_pairs(root / "p.tsv")}


@pytest.fixture(scope="module")
def exported(model):
    from virt_tf.inference.exporting import export
    return export(model["model_dir"], str(model["root"] / "export"), version=1,
                  fmt="openvino")


def test_export_writes_the_encode_signature_as_an_openvino_model(model, exported):
    from virt_tf.inference.openvino import IR_NAME, read_info
    from virt_tf.inference.state_cache import model_fingerprint
    folder = exported["openvino_path"]
    assert folder.endswith(os.path.join("virt_openvino", "1"))
    assert os.path.exists(os.path.join(folder, IR_NAME))
    assert os.path.getsize(os.path.join(folder, "encode.bin")) > 0
    info = read_info(folder)
    assert info["model"] == "virt" and info["format"] == "openvino"
    assert info["model_fingerprint"] == model_fingerprint(model["model_dir"])
    core = openvino.Core()
    ir = core.read_model(os.path.join(folder, IR_NAME))
    names = sorted(n for i in ir.inputs for n in i.get_names())
    assert names == ["input_mask", "input_type_ids", "input_word_ids"]
    assert any("states" in o.get_names() for o in ir.outputs)
    # weights stay float32 in the IR (openvino.save_model compresses to f16 by default)
    assert not any(op.get_type_name() == "Constant" and op.get_element_type().get_type_name()
                   == "f16" for op in ir.get_ops())
    # the SavedModels are written as without the flag
    assert os.path.exists(os.path.join(exported["model_path"], "saved_model.pb"))


def test_openvino_states_equal_tensorflow_states(model, exported, vocab_file):
    from virt_tf.data.tokenization import BertPairPreprocessor
    from virt_tf.inference.state_cache import encode_texts
    from virt_tf.inference.matcher import load
    from virt_tf.inference.openvino import OpenVinoEncoder, IR_NAME
    from virt_tf.inference.serving import ModelServer

    matcher = load(model["model_dir"])
    prep = BertPairPreprocessor(vocab_file, True, MAX_SEQ)
    texts = list(TEXTS.values())
    tf_states, tf_offsets = encode_texts(ModelServer(matcher.classifier, "virt").encode,
                                         prep, texts, batch_size=3)
    ov = OpenVinoEncoder(os.path.join(exported["openvino_path"], IR_NAME))
    ov_states, ov_offsets = encode_texts(ov, prep, texts, batch_size=3)
    np.testing.assert_array_equal(tf_offsets, ov_offsets)
    assert ov_states.dtype == np.float32 and ov_states.shape == tf_states.shape
    assert np.abs(tf_states).max() > 0.5  # states of a real size: the tolerance means something
    np.testing.assert_allclose(ov_states, tf_states, atol=STATES_ATOL, rtol=0)
    # a batch of other shapes (one text, then all at once): dynamic shapes work
    one = ov(**prep.single(__import__("tensorflow").constant([texts[1]])))
    assert one["states"].shape[0] == 1
    np.testing.assert_allclose(one["states"][0, :tf_offsets[2] - tf_offsets[1]],
                               tf_states[tf_offsets[1]:tf_offsets[2]], atol=STATES_ATOL)


@pytest.mark.parametrize("use_export", [True, False])
def test_a_cache_from_either_backend_scores_the_same(model, exported, tmp_path, use_export):
    from virt_tf.inference.matcher import encode_file
    from virt_tf.inference.state_cache import read_cache
    from virt_tf.inference.scoring import score_file

    tf_path, ov_path = str(tmp_path / "tf.npz"), str(tmp_path / "ov.npz")
    encode_file(model["model_dir"], model["texts"], tf_path, batch_size=3,
                show_progress=False)
    encode_file(model["model_dir"], model["texts"], ov_path, batch_size=3,
                show_progress=False, backend="openvino",
                openvino_model=exported["openvino_path"] if use_export else None)
    a, b = read_cache(tf_path), read_cache(ov_path)
    assert a.ids == b.ids and np.array_equal(a.offsets, b.offsets)
    assert (a.meta["backend"], b.meta["backend"]) == ("tensorflow", "openvino")
    assert {k: v for k, v in a.meta.items() if k != "backend"} == {
        k: v for k, v in b.meta.items() if k not in ("backend", "openvino_precision")}
    np.testing.assert_allclose(b.states, a.states, atol=STATES_ATOL, rtol=0)
    pairs_a, probs_a, _ = score_file(model["model_dir"], [tf_path], model["pairs"],
                                     show_progress=False)
    pairs_b, probs_b, _ = score_file(model["model_dir"], [ov_path], model["pairs"],
                                     show_progress=False)
    assert pairs_a == pairs_b and len(probs_a) == len(PAIRS)
    gaps = np.abs(probs_a[:, None, 0] - probs_a[None, :, 0])[~np.eye(len(PAIRS), dtype=bool)]
    assert gaps.min() > 100 * PROBS_ATOL  # a wrong or reordered pair would be caught
    np.testing.assert_allclose(probs_b, probs_a, atol=PROBS_ATOL, rtol=0)


def test_text_matcher_encode_with_either_backend(model):
    from virt_tf.inference.matcher import load
    matcher = load(model["model_dir"])
    texts = list(TEXTS.values())
    a = matcher.encode(texts, ids=list(TEXTS), batch_size=4)
    b = matcher.encode(texts, ids=list(TEXTS), batch_size=4, backend="openvino")
    assert a.ids == b.ids == list(TEXTS)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_allclose(b.states, a.states, atol=STATES_ATOL, rtol=0)
    with pytest.raises(ValueError, match="backend must be one of"):
        matcher.encode(texts, backend="onnx")


def test_an_ir_of_another_model_or_a_cross_encoder_is_refused(model, exported, tmp_path,
                                                              vocab_file):
    from virt_tf.inference.matcher import encode_file
    from virt_tf.errors import CheckpointError, ConfigError
    from virt_tf.inference.exporting import export
    other = tmp_path / "other"
    save_tiny(other, "virt", vocab_file, seed=7)
    with pytest.raises(CheckpointError, match="exported from another model"):
        encode_file(str(other), model["texts"], str(tmp_path / "x.npz"), show_progress=False,
                    backend="openvino", openvino_model=exported["openvino_path"])
    cross = tmp_path / "cross"
    save_tiny(cross, "cross", vocab_file)
    with pytest.raises(ConfigError, match="has none"):
        export(str(cross), str(tmp_path / "exp"), fmt="openvino")
    assert not os.path.exists(tmp_path / "exp")  # nothing written


def _without_openvino(tmp_path):
    """An environment in which ``import openvino`` fails, as when it is not installed."""
    fake = tmp_path / "no_openvino" / "openvino"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'openvino'\")\n",
                                      encoding="utf-8")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), env["PYTHONPATH"]])
    return env


def test_missing_openvino_is_one_error_line(model, tmp_path, repo_dir):
    env = _without_openvino(tmp_path)
    commands = [
        [sys.executable, "-m", "virt_tf.encode", f"--model_dir={model['model_dir']}",
         f"--input={model['texts']}", f"--output={tmp_path / 'c.npz'}", "--backend=openvino"],
        [sys.executable, "-m", "virt_tf.export", f"--model_dir={model['model_dir']}",
         f"--export_dir={tmp_path / 'exp'}", "--format=openvino"],
    ]
    for command in commands:
        proc = subprocess.run(command, cwd=repo_dir, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
        assert len(errors) == 1, proc.stderr[-2000:]
        assert errors[0].startswith("error: MissingDependencyError: ")
        assert "openvino" in errors[0] and "pip install" in errors[0]
    assert not (tmp_path / "c.npz").exists() and not (tmp_path / "exp").exists()


def test_missing_openvino_is_reported_before_tensorflow_loads(model, tmp_path, repo_dir):
    """The optional package is checked right after the flags: no TensorFlow is loaded for
    an error the user can fix with one `pip install`."""
    env = _env()
    env["PYTHONPATH"] = _without_openvino(tmp_path)["PYTHONPATH"]
    probe = ("import runpy, sys\n"
             "try:\n"
             "    runpy.run_module('virt_tf.encode', run_name='__main__')\n"
             "finally:\n"
             "    print('tensorflow loaded:', 'tensorflow' in sys.modules)\n")
    proc = subprocess.run(
        [sys.executable, "-c", probe, f"--model_dir={model['model_dir']}",
         f"--input={model['texts']}", f"--output={tmp_path / 'c.npz'}", "--backend=openvino"],
        cwd=repo_dir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ".[openvino]" in proc.stderr.strip().splitlines()[-1]
    assert "tensorflow loaded: False" in proc.stdout


def test_encode_command_with_the_openvino_backend(model, exported, tmp_path, repo_dir):
    out = tmp_path / "cli.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "virt_tf.encode", f"--model_dir={model['model_dir']}",
         f"--input={model['texts']}", f"--output={out}", "--backend=openvino",
         f"--openvino_model={exported['openvino_path']}"],
        cwd=repo_dir, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(out, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        assert len(data["ids"]) == len(TEXTS)
    assert meta["backend"] == "openvino" and meta["openvino_precision"] == "f32"
