"""`python -m virt_tf.encode`: the offline part, a file of texts -> a state cache on disk.

A representation model (siamese, virt) encodes each text alone, so the
last-layer states of every text can be computed once, ahead of time, and the
online part (`python -m virt_tf.score`) only runs the light interaction head
on them. This command runs the model's ``encode`` function (the same one that
`virt_tf.export` exports) over a file of texts and writes the states.

Input (``--input``), one text per row:

* ``.jsonl``: objects with ``"text"`` and optionally ``"id"`` (default: the line
  number, from 1);
* anything else: tab-separated ``id<TAB>text`` rows; a first row
  ``id<TAB>text`` is taken as a header.

Ids must be unique. A missing file, a bad row or a duplicate id is an error
(one line on stderr, exit code 2).

Cache (``--output``): one numpy ``.npz`` file, read with ``allow_pickle=False``:

* ``ids``: unicode `[n]`;
* ``offsets``: int64 `[n + 1]`; text ``i`` owns rows ``offsets[i]:offsets[i+1]``;
* ``states``: float32 or float16 (``--float16``) `[total_pieces, hidden]`, the
  last-layer states of the valid positions of each `[CLS] text [SEP]` packing
  (padding is not stored: the mask of a text is all ones over its length);
* ``meta``: a JSON string: format, model kind, hidden size, dtype,
  ``max_seq_length`` and the model's fingerprint (sha256 of weights and vocab),
  which `virt_tf.score` checks.

Texts are tokenized first, sorted by length and batched in that order (less
padding, faster); a progress bar shows on a terminal.

``--backend=openvino`` runs the same ``encode`` signature converted by OpenVINO
(`virt_tf.inference.openvino`; the optional package ``openvino``), from an IR of
``virt_tf.export --format=openvino`` (``--openvino_model``) or converted on the spot;
the cache is the same (``meta.backend`` says which ran).
"""
import dataclasses
import hashlib
import json
import os
import sys

import numpy as np
from absl import flags, logging

from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, require_flags, run
from virt_tf.cli.paths import PathFlag

FLAGS = flags.FLAGS
CACHE_FORMAT = "virt_tf.state_cache"
CACHE_VERSION = 1
CACHE_KEYS = ("ids", "offsets", "states", "meta")
BACKENDS = ("tensorflow", "openvino")


def define_flags():
    flags.DEFINE_string("model_dir", None, "A trained siamese or virt model directory.")
    flags.DEFINE_string("input", None, "Texts: .jsonl ({\"id\", \"text\"}) or id<TAB>text rows.")
    flags.DEFINE_string("output", None, "The cache file to write (.npz).")
    flags.DEFINE_bool("float16", False, "Store the states as float16 (half the size).")
    flags.DEFINE_integer("batch_size", 64, "Texts per encoder call.")
    flags.DEFINE_integer("max_seq_length", None, "Length budget of one packed text, [CLS] and "
                         "[SEP] included (default: the model's max_seq_length).")
    flags.DEFINE_enum("backend", "tensorflow", BACKENDS, "What runs the encoder: TensorFlow, "
                      "or OpenVINO's CPU runtime (optional package openvino; docs/precision.md).")
    flags.DEFINE_string("openvino_model", None, "--backend=openvino: an IR folder written by "
                        "virt_tf.export --format=openvino (default: convert the model now).")
    flags.DEFINE_enum("openvino_precision", "f32", ["f32", "bf16", "f16"], "--backend=openvino: "
                      "inference precision (f32: the states equal TensorFlow's).")


def _data_error(message):
    from virt_tf.data.tasks import DataError  # pylint: disable=import-outside-toplevel
    return DataError(message)


