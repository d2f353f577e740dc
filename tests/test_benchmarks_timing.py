"""virt_tf.benchmarks.timing: stored digits, the step timer, the stream before the levers and
the sentence-transformers subprocess (tiny inputs, no timed assertions; the timed training
and encoding run end to end in test_benchmark_speed.py)."""
import os
import sys

import numpy as np
import pytest

from virt_tf.benchmarks import timing


def test_stored_times_keep_their_precision_when_steps_are_fast():
    """A few-millisecond step stored to fixed decimals lost up to 0.2% (the quick-mode check of
    test_benchmark_speed.py failed once on a fast machine); significant digits keep
    seconds x pairs/s = batch exact."""
    significant = timing.significant
    assert significant(0.00374449) == 0.0037445 and significant(7477.61234) == 7477.6
    for mean in (0.00374449, 0.0150049, 0.0300149, 2.04917):
        assert abs(significant(28 / mean) * significant(mean) / 28 - 1) < 1e-4


def test_step_timer_records_each_step_from_begin_to_end(monkeypatch):
    timer = timing.StepTimer()
    clock = iter([10.0, 10.5, 11.0, 13.0])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    for step in range(2):
        timer.on_train_batch_begin(step)
        timer.on_train_batch_end(step)
    assert timer.times == [0.5, 2.0]


def test_legacy_stream_tokenizes_seeded_random_batches_of_every_epoch(small_vocab):
    """Example i is "cat" i + 1 times with label i: each batch's labels follow the seeded
    epoch order and its pair packings hold those very texts (i + 1 + "dog" + 3 specials)."""
    from virt_tf.data.pipeline import epoch_order
    from virt_tf.data.tasks import Example
    from virt_tf.data.tokenization import BertPairPreprocessor

    examples = [Example(" ".join(["cat"] * (i + 1)), "dog", i) for i in range(5)]
    prep = BertPairPreprocessor(small_vocab, max_seq_length=16)
    batches = list(timing.legacy_stream(examples, prep, batch_size=3, epochs=2, seed=4))
    assert [len(labels) for _, labels in batches] == [3, 3, 3, 1]
    labels = np.concatenate([labels.numpy() for _, labels in batches])
    np.testing.assert_array_equal(labels, epoch_order(5, 2, 4))
    assert not np.array_equal(labels[:5], np.arange(5))  # seed 4 shuffles
    lengths = np.concatenate([x["pair"]["input_mask"].numpy().sum(axis=1) for x, _ in batches])
    np.testing.assert_array_equal(lengths, labels + 1 + 1 + 3)


FAKE_ST = """
import argparse, json, os, sys
p = argparse.ArgumentParser()
for name in ("--texts", "--model", "--batch_size", "--backends"):
    p.add_argument(name, required=True)
a = p.parse_args()
if a.model == "broken":
    sys.exit("boom: no such model")
with open(a.texts, encoding="utf-8") as f:
    texts = json.load(f)
print("loading ...")  # progress lines before the result
print(json.dumps({"texts": texts, "texts_file": a.texts, "model": a.model,
                  "batch_size": int(a.batch_size), "backends": a.backends.split(","),
                  "offline": os.environ.get("HF_HUB_OFFLINE")}))
"""


def test_sentence_transformers_speed_passes_texts_and_settings_to_the_script(tmp_path):
    script = tmp_path / "fake_st.py"
    script.write_text(FAKE_ST)
    texts = ["a premise", "tab\tand \"quotes\"", "ünïcode"]
    out = timing.sentence_transformers_speed(sys.executable, texts, ["torch", "openvino"], 8,
                                             "MODEL", str(script))
    assert out["texts"] == texts and out["model"] == "MODEL" and out["batch_size"] == 8
    assert out["backends"] == ["torch", "openvino"] and out["offline"] == "1"
    assert not os.path.exists(out["texts_file"])  # the temporary texts file is gone

    with pytest.raises(RuntimeError, match="boom: no such model"):
        timing.sentence_transformers_speed(sys.executable, texts, ["torch"], 8, "broken",
                                           str(script))
