"""A resume refuses every changed setting that changes the result, naming it and both values."""
import os

import pytest

from virt_tf.data.tasks import Example, get_task

A = ["the cat sat on the mat", "a dog runs fast", "the red car is not big", "a tree is green",
     "the house is small", "a blue car runs slow", "the green tree is big", "a small dog"]
B = ["a cat sat", "the dog is slow", "a big red car", "the tree is not green",
     "a small house", "the car runs fast", "a tree", "the dog is big"]


def _data(flip=False):
    train = [Example(a, b, (i + int(flip)) % 2) for i, (a, b) in enumerate(zip(A, B))]
    return {"task": get_task("rte"), "train": train, "tune": [], "eval": train[:4]}


def _cfg(**changes):
    from virt_tf.config import load_config
    cfg = load_config("rte", "virt", overrides={"epochs": 1, "batch_size": 4,
                                                "max_seq_length": 32, "virt_alpha": 0.5,
                                                "checkpoint_steps": 1})
    return cfg.replace(**changes)


def _encoder():
    from virt_tf.config import preset
    from virt_tf.modeling.encoder import EncoderConfig
    return EncoderConfig.from_dict(preset("tiny"))


def _teacher(seed):
    import keras
    from virt_tf.models.registry import build_classifier, build_now
    keras.utils.set_random_seed(seed)
    return build_now(build_classifier("cross", _encoder(), 2))


def _prep(vocab_file, length=32):
    from virt_tf.data.tokenization import BertPairPreprocessor
    return BertPairPreprocessor(vocab_file, True, length)


@pytest.fixture(scope="module")
def stage(tmp_path_factory, vocab_file):
    """A finished VIRT stage whose metrics.json is removed: its checkpoints can be resumed."""
    from virt_tf.rundir import METRICS_FILE
    from virt_tf.training.stage import run_stage
    directory = str(tmp_path_factory.mktemp("stage") / "virt")
    teacher = _teacher(0)
    run_stage("virt", directory, _cfg(), _data(), None, _prep(vocab_file), teacher,
              verbose=0, encoder_config=_encoder())
    os.remove(os.path.join(directory, METRICS_FILE))
    return directory, teacher


CHANGES = {
    "learning rate": (dict(learning_rate=1e-4), {}, "learning_rate 5e-05 -> 0.0001"),
    "alpha": (dict(virt_alpha=2.0), {}, "virt_alpha 0.5 -> 2.0"),
    "max_seq_length": (dict(max_seq_length=24), {"length": 24}, "max_seq_length 32 -> 24"),
    "model option": (dict(fusion="code"), {}, "fusion 'paper' -> 'code'"),
    "precision": (dict(precision="mixed_bfloat16"), {},
                  "precision 'float32' -> 'mixed_bfloat16'"),
    "data": ({}, {"flip": True}, "train_data '"),
    "teacher": ({}, {"teacher_seed": 1}, "teacher '"),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_resume_refuses_a_changed_setting(stage, vocab_file, name):
    from virt_tf.training.stage import run_stage
    from virt_tf.errors import StageError
    directory, teacher = stage
    changes, other, expected = CHANGES[name]
    if "teacher_seed" in other:
        teacher = _teacher(other["teacher_seed"])
    with pytest.raises(StageError) as info:
        run_stage("virt", directory, _cfg(**changes), _data(other.get("flip", False)),
                  None, _prep(vocab_file, other.get("length", 32)), teacher, verbose=0,
                  encoder_config=_encoder())
    message = str(info.value)
    assert "different setting" in message and expected in message, message
    assert message.count("->") == 1, message  # only the changed setting is named


def test_resume_with_the_same_settings_finishes(stage, vocab_file):
    """The same settings resume (nothing is refused), and a setting that does not change the
    result (how often checkpoints are written) may change."""
    from virt_tf.rundir import METRICS_FILE
    from virt_tf.training.stage import run_stage
    directory, teacher = stage
    _, metrics = run_stage("virt", directory, _cfg(checkpoint_steps=7), _data(), None,
                           _prep(vocab_file), teacher, verbose=0, encoder_config=_encoder())
    assert metrics["total_steps"] == 2 and os.path.exists(
        os.path.join(directory, METRICS_FILE))


def test_a_resumed_run_reports_the_training_time_of_every_session(stage, vocab_file):
    """train_seconds counts the first session (up to its last checkpoint) too, not only the
    time since the resume (here the resume has no step left, so nearly all of it is earlier)."""
    import json
    from virt_tf.rundir import CLOCK_FILE, METRICS_FILE
    from virt_tf.training.stage import run_stage
    directory, teacher = stage
    if os.path.exists(os.path.join(directory, METRICS_FILE)):
        os.remove(os.path.join(directory, METRICS_FILE))
    clock = os.path.join(directory, "checkpoints", CLOCK_FILE)
    with open(clock, encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["step"] == 2 and saved["seconds"] > 0.5  # the first session built and trained
    _, metrics = run_stage("virt", directory, _cfg(), _data(), None, _prep(vocab_file),
                           teacher, verbose=0, encoder_config=_encoder())
    assert saved["seconds"] <= metrics["train_seconds"] < saved["seconds"] + 60


def test_train_clock_ignores_a_record_of_another_step(tmp_path):
    import json
    from virt_tf.training.callbacks import TrainClock
    path = str(tmp_path / "clock.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"step": 5, "seconds": 100.0}')
    assert TrainClock(path, 5).seconds() >= 100.0
    assert TrainClock(path, 4).seconds() < 100.0  # a record of another step is not this run's
    assert TrainClock(path, 0).seconds() < 100.0  # a fresh run starts at zero
    clock = TrainClock(path, 5)
    clock.record(6)
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == {"step": 6, "seconds": pytest.approx(100.0, abs=5)}


def test_an_option_added_later_counts_as_its_default_in_an_older_stage_file(tmp_path):
    """A stage file written before an option existed lacks it: the option's base default
    resumes, any other value is refused (adding an option breaks no older checkpoint)."""
    import json
    from virt_tf.config import defaults as option_defaults
    from virt_tf.errors import StageError
    from virt_tf.rundir import STAGE_FILE
    from virt_tf.training.resume import check_stage_file
    defaults = option_defaults()
    assert defaults["virt_pairs"] == "all"
    directory = tmp_path / "old"
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "checkpoints" / STAGE_FILE).write_text(
        json.dumps({"batch_size": 4}), encoding="utf-8")
    check_stage_file(str(directory), {"batch_size": 4, "virt_pairs": "all"}, True)
    with pytest.raises(StageError, match="virt_pairs 'all' -> 'augmented'"):
        check_stage_file(str(directory), {"batch_size": 4, "virt_pairs": "augmented"},
                         True)
    with pytest.raises(StageError, match="not_an_option None -> 1"):
        check_stage_file(str(directory), {"batch_size": 4, "not_an_option": 1}, True)