# ---------------------------------------------------------------------------- reading
def _lines(path):
    if not os.path.exists(path):
        raise _data_error(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise _data_error(f"{path}: bytes that are not UTF-8 ({e.reason})") from e
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def iter_rows(path, header):
    """Yield ``(where, row)`` for each row of a JSONL or two-column TSV file.

    JSONL rows come as parsed objects; TSV rows as their two fields, a first line
    equal to ``header`` being skipped. Empty rows, bad JSON and wrong column counts
    raise `DataError` naming file and line.
    """
    for number, line in enumerate(_lines(path), 1):
        where = f"{path}:{number}"
        if not line.strip():
            raise _data_error(f"{where}: empty row")
        if path.endswith(".jsonl"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise _data_error(f"{where}: invalid JSON ({e.msg})") from e
            yield where, row
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise _data_error(f"{where}: expected 2 tab-separated fields "
                              f"({', '.join(header)}), got {len(fields)}")
        if number == 1 and fields == list(header):
            continue
        yield where, fields


def read_texts(path):
    """Rows of ``path`` -> ``(ids, texts)``, two lists of str in file order."""
    ids, texts = [], []
    for where, row in iter_rows(path, ("id", "text")):
        if isinstance(row, list):
            text_id, text = row
        else:
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise _data_error(f"{where}: expected an object with a string \"text\"")
            text_id = row.get("id", int(where.rsplit(":", 1)[1]))
            if not isinstance(text_id, (str, int)) or isinstance(text_id, bool):
                raise _data_error(f"{where}: \"id\" must be a string or an integer")
            text_id, text = str(text_id), row["text"]
        if not text_id:
            raise _data_error(f"{where}: empty id")
        ids.append(text_id)
        texts.append(text)
    if not ids:
        raise _data_error(f"{path}: no texts")
    seen = {}
    for number, text_id in enumerate(ids):
        if text_id in seen:
            raise _data_error(f"{path}: id {text_id!r} appears twice (texts {seen[text_id] + 1} "
                              f"and {number + 1})")
        seen[text_id] = number
    return ids, texts


# ---------------------------------------------------------------------------- encoding
def model_fingerprint(model_dir):
    """sha256 of a model directory's weights and vocabulary (hex str)."""
    from virt_tf.models.registry import WEIGHTS, read_model_config  # pylint: disable=import-outside-toplevel
    config = read_model_config(model_dir)
    digest = hashlib.sha256()
    for name in (WEIGHTS, config.get("vocab_file", "vocab.txt")):
        with open(os.path.join(model_dir, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def progress_bar(target, unit):
    """A Keras progress bar: live on a terminal, one summary line otherwise."""
    import keras  # pylint: disable=import-outside-toplevel
    return keras.utils.Progbar(target, verbose=1 if sys.stdout.isatty() else 2, unit_name=unit)


def piece_lengths(preprocessor, texts, chunk=1024):
    """Word pieces of each text (before truncation): int64 `[n]`."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    out = [preprocessor.tokenize(tf.constant(texts[i:i + chunk])).row_lengths().numpy()
           for i in range(0, len(texts), chunk)]
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


def encode_texts(encode_fn, preprocessor, texts, batch_size=64, dtype=np.float32,
                 progress=None):
    """Encode each text alone: returns ``(states, offsets)``.

    Args:
      encode_fn: ``ModelServer.encode`` or an `OpenVinoEncoder` (ids `[batch, seq]` ->
        ``states`` `[batch, seq, H]`, ``mask``).
      preprocessor: a `BertPairPreprocessor`; its ``single`` packs and truncates.
      texts: list of n str.
    Returns:
      ``states`` `[total_pieces, H]` of ``dtype`` (valid positions of each text,
      in input order) and ``offsets`` int64 `[n + 1]`.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    budget = preprocessor.max_seq_length - 2
    lengths = np.minimum(piece_lengths(preprocessor, texts), budget) + 2
    order = np.argsort(lengths, kind="stable")
    rows = [None] * len(texts)
    for start in range(0, len(texts), batch_size):
        index = order[start:start + batch_size]
        packing = preprocessor.single(tf.constant([texts[i] for i in index]))
        out = encode_fn(**packing)
        states = np.asarray(out["states"])  # tf.Tensor (TensorFlow) or numpy (OpenVINO)
        valid = np.asarray(out["mask"]).sum(axis=1)
        for row, i in enumerate(index):
            if valid[row] != lengths[i]:  # the tokenizer disagreed with itself: never expected
                raise RuntimeError(f"text {i}: {valid[row]} positions, expected {lengths[i]}")
            rows[i] = states[row, :valid[row]].astype(dtype)
        if progress is not None:
            progress.add(len(index))
    offsets = np.zeros(len(texts) + 1, np.int64)
    offsets[1:] = np.cumsum(lengths)
    hidden = rows[0].shape[-1] if rows else 0
    states = np.concatenate(rows, axis=0) if rows else np.zeros((0, hidden), dtype)
    return states, offsets


# ---------------------------------------------------------------------------- the cache
@dataclasses.dataclass
class StateCache:
    """An encoded file of texts (see the module docstring)."""
    ids: np.ndarray
    offsets: np.ndarray
    states: np.ndarray
    meta: dict

    def __len__(self):
        return len(self.ids)

    def length(self, i):
        return int(self.offsets[i + 1] - self.offsets[i])

    def text_states(self, i):
        """`[length_i, H]` states of text ``i``."""
        return self.states[self.offsets[i]:self.offsets[i + 1]]


def write_cache(path, cache):
    """Write ``cache`` to ``path`` (through a temporary file). Returns the size in bytes."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.asarray(cache.ids, dtype=str), offsets=cache.offsets,
                     states=cache.states, meta=np.asarray(json.dumps(cache.meta)))
        os.replace(tmp, path)
    except OSError:  # a full disk: leave no part behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return os.path.getsize(path)


def read_cache(path):
    """Load and check a cache written by `write_cache` (no pickle is ever loaded)."""
    if not os.path.exists(path):
        raise _data_error(f"{path}: cache file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in CACHE_KEYS if k in data.files}
    except (OSError, ValueError) as e:  # not a zip, or an object array (would need pickle)
        raise _data_error(f"{path}: not a readable .npz state cache ({e})") from e
    missing = [k for k in CACHE_KEYS if k not in arrays]
    if missing:
        raise _data_error(f"{path}: not a state cache (missing {missing})")
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as e:
        raise _data_error(f"{path}: bad metadata ({e.msg})") from e
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise _data_error(f"{path}: not a {CACHE_FORMAT} v{CACHE_VERSION} file")
    ids, offsets, states = arrays["ids"], arrays["offsets"], arrays["states"]
    if (states.ndim != 2 or offsets.shape != (len(ids) + 1,) or offsets[0] != 0
            or offsets[-1] != len(states) or np.any(np.diff(offsets) < 1)
            or states.shape[1] != meta.get("hidden_size")):
        raise _data_error(f"{path}: inconsistent arrays (ids {ids.shape}, offsets "
                          f"{offsets.shape}, states {states.shape})")
    return StateCache([str(i) for i in ids], offsets, states, meta)


def encode_cache(matcher, ids, texts, float16=False, batch_size=64, backend="tensorflow",
                 openvino_model=None, openvino_precision="f32", show_progress=False):
    """A `StateCache` of ``texts`` (with ``ids``) encoded by ``matcher`` (a `TextMatcher`
    of a representation model), through TensorFlow or OpenVINO: the same format either
    way; ``meta`` records the backend."""
    from virt_tf.errors import ConfigError  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.serving import ModelServer  # pylint: disable=import-outside-toplevel
    if batch_size <= 0:
        raise ConfigError(f"--batch_size must be positive, got {batch_size}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not matcher.offline:
        raise ConfigError(f"a {matcher.model_name} model has no offline part: it reads both "
                          "texts together; encoding needs a model that encodes its texts "
                          "apart (siamese, virt, deformer, dipair, poly, dse)")
    if backend == "openvino":
        from virt_tf.inference import openvino as openvino_backend  # pylint: disable=import-outside-toplevel
        if openvino_model:
            if not matcher.directory:
                raise ConfigError("an exported OpenVINO model is checked against a model "
                                  "directory: load the matcher from one")
            encode_fn = openvino_backend.encoder_for(matcher.directory, openvino_model,
                                                     openvino_precision)
        else:
            encode_fn = openvino_backend.encoder_for_classifier(
                matcher.classifier, matcher.model_name, openvino_precision)
    else:
        encode_fn = ModelServer(matcher.classifier, matcher.model_name).encode
    prep = matcher.preprocessor
    dtype = np.float16 if float16 else np.float32
    bar = progress_bar(len(texts), "text") if show_progress else None
    states, offsets = encode_texts(encode_fn, prep, list(texts), batch_size, dtype, bar)
    meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "model": matcher.model_name,
            "hidden_size": int(states.shape[1]), "dtype": np.dtype(dtype).name,
            "max_seq_length": int(prep.max_seq_length), "lower_case": bool(prep.lower_case),
            "model_fingerprint": (model_fingerprint(matcher.directory)
                                  if matcher.directory else None),
            "backend": backend}
    if backend == "openvino":
        meta["openvino_precision"] = openvino_precision
    return StateCache(list(ids), offsets, states, meta)


def encode_file(model_dir, input_path, output_path, float16=False, batch_size=64,
                max_seq_length=None, show_progress=True, backend="tensorflow",
                openvino_model=None, openvino_precision="f32"):
    """Encode the texts of ``input_path`` with the model of ``model_dir`` into a cache.

    Returns a summary dict (texts, pieces, dtype, bytes, path).
    """
    from virt_tf.errors import ConfigError  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.matcher import load  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import get_spec, read_model_config  # pylint: disable=import-outside-toplevel

    if batch_size <= 0:
        raise ConfigError(f"--batch_size must be positive, got {batch_size}")
    config = read_model_config(model_dir)
    if not get_spec(config["model"]).cls.offline:
        raise ConfigError(f"{model_dir} holds a {config['model']} model, which has no offline "
                         "part: it reads both texts together; encode needs a model that "
                         "encodes its texts apart (siamese, virt, deformer, dipair, poly, dse)")
    if backend == "openvino":  # before reading anything: a missing package is one line
        from virt_tf.inference.openvino import require_openvino  # pylint: disable=import-outside-toplevel
        require_openvino()
    ids, texts = read_texts(input_path)
    length = max_seq_length or config.get("max_seq_length", 128)
    positions = config["classifier"]["encoder_config"]["max_position_embeddings"]
    if not 5 <= length <= positions:
        raise ConfigError(f"--max_seq_length must be in [5, {positions}], got {length}")
    matcher = load(model_dir, max_seq_length=length)
    cache = encode_cache(matcher, ids, texts, float16, batch_size, backend, openvino_model,
                         openvino_precision, show_progress)
    size = write_cache(output_path, cache)
    return {"texts": len(ids), "pieces": int(cache.offsets[-1]), "dtype": cache.meta["dtype"],
            "bytes": size, "path": output_path, "backend": backend}


def human_size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GiB"




PATH_FLAGS = (PathFlag("model_dir", paths.MODEL_DIR), PathFlag("input", paths.INPUT_FILE),
              PathFlag("output", paths.OUTPUT_FILE),
              PathFlag("openvino_model", paths.INPUT_DIR))


def _encode():
    require_flags(FLAGS, ("model_dir", "input", "output"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        result = encode_file(FLAGS.model_dir, FLAGS.input, FLAGS.output, FLAGS.float16,
                             FLAGS.batch_size, FLAGS.max_seq_length, backend=FLAGS.backend,
                             openvino_model=FLAGS.openvino_model,
                             openvino_precision=FLAGS.openvino_precision)
    logging.info("encoded %s", result)
    print(f"wrote {result['texts']} texts ({result['pieces']} word-piece states, "
          f"{result['dtype']}) to {result['path']}: {human_size(result['bytes'])} "
          f"({result['bytes'] / result['texts']:.0f} bytes a text)")
    return 0


main = absl_main(_encode)

if __name__ == "__main__":
    define_flags()
    run(_encode)
    sys.exit(0)
