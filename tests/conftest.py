"""Shared fixtures: tiny encoder configs, the vocabulary, the shared data folder."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("VIRT_TF_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


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


@pytest.fixture()
def small_vocab(tmp_path):
    """A 120-entry WordPiece vocabulary covering a few words, for tiny models."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += ["the", "a", "cat", "dog", "sat", "on", "mat", "is", "not", "big", "small",
              "red", "blue", "runs", "fast", "slow", "house", "car", "tree", "green",
              "un", "##able", "##s", "##ing", ".", ",", "?", "!"]
    words += [f"w{i}" for i in range(120 - len(words))]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return str(path)
