"""The online part on cached states: pairs of cached texts -> class probabilities.

Reads state caches (`virt_tf.inference.state_cache`) and runs only the model's ``score``
function (the interaction head; no encoder layer runs) on the cached states of each pair;
`score_file` is the job of ``python -m virt_tf.score``.

* caches: ids are looked up in all of them and must not repeat across them; each must
  have been written by the model that scores (its fingerprint is checked);
* pairs (`read_pairs`): ``id_a<TAB>id_b`` rows (an optional header ``id_a<TAB>id_b``), or
  ``.jsonl`` objects with ``"id_a"`` and ``"id_b"``;
* scores (`write_scores`): tab-separated ``id_a, id_b, label, p_<label>...`` in the order
  of the pairs.

float16 caches are scored in float32. A pair whose texts together exceed the model's pair
budget is scored on each text truncated alone, while the end-to-end pipeline truncates
the pair jointly (longest first): such pairs are counted in the log. Otherwise the
probabilities equal the end-to-end ones (up to float16 rounding for a float16 cache).
"""
import numpy as np
from absl import logging

from virt_tf import rundir
from virt_tf.errors import ConfigError, DataError
from virt_tf.inference.matcher import load
from virt_tf.inference.serving import ModelServer
from virt_tf.inference.state_cache import iter_rows, model_fingerprint, progress_bar, read_cache
from virt_tf.models.registry import get_spec, read_model_config


def read_pairs(path):
    """Rows of ``path`` -> list of ``(line_number, id_a, id_b)``."""
    pairs = []
    for where, row in iter_rows(path, ("id_a", "id_b")):
        if not isinstance(row, list):
            if not isinstance(row, dict) or "id_a" not in row or "id_b" not in row:
                raise DataError(f"{where}: expected an object with \"id_a\" and \"id_b\"")
            row = [str(row["id_a"]), str(row["id_b"])]
        pairs.append((int(where.rsplit(":", 1)[1]), row[0], row[1]))
    if not pairs:
        raise DataError(f"{path}: no pairs")
    return pairs


class CacheIndex:
    """Id -> cached states over one or more `StateCache`s."""

    def __init__(self, caches, names):
        self.caches = caches
        self.where = {}
        for c, (cache, name) in enumerate(zip(caches, names)):
            for row, text_id in enumerate(cache.ids):
                if text_id in self.where:
                    other = names[self.where[text_id][0]]
                    raise DataError(f"id {text_id!r} is in two caches ({other} and {name})")
                self.where[text_id] = (c, row)

    def locate(self, text_id, where):
        """``(cache, row)`` of ``text_id``; a `DataError` naming ``where`` if no cache has it."""
        if text_id not in self.where:
            raise DataError(f"{where}: id {text_id!r} is not in the cache")
        return self.where[text_id]

    def length(self, loc):
        """Positions (word pieces and specials) of the text at ``loc``."""
        return self.caches[loc[0]].length(loc[1])

    def states(self, loc):
        """`[length, H]` cached states of the text at ``loc``."""
        return self.caches[loc[0]].text_states(loc[1])


def pad_batch(index, locations, hidden):
    """Cached states of a batch -> float32 `[batch, max_len, hidden]` and int32 mask
    `[batch, max_len]` (zero padded)."""
    lengths = [index.length(loc) for loc in locations]
    states = np.zeros((len(locations), max(lengths), hidden), np.float32)
    mask = np.zeros((len(locations), max(lengths)), np.int32)
    for row, (loc, length) in enumerate(zip(locations, lengths)):
        states[row, :length] = index.states(loc)
        mask[row, :length] = 1
    return states, mask


