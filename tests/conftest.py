"""Shared fixtures: tiny encoder configs, the vocabulary, the shared data folder."""
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from virt_tf.cli.paths import default_data_root  # noqa: E402  (imports nothing heavy)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = default_data_root(REPO)


@pytest.fixture(scope="session")
def repo_dir():
    return REPO


@pytest.fixture(scope="session")
def shared_data():
    if not os.path.isdir(SHARED_DATA):
        pytest.fail(f"shared data folder not found: {SHARED_DATA} (set VIRT_TF_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def vocab_file():
    from virt_tf.modeling.checkpoints import default_checkpoint_dir
    return os.path.join(default_checkpoint_dir(), "vocab.txt")


@pytest.fixture()
def tiny_config():
    from virt_tf.modeling.encoder import EncoderConfig
    return EncoderConfig(vocab_size=120, hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=24,
                         max_position_embeddings=64, type_vocab_size=2)


def write_small_vocab(folder):
    """A 120-entry WordPiece vocabulary covering a few words, for tiny models; its path."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += ["the", "a", "cat", "dog", "sat", "on", "mat", "is", "not", "big", "small",
              "red", "blue", "runs", "fast", "slow", "house", "car", "tree", "green",
              "un", "##able", "##s", "##ing", ".", ",", "?", "!"]
    words += [f"w{i}" for i in range(120 - len(words))]
    path = os.path.join(str(folder), "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(words) + "\n")
    return path


@pytest.fixture()
def small_vocab(tmp_path):
    return write_small_vocab(tmp_path)


def save_tiny_classifier(directory, model_name, vocab_file, max_seq_length, seed=1,
                         labels=("entailment", "not_entailment")):
    """A tiny random model saved like training does (used by the export and cache tests).

    Seeded through Keras (its initializers ignore `tf.random.set_seed`); the
    init is wider than BERT's so that probabilities differ across pairs, yet
    not so wide that the softmax saturates.
    """
    import keras
    from virt_tf.modeling.encoder import EncoderConfig
    from virt_tf.models import registry

    keras.utils.set_random_seed(seed)
    config = EncoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=24, max_position_embeddings=64,
                           initializer_range=0.2)
    classifier = registry.build_now(registry.build_classifier(model_name, config, 2))
    meta = {"task": "rte", "labels": list(labels), "metrics": ["accuracy"], "lower_case": True,
            "max_seq_length": max_seq_length}
    registry.save_classifier(str(directory), model_name, classifier, meta, vocab_file)
    return classifier


def read_h5_weights(path):
    """Every array of a Keras ``.weights.h5`` file, by its path inside the file."""
    import h5py  # pylint: disable=import-outside-toplevel
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def latest_checkpoint_step(stage_dir):
    """Step of the checkpoint that a stage's `checkpoints/checkpoint` file names as latest (-1: none)."""
    try:
        with open(os.path.join(stage_dir, "checkpoints", "checkpoint"), encoding="utf-8") as f:
            m = re.search(r'model_checkpoint_path: "ckpt-(\d+)"', f.read())
    except OSError:
        return -1
    return int(m.group(1)) if m else -1
