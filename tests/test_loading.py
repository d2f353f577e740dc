"""The public Python API (`virt_tf.load`, `virt_tf.from_checkpoint`) and a model directory
that carries its own task: labels, metrics and the field names of a `pairs` file."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

A = ["the cat sat on the mat", "a dog runs fast", "the red car is not big", "a tree is green",
     "the house is small", "a blue car runs slow", "the green tree is big", "a small dog"]
B = ["a cat sat", "the dog is slow", "a big red car", "the tree is not green",
     "a small house", "the car runs fast", "a tree", "the dog is big"]
Y = [0, 1, 0, 1, 0, 1, 0, 1]


def test_load_a_trained_directory_and_score_text_pairs(tmp_path, vocab_file):
    """Three lines from a trained directory to probabilities of raw text pairs."""
    from conftest import save_tiny_classifier
    from virt_tf.evaluation.metrics import predict_probs
    clf = save_tiny_classifier(tmp_path / "m", "virt", vocab_file, 24, labels=("yes", "no"))

    import virt_tf
    matcher = virt_tf.load(str(tmp_path / "m"))
    probs = matcher.predict(A[:3], B[:3])

    assert probs.shape == (3, 2) and matcher.labels == ("yes", "no")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # the same numbers as the classifier itself, with a preprocessor of the saved settings
    from virt_tf.data.tokenization import BertPairPreprocessor
    ref = predict_probs(clf, list(zip(A[:3], B[:3])), BertPairPreprocessor(vocab_file, True, 24))
    np.testing.assert_allclose(probs, ref, atol=1e-6)
    assert matcher.preprocessor.max_seq_length == 24 and matcher.offline
    with pytest.raises(ValueError, match="as many"):
        matcher.predict(A[:2], B[:3])


def test_build_teacher_and_student_and_fit_virt_model_on_own_pairs(tmp_path):
    """The Keras way: build from a checkpoint (with its preprocessor), map one's own
    tf.data string pairs, `fit` a `VirtModel`, save, load back."""
    import keras
    import tensorflow as tf
    import virt_tf

    keras.utils.set_random_seed(0)
    teacher = virt_tf.from_checkpoint("cross", 2, encoder_preset="tiny", max_seq_length=32)
    student = virt_tf.from_checkpoint("virt", 2, encoder_preset="tiny", max_seq_length=32,
                                      labels=["no", "yes"])
    ds = student.preprocess(tf.data.Dataset.from_tensor_slices((A, B, Y)).batch(4))
    model = virt_tf.VirtModel(student.classifier, teacher.classifier,
                              terms=[virt_tf.TaskLoss(), virt_tf.VirtLoss(weight=1.0)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(ds.repeat(6), epochs=1, verbose=0).history
    assert {"loss", "task_loss", "virt_loss", "accuracy"} <= set(history)
    features, labels = next(iter(ds))
    first = model.compute_losses(features, labels, training=False)
    model.fit(ds.repeat(10), epochs=1, verbose=0)
    later = model.compute_losses(features, labels, training=False)
    assert float(later["loss"]) < float(first["loss"])
    assert float(later["virt_loss"]) > 0
    student.save(str(tmp_path / "student"))
    again = virt_tf.load(str(tmp_path / "student"))
    assert again.labels == ("no", "yes") and again.model_name == "virt"
    np.testing.assert_allclose(again.predict(A, B), student.predict(A, B), atol=1e-6)


def test_pairs_model_with_custom_fields_is_rescored_from_its_directory(tmp_path, repo_dir):
    """Trained with --text_a_field=question ..., `virt_tf.evaluate` reads the same fields
    back from the model directory (it used to look for text_a/text_b/label)."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"question": a, "passage": b, "answer": "yes" if y else "no"}
            for a, b, y in zip(A * 3, B * 3, Y * 3)]
    for split, part in (("train", rows), ("dev", rows[:8])):
        with open(data / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in part))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = tmp_path / "model"
    train = subprocess.run(
        [sys.executable, "-m", "virt_tf.train", "--task=pairs", f"--data_dir={data}",
         "--text_a_field=question", "--text_b_field=passage", "--label_field=answer",
         "--metrics=accuracy,f1", "--model=siamese", "--encoder_preset=tiny", "--epochs=1",
         "--batch_size=4", f"--model_dir={out}", "--verbose=2", "--max_seq_length=32"],
        cwd=repo_dir, env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    config = json.loads((out / "model_config.json").read_text())
    assert config["task_options"]["a_field"] == "question"
    assert config["labels"] == ["no", "yes"]
    proc = subprocess.run([sys.executable, "-m", "virt_tf.evaluate", f"--model_dir={out}",
                           f"--data_dir={data}"], cwd=repo_dir, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rescored = json.loads(proc.stdout[proc.stdout.index("{"):])
    metrics = json.loads((out / "metrics.json").read_text())
    assert rescored["examples"] == 8 and "f1" in rescored
    assert rescored["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-9)
    assert rescored["f1"] == pytest.approx(metrics["f1"], abs=1e-9)