def score_pairs(score_fn, index, locations, hidden, batch_size=256, progress=None):
    """Probabilities `[n, num_labels]` of ``locations`` (n pairs of cache locations).

    ``score_fn`` is ``ModelServer.score`` (states `[batch, m, H]`, masks -> a dict
    with ``probabilities``). Pairs are sorted by length before batching.
    """
    totals = np.array([index.length(a) + index.length(b) for a, b in locations])
    order = np.argsort(totals, kind="stable")
    chunks = []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        states_a, mask_a = pad_batch(index, [locations[i][0] for i in rows], hidden)
        states_b, mask_b = pad_batch(index, [locations[i][1] for i in rows], hidden)
        out = score_fn(states_a=states_a, mask_a=mask_a, states_b=states_b, mask_b=mask_b)
        chunks.append(out["probabilities"].numpy())
        if progress is not None:
            progress.add(len(rows))
    probs = np.concatenate(chunks, axis=0)
    result = np.empty_like(probs)
    result[order] = probs
    return result


def _read_caches(model_dir, cache_paths):
    """The caches of ``cache_paths``, each checked to be written by the model of
    ``model_dir`` (its fingerprint)."""
    caches = [read_cache(p) for p in cache_paths]
    fingerprint = model_fingerprint(model_dir)
    for path, cache in zip(cache_paths, caches):
        if cache.meta.get("model_fingerprint") != fingerprint:
            raise DataError(f"{path}: written by another model than {model_dir} (its "
                            "fingerprint differs): encode the texts again with this model")
    return caches


def _warn_over_budget(index, locations, budget):
    """Log how many pairs exceed the pair budget (scored on each text truncated alone);
    returns that count."""
    # each cached text is [CLS] x [SEP]; the pair packing would be [CLS] x [SEP] y [SEP]
    too_long = sum(index.length(a) + index.length(b) - 1 > budget for a, b in locations)
    if too_long:
        logging.warning("%d of %d pairs exceed the model's pair budget (%d pieces): the "
                        "end-to-end pipeline would truncate them jointly", too_long,
                        len(locations), budget)
    return too_long


def score_file(model_dir, cache_paths, pairs_path, batch_size=256, show_progress=True):
    """Score the pairs of ``pairs_path`` on cached states. Returns ``(pairs, probs, info)``.

    ``pairs``: list of ``(id_a, id_b)``; ``probs``: `[n, num_labels]`; ``info``:
    labels and counts for the report.
    """
    if batch_size <= 0:
        raise ConfigError(f"--batch_size must be positive, got {batch_size}")
    config = read_model_config(model_dir)
    if not get_spec(config["model"]).cls.offline:
        raise ConfigError(f"{model_dir} holds a {config['model']} model, which has no online part "
                          "on cached states; score needs a model that encodes its texts apart")
    pairs = read_pairs(pairs_path)
    caches = _read_caches(model_dir, cache_paths)
    index = CacheIndex(caches, list(cache_paths))
    locations = [(index.locate(a, f"{pairs_path}:{n}"), index.locate(b, f"{pairs_path}:{n}"))
                 for n, a, b in pairs]

    classifier = load(model_dir).classifier
    if getattr(getattr(classifier, "head", None), "pool_padding", False):
        logging.warning("this model pools over the padded length (pool_padding): its scores "
                        "depend on the padding of each batch")
    too_long = _warn_over_budget(index, locations, config.get("max_seq_length", 128))
    server = ModelServer(classifier, config["model"])
    bar = progress_bar(len(pairs), "pair") if show_progress else None
    probs = score_pairs(server.score, index, locations, server.hidden_size, batch_size, bar)
    labels = config.get("labels") or [str(i) for i in range(probs.shape[1])]
    info = {"pairs": len(pairs), "labels": list(labels), "over_budget": int(too_long),
            "dtypes": sorted({c.meta["dtype"] for c in caches})}
    return [(a, b) for _, a, b in pairs], probs, info


def write_scores(path, pairs, probs, labels):
    """TSV: ``id_a, id_b, label, p_<label>...`` (a header, then one row a pair), written
    atomically (no part is left on a full disk)."""
    with rundir.atomic_target(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\t".join(["id_a", "id_b", "label"] + [f"p_{l}" for l in labels]) + "\n")
            for (a, b), p in zip(pairs, probs):
                f.write("\t".join([a, b, str(labels[int(np.argmax(p))])]
                                  + [f"{x:.8g}" for x in p]) + "\n")
