"""The offline state cache: the last-layer states of each text, computed once, on disk.

A representation model (siamese, virt, ...) encodes each text alone, so the states of
every text can be computed ahead of time and the online part (`virt_tf.inference.scoring`)
only runs the light interaction head on them. `encode_texts` runs a model's ``encode``
function (`virt_tf.inference.serving.ModelServer.encode`, the one `virt_tf.export`
exports, or its OpenVINO conversion) over a list of texts; `encode_cache` makes a
`StateCache` of them; `write_cache` and `read_cache` store and load it.

Texts (`read_texts`), one a row:

* ``.jsonl``: objects with ``"text"`` and optionally ``"id"`` (default: the line number,
  from 1);
* anything else: tab-separated ``id<TAB>text`` rows; a first row ``id<TAB>text`` is taken
  as a header.

Ids must be unique. A missing file, a bad row or a duplicate id is a `DataError` naming
file and line.

Cache: one numpy ``.npz`` file, read with ``allow_pickle=False``:

* ``ids``: unicode `[n]`;
* ``offsets``: int64 `[n + 1]`; text ``i`` owns rows ``offsets[i]:offsets[i+1]``;
* ``states``: float32 or float16 `[total_pieces, hidden]`, the last-layer states of the
  valid positions of each `[CLS] text [SEP]` packing (padding is not stored: the mask of
  a text is all ones over its length);
* ``meta``: a JSON string: format, model kind, hidden size, dtype, ``max_seq_length``,
  the backend and the model's fingerprint (`model_fingerprint`), which scoring checks.

Texts are tokenized first, sorted by length and batched in that order (less padding,
faster).
"""
import dataclasses
import hashlib
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from virt_tf import rundir
from virt_tf.data.tasks import check_unique_ids
from virt_tf.errors import CheckpointError, ConfigError, DataError
from virt_tf.inference import BACKENDS
from virt_tf.inference import openvino as openvino_backend
from virt_tf.inference.serving import ModelServer
from virt_tf.models.registry import read_model_config

CACHE_FORMAT = "virt_tf.state_cache"
CACHE_VERSION = 1
CACHE_KEYS = ("ids", "offsets", "states", "meta")
# the models that encode their texts apart (named in the error of one that does not)
OFFLINE_MODELS = "siamese, virt, deformer, dipair, poly, dse"


# ---------------------------------------------------------------------------- reading
def _lines(path):
    """The lines of a UTF-8 file (a BOM, a last newline and CRs dropped)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: bytes that are not UTF-8 ({e.reason})") from e
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
            raise DataError(f"{where}: empty row")
        if path.endswith(".jsonl"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg})") from e
            yield where, row
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(f"{where}: expected 2 tab-separated fields "
                            f"({', '.join(header)}), got {len(fields)}")
        if number == 1 and fields == list(header):
            continue
        yield where, fields


def _text_row(where, row):
    """``(id, text)`` of one row of `iter_rows` (a TSV pair or a JSON object)."""
    if isinstance(row, list):
        return row[0], row[1]
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise DataError(f"{where}: expected an object with a string \"text\"")
    text_id = row.get("id", int(where.rsplit(":", 1)[1]))
    if not isinstance(text_id, (str, int)) or isinstance(text_id, bool):
        raise DataError(f"{where}: \"id\" must be a string or an integer")
    return str(text_id), row["text"]


def read_texts(path):
    """Rows of ``path`` -> ``(ids, texts)``, two lists of str in file order."""
    ids, texts = [], []
    for where, row in iter_rows(path, ("id", "text")):
        text_id, text = _text_row(where, row)
        if not text_id:
            raise DataError(f"{where}: empty id")
        ids.append(text_id)
        texts.append(text)
    if not ids:
        raise DataError(f"{path}: no texts")
    check_unique_ids(path, ids, "texts")
    return ids, texts


# ---------------------------------------------------------------------------- encoding
def model_fingerprint(model_dir):
    """sha256 of a model directory's weights and vocabulary (hex str): which model wrote a
    cache or an exported IR."""
    config = read_model_config(model_dir)
    digest = hashlib.sha256()
    for name in (rundir.WEIGHTS, config.get("vocab_file", rundir.VOCAB)):
        with open(rundir.path(model_dir, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def progress_bar(target, unit):
    """A Keras progress bar: live on a terminal, one summary line otherwise."""
    return keras.utils.Progbar(target, verbose=1 if sys.stdout.isatty() else 2, unit_name=unit)


def human_size(n):
    """``n`` bytes as a short string: ``512 B``, ``1.5 KiB``, ``3.2 MiB``..."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} GiB"


