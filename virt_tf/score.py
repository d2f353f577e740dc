"""`python -m virt_tf.score`: the online part, pairs of cached texts -> class probabilities.

Reads state caches written by `python -m virt_tf.encode` and runs only the
model's ``score`` function (the interaction head; no encoder layer runs) on
the cached states of each pair.

* ``--cache``: one or more caches (comma-separated); ids are looked up in all
  of them and must not repeat across them. Each cache must have been written
  by the model of ``--model_dir`` (its fingerprint is checked).
* ``--pairs``: ``id_a<TAB>id_b`` rows (an optional header ``id_a<TAB>id_b``), or
  ``.jsonl`` objects with ``"id_a"`` and ``"id_b"``.
* ``--output``: tab-separated ``id_a, id_b, label, p_<label>...`` in the order
  of ``--pairs``.

float16 caches are scored in float32. A pair whose texts together exceed the
model's pair budget is scored on each text truncated alone, while the
end-to-end pipeline truncates the pair jointly (longest first): such pairs are
counted in the log. Otherwise the probabilities equal the end-to-end ones (up
to float16 rounding for a float16 cache).
"""
import json
import os
import sys

import numpy as np
from absl import flags, logging

from virt_tf.cli import paths
from virt_tf.cli.common import absl_main, require_flags, run
from virt_tf.cli.paths import PathFlag

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", None, "The siamese or virt model that wrote the caches.")
    flags.DEFINE_list("cache", None, "State cache file(s) from virt_tf.encode.")
    flags.DEFINE_string("pairs", None, "Pairs to score: id_a<TAB>id_b rows or .jsonl.")
    flags.DEFINE_string("output", None, "Where to write the probabilities (TSV).")
    flags.DEFINE_integer("batch_size", 256, "Pairs per score call.")


def _data_error(message):
    from virt_tf.data.tasks import DataError  # pylint: disable=import-outside-toplevel
    return DataError(message)


def read_pairs(path):
    """Rows of ``path`` -> list of ``(line_number, id_a, id_b)``."""
    from virt_tf.encode import iter_rows  # pylint: disable=import-outside-toplevel
    pairs = []
    for where, row in iter_rows(path, ("id_a", "id_b")):
        if not isinstance(row, list):
            if not isinstance(row, dict) or "id_a" not in row or "id_b" not in row:
                raise _data_error(f"{where}: expected an object with \"id_a\" and \"id_b\"")
            row = [str(row["id_a"]), str(row["id_b"])]
        pairs.append((int(where.rsplit(":", 1)[1]), row[0], row[1]))
    if not pairs:
        raise _data_error(f"{path}: no pairs")
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
                    raise _data_error(f"id {text_id!r} is in two caches ({other} and {name})")
                self.where[text_id] = (c, row)

    def locate(self, text_id, where):
        if text_id not in self.where:
            raise _data_error(f"{where}: id {text_id!r} is not in the cache")
        return self.where[text_id]

    def length(self, loc):
        return self.caches[loc[0]].length(loc[1])

    def states(self, loc):
        return self.caches[loc[0]].text_states(loc[1])


def pad_batch(index, locations, hidden):
    """Cached states of a batch -> float32 `[batch, max_len, hidden]`, int32 mask `[batch, max_len]`."""
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


def score_file(model_dir, cache_paths, pairs_path, batch_size=256, show_progress=True):
    """Score the pairs of ``pairs_path`` on cached states. Returns ``(pairs, probs, info)``.

    ``pairs``: list of ``(id_a, id_b)``; ``probs``: `[n, num_labels]`; ``info``:
    labels and counts for the report.
    """
    from virt_tf.encode import model_fingerprint, progress_bar, read_cache  # pylint: disable=import-outside-toplevel
    from virt_tf.errors import ConfigError  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.matcher import load  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import get_spec, read_model_config  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.serving import ModelServer  # pylint: disable=import-outside-toplevel

    if batch_size <= 0:
        raise ConfigError(f"--batch_size must be positive, got {batch_size}")
    config = read_model_config(model_dir)
    if not get_spec(config["model"]).cls.offline:
        raise ConfigError(f"{model_dir} holds a {config['model']} model, which has no online part "
                         "on cached states; score needs a model that encodes its texts apart")
    pairs = read_pairs(pairs_path)
    caches = [read_cache(p) for p in cache_paths]
    fingerprint = model_fingerprint(model_dir)
    for path, cache in zip(cache_paths, caches):
        if cache.meta.get("model_fingerprint") != fingerprint:
            raise _data_error(f"{path}: written by another model than {model_dir} (its "
                              "fingerprint differs): encode the texts again with this model")
    index = CacheIndex(caches, list(cache_paths))
    locations = [(index.locate(a, f"{pairs_path}:{n}"), index.locate(b, f"{pairs_path}:{n}"))
                 for n, a, b in pairs]

    classifier = load(model_dir).classifier
    if getattr(getattr(classifier, "head", None), "pool_padding", False):
        logging.warning("this model pools over the padded length (pool_padding): its scores "
                        "depend on the padding of each batch")
    budget = config.get("max_seq_length", 128)
    # each cached text is [CLS] x [SEP]; the pair packing would be [CLS] x [SEP] y [SEP]
    too_long = sum(index.length(a) + index.length(b) - 1 > budget for a, b in locations)
    if too_long:
        logging.warning("%d of %d pairs exceed the model's pair budget (%d pieces): the "
                        "end-to-end pipeline would truncate them jointly", too_long,
                        len(pairs), budget)
    server = ModelServer(classifier, config["model"])
    bar = progress_bar(len(pairs), "pair") if show_progress else None
    probs = score_pairs(server.score, index, locations, server.hidden_size, batch_size, bar)
    labels = config.get("labels") or [str(i) for i in range(probs.shape[1])]
    info = {"pairs": len(pairs), "labels": list(labels), "over_budget": int(too_long),
            "dtypes": sorted({c.meta["dtype"] for c in caches})}
    return [(a, b) for _, a, b in pairs], probs, info


def write_scores(path, pairs, probs, labels):
    """TSV: ``id_a, id_b, label, p_<label>...`` (a header, then one row a pair)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\t".join(["id_a", "id_b", "label"] + [f"p_{l}" for l in labels]) + "\n")
            for (a, b), p in zip(pairs, probs):
                f.write("\t".join([a, b, str(labels[int(np.argmax(p))])]
                                  + [f"{x:.8g}" for x in p]) + "\n")
        os.replace(tmp, path)
    except OSError:  # a full disk: leave no part behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise




PATH_FLAGS = (PathFlag("model_dir", paths.MODEL_DIR), PathFlag("cache", paths.INPUT_FILE),
              PathFlag("pairs", paths.INPUT_FILE), PathFlag("output", paths.OUTPUT_FILE))


def _score():
    require_flags(FLAGS, ("model_dir", "cache", "pairs", "output"))
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        pairs, probs, info = score_file(FLAGS.model_dir, FLAGS.cache, FLAGS.pairs,
                                        FLAGS.batch_size)
        write_scores(FLAGS.output, pairs, probs, info["labels"])
    print(f"scored {info['pairs']} pairs on cached {'/'.join(info['dtypes'])} states -> "
          f"{FLAGS.output}")
    return 0


main = absl_main(_score)

if __name__ == "__main__":
    define_flags()
    run(_score)
    sys.exit(0)
