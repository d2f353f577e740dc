"""Determinism: ``--seed`` fixes data order, initialisation and dropout.

Two CPU runs of the CLI with the same seed (started side by side, as separate
processes) must end with identical metrics and identical weights; the parts
that the seed controls are also checked one by one in-process.
"""
import json
import os
import subprocess
import sys

import numpy as np

from conftest import read_h5_weights  # noqa: E402
from virt_tf.data import pipeline, tasks

TIMING_KEYS = {"train_seconds", "eval_seconds", "wall_seconds"}


def _examples(n):
    return [tasks.Example(f"text a {i}", f"text b {i}", i % 2) for i in range(n)]


def test_seed_fixes_the_data_order_and_resume_continues_it(vocab_file):
    from virt_tf.data.tokenization import BertPairPreprocessor  # pylint: disable=import-outside-toplevel

    np.testing.assert_array_equal(pipeline.epoch_order(10, 3, seed=5),
                                  pipeline.epoch_order(10, 3, seed=5))
    assert not np.array_equal(pipeline.epoch_order(10, 3, seed=5),
                              pipeline.epoch_order(10, 3, seed=6))
    order = pipeline.epoch_order(10, 3, seed=5)
    assert all(sorted(order[i * 10:(i + 1) * 10]) == list(range(10)) for i in range(3))
    assert not np.array_equal(order[:10], order[10:20])  # a new permutation each epoch
    data = _examples(20)
    assert tasks.hold_out(data, 0.2, seed=1) == tasks.hold_out(data, 0.2, seed=1)
    assert tasks.hold_out(data, 0.2, seed=1) != tasks.hold_out(data, 0.2, seed=2)

    prep = BertPairPreprocessor(vocab_file, True, 16)
    full = [y.numpy().tolist() for _, y in pipeline.training_stream(data, prep, 4, 2, seed=3)]
    tail = [y.numpy().tolist() for _, y in pipeline.training_stream(data, prep, 4, 2, seed=3,
                                                                      start_step=7)]
    assert len(full) == 10 and tail == full[7:]
    ids = [f["pair"]["input_word_ids"].numpy().tolist()
           for f, _ in pipeline.training_stream(data, prep, 4, 2, seed=3, start_step=7)]
    ids_full = [f["pair"]["input_word_ids"].numpy().tolist()
                for f, _ in pipeline.training_stream(data, prep, 4, 2, seed=3)]
    assert ids == ids_full[7:]


def test_seed_fixes_initialisation_and_dropout():
    import keras  # pylint: disable=import-outside-toplevel
    from virt_tf.config import preset  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.encoder import EncoderConfig  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import build_classifier, build_now, dummy_features  # pylint: disable=import-outside-toplevel

    config = EncoderConfig.from_dict(dict(preset("tiny"), vocab_size=200,
                                          max_position_embeddings=32))
    features = dummy_features(batch=2, seq=6)

    def run(seed):
        keras.utils.set_random_seed(seed)
        model = build_now(build_classifier("virt", config, 2, {"dropout_rate": 0.3}))
        weights = [w.numpy() for w in model.trainable_weights]
        dropped = [model(features, training=True).numpy() for _ in range(2)]
        return weights, dropped

    w1, d1 = run(7)
    w2, d2 = run(7)
    w3, d3 = run(8)
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert all(np.array_equal(a, b) for a, b in zip(d1, d2))
    assert not np.array_equal(d1[0], d1[1])  # dropout is on, and moves on between calls
    assert not all(np.array_equal(a, b) for a, b in zip(w1, w3))


def test_two_cli_runs_with_the_same_seed_give_identical_metrics(tmp_path, repo_dir,
                                                                 shared_data):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=repo_dir)
    procs = []
    for name in ("a", "b"):
        command = [sys.executable, "-m", "virt_tf.train", "--task=rte", "--model=siamese",
                   f"--data_dir={os.path.join(shared_data, 'rte')}",
                   f"--model_dir={tmp_path / name}", "--encoder_preset=tiny", "--epochs=2",
                   "--max_train_examples=16", "--max_eval_examples=16", "--batch_size=8",
                   "--tune_fraction=0", "--verbose=2", "--seed=11"]
        log = open(tmp_path / f"{name}.log", "w", encoding="utf-8")  # pylint: disable=consider-using-with
        procs.append((subprocess.Popen(command, cwd=repo_dir, env=env, stdout=log,
                                       stderr=subprocess.STDOUT), log, name))
    for proc, log, name in procs:
        proc.wait(timeout=900)
        log.close()
        assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    metrics = []
    for name in ("a", "b"):
        with open(tmp_path / name / "metrics.json", encoding="utf-8") as f:
            metrics.append({k: v for k, v in json.load(f).items() if k not in TIMING_KEYS})
    assert metrics[0] == metrics[1]  # exactly, the dev loss included
    assert metrics[0]["seed"] == 11 and "loss" in metrics[0] and metrics[0]["total_steps"] == 4
    wa = read_h5_weights(tmp_path / "a" / "model.weights.h5")
    wb = read_h5_weights(tmp_path / "b" / "model.weights.h5")
    assert sorted(wa) == sorted(wb) and len(wa) > 20
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