def piece_lengths(preprocessor, texts, chunk=1024):
    """Word pieces of each text (before truncation): int64 `[n]`."""
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
        """Positions (word pieces and specials) of text ``i``."""
        return int(self.offsets[i + 1] - self.offsets[i])

    def text_states(self, i):
        """`[length_i, H]` states of text ``i``."""
        return self.states[self.offsets[i]:self.offsets[i + 1]]


def write_cache(path, cache):
    """Write ``cache`` to ``path`` (atomically: no part is left on a full disk). Returns the
    size in bytes."""
    rundir.write_npz(path, ids=np.asarray(cache.ids, dtype=str), offsets=cache.offsets,
                     states=cache.states, meta=np.asarray(json.dumps(cache.meta)))
    return os.path.getsize(path)


def read_cache(path):
    """Load and check a cache written by `write_cache` (no pickle is ever loaded)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: cache file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in CACHE_KEYS if k in data.files}
    except (OSError, ValueError) as e:  # not a zip, or an object array (would need pickle)
        raise DataError(f"{path}: not a readable .npz state cache ({e})") from e
    missing = [k for k in CACHE_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: not a state cache (missing {missing})")
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: bad metadata ({e.msg})") from e
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise DataError(f"{path}: not a {CACHE_FORMAT} v{CACHE_VERSION} file")
    ids, offsets, states = arrays["ids"], arrays["offsets"], arrays["states"]
    if (states.ndim != 2 or offsets.shape != (len(ids) + 1,) or offsets[0] != 0
            or offsets[-1] != len(states) or np.any(np.diff(offsets) < 1)
            or states.shape[1] != meta.get("hidden_size")):
        raise DataError(f"{path}: inconsistent arrays (ids {ids.shape}, offsets "
                        f"{offsets.shape}, states {states.shape})")
    return StateCache([str(i) for i in ids], offsets, states, meta)


def _openvino_encoder(matcher, openvino_model, inference_precision):
    """An `OpenVinoEncoder` of ``matcher``: from the IR folder (or ``encode.xml``) of
    ``virt_tf.export --format=openvino``, checked to come from the matcher's directory
    (the recorded model fingerprint: weights and vocabulary), or converted now."""
    if not openvino_model:
        return openvino_backend.encoder_for_classifier(
            matcher.classifier, matcher.model_name, inference_precision)
    if not matcher.directory:
        raise ConfigError("an exported OpenVINO model is checked against a model "
                          "directory: load the matcher from one")
    openvino_backend.require_openvino()
    folder = os.path.dirname(openvino_model) if openvino_model.endswith(".xml") \
        else openvino_model
    info = openvino_backend.read_info(folder or ".")
    if info.get("model_fingerprint") != model_fingerprint(matcher.directory):
        raise CheckpointError(f"{openvino_model} was exported from another model than "
                              f"{matcher.directory} (weights or vocabulary differ)")
    return openvino_backend.OpenVinoEncoder(os.path.join(folder, openvino_backend.IR_NAME),
                                            inference_precision)


def encode_cache(matcher, ids, texts, float16=False, batch_size=64, backend="tensorflow",
                 openvino_model=None, openvino_precision="f32", show_progress=False):
    """A `StateCache` of ``texts`` (with ``ids``) encoded by ``matcher`` (a `TextMatcher`
    of a representation model), through TensorFlow or OpenVINO: the same format either
    way; ``meta`` records the backend."""
    if batch_size <= 0:
        raise ConfigError(f"--batch_size must be positive, got {batch_size}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not matcher.offline:
        raise ConfigError(f"a {matcher.model_name} model has no offline part: it reads both "
                          "texts together; encoding needs a model that encodes its texts "
                          f"apart ({OFFLINE_MODELS})")
    if backend == "openvino":
        encode_fn = _openvino_encoder(matcher, openvino_model, openvino_precision)
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
