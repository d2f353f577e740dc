"""A corpus encoded once by a representation model, searched by its vectors, re-ranked.

`Index.build` encodes a corpus file (`virt_tf.retrieval.corpus.read_texts`) with a trained
model through the state cache (`virt_tf.inference.state_cache.encode_cache`: TensorFlow or
OpenVINO), in shards that a rerun of the same build reuses, then builds a ScaNN searcher
(`virt_tf.retrieval.searcher`) over one vector a document. `Index.load` reads it back with
the model that wrote it (another model is refused: its vectors would not be comparable), and
`Index.search` answers queries::

    from virt_tf.retrieval.index import Index
    Index.build("runs/qqp_virt", "corpus.jsonl", "indexes/qqp")  # writes the folder
    index = Index.load("indexes/qqp")                  # with the model recorded in it
    ranked = index.search(["How do I learn Python?"], top_k=10, rerank="model")
    # ranked[0]: [(docid, score), ...], best first

The vector of a text (the first stage) is the mean of the last-layer states of its
``[CLS] text [SEP]`` positions (the states the cache holds), L2-normalised: the score is the
cosine. For ``siamese`` and ``dse`` that is exactly the vector their head compares; for
``virt`` it is the vector before the adapted interaction (Eq. 8), for ``dipair``, ``poly``
the mean of the states their heads read in part; for ``deformer`` the mean of its lower
(offline) layers.

Re-ranking of the first stage's best ``rerank_depth`` documents:

* ``model``: the model's own pair head (``score`` of `ModelServer`, the online part of
  ``virt_tf.score``) on the cached token states of the query and of each document (kept
  as float16 when the index was built with ``keep_states``); the score is the probability
  of the positive label (`positive_column`);
* ``teacher``: a cross-encoder (``teacher_dir``) on the two texts: exact scores, at the cost
  of a full encoder pass a pair.

Documents below the depth keep their first-stage order, their scores shifted below the
re-ranked ones, so that a run's scores always decrease with the rank.

The files of an index folder are described in `virt_tf.retrieval.layout`.
"""
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time

import numpy as np
from absl import logging

from virt_tf import rundir
from virt_tf.errors import ConfigError, DataError
from virt_tf.inference.matcher import TextMatcher, load
from virt_tf.inference.scoring import score_pairs
from virt_tf.inference.serving import ModelServer
from virt_tf.inference.state_cache import (StateCache, encode_cache, model_fingerprint,
                                           progress_bar, read_cache, write_cache)
from virt_tf.models.registry import get_spec, read_model_config
from virt_tf.retrieval import RERANK_MODES, require
from virt_tf.retrieval import corpus as corpus_files
from virt_tf.retrieval import searcher as scann_searcher
from virt_tf.retrieval.layout import (BUILD_FILE, DOCS_FILE, INDEX_FILE, INDEX_FORMAT,
                                      INDEX_VERSION, SEARCHER_DIR, SHARDS_DIR, STATES_FILE,
                                      check_build, check_output, check_search,
                                      read_index_info)

# labels taken as the positive class of a pair, in this order (else the last label)
POSITIVE_LABELS = ("1", "duplicate", "is_duplicate", "paraphrase", "equivalent", "entailment")


@dataclasses.dataclass
class IndexOptions:
    """How an index is built (the flags of ``virt_tf.index``).

    Attributes:
      shard_size: documents encoded and written at a time (a rerun reuses finished shards).
      batch_size: texts per encoder call.
      keep_states: also store the documents' token states (float16) for ``rerank="model"``.
      max_seq_length: length budget of one packed text (default: the model's).
      backend, openvino_model, openvino_precision: what runs the encoder (as ``virt_tf.encode``).
      id_field, text_field: the corpus file's field names (`corpus.read_texts`).
      searcher: `SearcherOptions`.
    """
    shard_size: int = 10000
    batch_size: int = 64
    keep_states: bool = True
    max_seq_length: int = None
    backend: str = "tensorflow"
    openvino_model: str = None
    openvino_precision: str = "f32"
    id_field: str = "id"
    text_field: str = "text"
    searcher: scann_searcher.SearcherOptions = dataclasses.field(
        default_factory=scann_searcher.SearcherOptions)

    def check(self):
        """A `ConfigError` for an option out of range."""
        if self.shard_size <= 0:
            raise ConfigError(f"shard_size must be positive, got {self.shard_size}")
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")
        self.searcher.check()
        return self


# ---------------------------------------------------------------------------- vectors
def pooled_vectors(cache):
    """One vector a text of a `StateCache`: the mean of its states, L2-normalised (float32
    `[n, hidden]`)."""
    states = np.asarray(cache.states, np.float32)
    sums = np.add.reduceat(states, cache.offsets[:-1], axis=0)
    lengths = np.diff(cache.offsets).astype(np.float32)[:, None]
    return scann_searcher.normalize(sums / lengths)


def positive_column(labels, positive_label=None):
    """The column of the positive class among a model's ``labels``: ``positive_label`` if
    given, else the first of `POSITIVE_LABELS` present, else the last label."""
    labels = [str(l) for l in labels]
    if positive_label is not None:
        if str(positive_label) not in labels:
            raise ConfigError(f"positive label {positive_label!r} is not one of the model's "
                              f"labels {labels}")
        return labels.index(str(positive_label))
    for name in POSITIVE_LABELS:
        if name in labels:
            return labels.index(name)
    return len(labels) - 1


class _PairStates:
    """Cached states of queries (cache 0) and documents (cache 1), by ``(cache, row)``: the
    ``length``/``states`` lookups `virt_tf.inference.scoring.score_pairs` reads (ids of
    the two may coincide, so no id lookup is made)."""

    def __init__(self, queries, documents):
        self.caches = (queries, documents)

    def length(self, loc):
        return self.caches[loc[0]].length(loc[1])

    def states(self, loc):
        return self.caches[loc[0]].text_states(loc[1])


def _matcher(model, max_seq_length=None):
    """A `TextMatcher` of ``model`` (a matcher loaded from a directory, or a directory of a
    representation model: checked before it is loaded)."""
    if isinstance(model, TextMatcher):
        if not model.directory:
            raise ConfigError("an index records which model wrote it: load the model from a "
                              "trained directory (virt_tf.load)")
        matcher = model
    else:
        config = read_model_config(model)
        if not get_spec(config["model"]).cls.offline:
            raise ConfigError(f"{model} holds a {config['model']} model, which reads both "
                              "texts together: an index needs a model that encodes its "
                              "texts apart")
        return load(model, max_seq_length)
    if not matcher.offline:
        raise ConfigError(f"a {matcher.model_name} model reads both texts together: an index "
                          "needs a model that encodes its texts apart")
    return matcher


# ---------------------------------------------------------------------------- building
def _plan_of(fingerprint, ids, texts, options, matcher):
    """The settings a resumed build must share with the one that wrote the shards."""
    return {"format": INDEX_FORMAT, "model_fingerprint": fingerprint, "documents": len(ids),
            "corpus_digest": _digest(ids, texts), "shard_size": options.shard_size,
            "keep_states": bool(options.keep_states),
            "max_seq_length": int(matcher.preprocessor.max_seq_length),
            "backend": options.backend}


def _digest(ids, texts):
    """sha256 of the corpus's ids and texts (hex str)."""
    h = hashlib.sha256()
    for i, t in zip(ids, texts):
        h.update(i.encode("utf-8") + b"\0" + t.encode("utf-8") + b"\0")
    return h.hexdigest()


def _prepare_folder(output, plan):
    """Check ``output`` and resume or start a build in it: a finished index is never
    replaced, a folder of something else never written into. Returns True on a resume."""
    check_output(output)  # again: the model was loaded meanwhile
    build_file = rundir.path(output, BUILD_FILE)
    if os.path.exists(build_file):
        started = rundir.read_json(build_file)
        if started != plan:
            changed = sorted(k for k in set(plan) | set(started)
                             if plan.get(k) != started.get(k))
            raise ConfigError(f"{output} holds an unfinished build with other settings "
                              f"({', '.join(changed)}): remove it or rerun with the same "
                              "model, corpus and options")
        for leftover in glob.glob(rundir.path(output, SHARDS_DIR, rundir.PARTS)):
            os.remove(leftover)
        for leftover in (rundir.path(output, SEARCHER_DIR),):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover)
        return True
    rundir.write_json(build_file, plan)
    return False


def _shard_path(output, number):
    return rundir.path(output, SHARDS_DIR, f"shard-{number:05d}.npz")


def _read_shard(path, ids):
    """A finished shard: ``(vectors, offsets, states)``, checked to hold ``ids``."""
    with np.load(path, allow_pickle=False) as data:
        if [str(i) for i in data["ids"]] != list(ids):
            raise DataError(f"{path}: holds other documents than this build's")
        return data["vectors"], data["offsets"], data["states"]


def _encode_shards(matcher, ids, texts, output, options, show_progress):
    """Encode every shard not yet on disk. Returns the vectors `[n, H]`, and the token
    states (`StateCache`, float16) when ``keep_states``."""
    size = options.shard_size
    starts = list(range(0, len(ids), size))
    bar = progress_bar(len(ids), "text") if show_progress else None
    vectors, offsets, states, meta = [], [0], [], None
    for number, start in enumerate(starts):
        shard_ids, shard_texts = ids[start:start + size], texts[start:start + size]
        path = _shard_path(output, number)
        if os.path.exists(path):
            logging.info("shard %d/%d: reused %s", number + 1, len(starts), path)
            shard = _read_shard(path, shard_ids)
        else:
            cache = encode_cache(matcher, shard_ids, shard_texts, False, options.batch_size,
                                 options.backend, options.openvino_model,
                                 options.openvino_precision)
            meta = cache.meta
            kept = (cache.states.astype(np.float16) if options.keep_states
                    else np.zeros((0, cache.states.shape[1]), np.float16))
            shard = (pooled_vectors(cache), cache.offsets, kept)
            rundir.write_npz(path, ids=np.asarray(shard_ids, dtype=str), vectors=shard[0],
                             offsets=shard[1], states=shard[2],
                             meta=np.asarray(json.dumps(cache.meta)))
            logging.info("shard %d/%d: encoded %d texts", number + 1, len(starts),
                         len(shard_ids))
        if meta is None:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
        vectors.append(shard[0])
        if options.keep_states:
            offsets.extend((shard[1][1:] + offsets[-1]).tolist())
            states.append(shard[2])
        if bar is not None:
            bar.add(len(shard_ids))
    vectors = np.concatenate(vectors, axis=0)
    if not options.keep_states:
        return vectors, None
    meta = dict(meta, dtype="float16")
    return vectors, StateCache(list(ids), np.asarray(offsets, np.int64),
                               np.concatenate(states, axis=0), meta)


def build_index(model, corpus_path, output, options=None, show_progress=True):
    """Encode ``corpus_path`` with ``model`` and write an index folder at ``output`` (see
    the module docstring). Returns the summary written to ``index.json``.

    Cheap checks (options, the corpus file, the output folder, the model kind, the
    optional packages) come before the model is loaded; nothing is written before they
    pass. A build that stops (a kill, a full disk) is resumed by the same call.
    """
    options = (options or IndexOptions()).check()
    require("scann")
    ids, texts = check_build(corpus_path, output, options.id_field, options.text_field)
    matcher = _matcher(model, options.max_seq_length)
    fingerprint = model_fingerprint(matcher.directory)
    plan = _plan_of(fingerprint, ids, texts, options, matcher)
    resumed = _prepare_folder(output, plan)
    if resumed:
        logging.info("%s: resuming the build (finished shards are reused)", output)
    started = time.monotonic()
    vectors, states = _encode_shards(matcher, ids, texts, output, options, show_progress)
    encode_seconds = time.monotonic() - started

    state_bytes = 0
    if states is not None:
        state_bytes = write_cache(rundir.path(output, STATES_FILE), states)
    rundir.write_npz(rundir.path(output, DOCS_FILE), ids=np.asarray(ids, dtype=str),
                     texts=np.asarray(texts, dtype=str), vectors=vectors)
    search_plan = options.searcher.plan(len(ids))
    started = time.monotonic()
    searcher = scann_searcher.build_searcher(vectors, search_plan)
    with rundir.atomic_target(rundir.path(output, SEARCHER_DIR)) as tmp:
        scann_searcher.save_searcher(searcher, tmp)
    summary = {
        "format": INDEX_FORMAT, "version": INDEX_VERSION, "model_fingerprint": fingerprint,
        "model_dir": os.path.abspath(matcher.directory), "model": matcher.model_name,
        "documents": len(ids), "hidden_size": int(vectors.shape[1]),
        "vector": "mean of the last-layer states, L2-normalised", "similarity": "cosine",
        "searcher": search_plan, "max_seq_length": int(matcher.preprocessor.max_seq_length),
        "backend": options.backend, "corpus": os.path.abspath(corpus_path),
        "states": "float16" if states is not None else None,
        "state_bytes": int(state_bytes),
        "state_bytes_per_document": state_bytes / len(ids),
        "vector_bytes_per_document": int(vectors.shape[1]) * 4,
        "encode_seconds": round(encode_seconds, 3),
        "searcher_seconds": round(time.monotonic() - started, 3),
    }
    rundir.write_json(rundir.path(output, INDEX_FILE), summary)  # last: marks it finished
    shutil.rmtree(rundir.path(output, SHARDS_DIR), ignore_errors=True)
    os.remove(rundir.path(output, BUILD_FILE))
    return summary


# ---------------------------------------------------------------------------- searching
class Index:
    """A finished index folder with the model that wrote it (`Index.load`).

    Attributes: ``info`` (``index.json``), ``ids``, ``texts`` (lists of str),
    ``vectors`` (float32 `[n, H]`), ``states`` (float16 `StateCache` or None),
    ``matcher`` (the `TextMatcher` that encodes queries), ``folder``.
    """

    def __init__(self, folder, info, ids, texts, vectors, searcher, matcher, states=None):
        self.folder = folder
        self.info = info
        self.ids = ids
        self.texts = texts
        self.vectors = vectors
        self.searcher = searcher
        self.matcher = matcher
        self.states = states
        self._server = None
        self._teachers = {}

    build = staticmethod(build_index)

    @classmethod
    def load(cls, folder, model=None):
        """Read an index folder. ``model``: a model directory or a loaded `TextMatcher`
        (default: the directory recorded in the index). A model other than the one that
        wrote the index (its fingerprint differs) is a `ConfigError`."""
        require("scann")
        info = read_index_info(folder)
        if model is None:
            model = info.get("model_dir")
            if not model or not os.path.isfile(rundir.path(model, rundir.MODEL_CONFIG)):
                raise ConfigError(f"{folder}: the model that wrote it ({model}) is not there: "
                                  "give its directory")
        where = model.directory if isinstance(model, TextMatcher) else model
        if where and model_fingerprint(where) != info["model_fingerprint"]:
            raise ConfigError(f"{folder} was built by another model than {where} (weights or "
                              "vocabulary differ): its vectors cannot be compared with this "
                              "model's; build an index with this model")
        matcher = _matcher(model, info.get("max_seq_length"))
        try:
            with np.load(rundir.path(folder, DOCS_FILE), allow_pickle=False) as data:
                ids = [str(i) for i in data["ids"]]
                texts = [str(t) for t in data["texts"]]
                vectors = data["vectors"]
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{folder}: {DOCS_FILE} is missing or unreadable ({e})") from e
        states = None
        if info.get("states"):
            states = read_cache(rundir.path(folder, STATES_FILE))
        searcher = scann_searcher.load_searcher(rundir.path(folder, SEARCHER_DIR))
        if len(ids) != info["documents"] or len(vectors) != len(ids):
            raise DataError(f"{folder}: its files disagree on the number of documents")
        return cls(folder, info, ids, texts, vectors, searcher, matcher, states)

    def __len__(self):
        return len(self.ids)

    def encode_queries(self, queries, batch_size=64):
        """The query cache (float32 `StateCache`) and vectors `[q, H]` of ``queries``."""
        cache = encode_cache(self.matcher, [str(i) for i in range(len(queries))], queries,
                             False, batch_size)
        return cache, pooled_vectors(cache)

    def first_stage(self, vectors, k):
        """Rows and scores `[q, min(k, n)]` of the searcher (exact under the brute-force
        threshold), best first."""
        return scann_searcher.search(self.searcher, vectors, k, self.info["searcher"])

    def recall_against_exact(self, queries, k=10, batch_size=64):
        """ScaNN's recall@k against exact search for ``queries`` (list of str): the mean share
        of the exact top ``k`` that the searcher returns (1.0 for a brute-force index)."""
        _, vectors = self.encode_queries(list(queries), batch_size)
        rows, _ = self.first_stage(vectors, k)
        exact, _ = scann_searcher.exact_top_k(self.vectors, vectors, k)
        return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(rows, exact)]))

    def _rerank_model(self, query_cache, candidates, positive_label, batch_size):
        if self.states is None:
            raise ConfigError(f"{self.folder} was built without the token states "
                              "(--nokeep_states): rerank=model needs them; rebuild the index")
        if self._server is None:
            self._server = ModelServer(self.matcher.classifier, self.matcher.model_name)
        pairs = _PairStates(query_cache, self.states)
        locations = [((0, q), (1, int(r))) for q, rows in enumerate(candidates) for r in rows]
        if not locations:
            return [[] for _ in candidates]
        probs = score_pairs(self._server.score, pairs, locations, self._server.hidden_size,
                            batch_size)
        column = positive_column(self.matcher.labels, positive_label)
        return _split(probs[:, column], candidates)

    def _rerank_teacher(self, queries, candidates, teacher, positive_label, batch_size):
        if not teacher:
            raise ConfigError("rerank=teacher needs a teacher model directory (teacher_dir)")
        if isinstance(teacher, TextMatcher):
            matcher = teacher
        else:
            if teacher not in self._teachers:
                self._teachers[teacher] = load(teacher)
            matcher = self._teachers[teacher]
        texts_a = [queries[q] for q, rows in enumerate(candidates) for _ in rows]
        texts_b = [self.texts[int(r)] for rows in candidates for r in rows]
        if not texts_a:
            return [[] for _ in candidates]
        probs = matcher.predict(texts_a, texts_b, batch_size)
        return _split(probs[:, positive_column(matcher.labels, positive_label)], candidates)

    def search(self, queries, top_k=100, rerank="none", rerank_depth=100, teacher_dir=None,
               query_ids=None, exclude_self=False, positive_label=None, batch_size=64):
        """Rank the documents for each query.

        Args:
          queries: list of q query texts.
          top_k: documents returned a query (at most the corpus size).
          rerank: ``none``, ``model`` or ``teacher`` (the module docstring).
          rerank_depth: first-stage documents re-ranked a query.
          teacher_dir: the cross-encoder of ``rerank="teacher"`` (a directory or a
            `TextMatcher`).
          query_ids: ids of the queries (with ``exclude_self``: a document whose id
            equals its query's id is left out, as a question is not its own duplicate).
          positive_label: the label whose probability ranks (`positive_column`).
        Returns:
          q lists of ``(docid, score)``, best first.
        """
        queries = [str(q) for q in queries]
        if top_k <= 0:
            raise ConfigError(f"top_k must be positive, got {top_k}")
        if rerank not in RERANK_MODES:
            raise ConfigError(f"rerank must be one of {RERANK_MODES}, got {rerank!r}")
        if rerank != "none" and rerank_depth <= 0:
            raise ConfigError(f"rerank_depth must be positive, got {rerank_depth}")
        if exclude_self and (query_ids is None or len(query_ids) != len(queries)):
            raise ConfigError("exclude_self needs one query id a query")
        if not queries:
            return []
        depth = max(top_k, rerank_depth if rerank != "none" else 0) + int(bool(exclude_self))
        query_cache, vectors = self.encode_queries(queries, batch_size)
        rows, scores = self.first_stage(vectors, depth)
        ranked_rows, ranked_scores = [], []
        for q in range(len(queries)):
            keep = [i for i in range(rows.shape[1])
                    if not (exclude_self and self.ids[rows[q, i]] == query_ids[q])]
            keep = keep[:depth - int(bool(exclude_self))]
            ranked_rows.append(rows[q, keep])
            ranked_scores.append(scores[q, keep])
        if rerank != "none":
            heads = [r[:rerank_depth] for r in ranked_rows]
            if rerank == "model":
                new = self._rerank_model(query_cache, heads, positive_label, batch_size)
            else:
                new = self._rerank_teacher(queries, heads, teacher_dir, positive_label,
                                           batch_size)
            for q, head_scores in enumerate(new):
                ranked_rows[q], ranked_scores[q] = _merge(
                    ranked_rows[q], ranked_scores[q], head_scores)
        return [[(self.ids[int(r)], float(s)) for r, s in zip(rows_q[:top_k], scores_q[:top_k])]
                for rows_q, scores_q in zip(ranked_rows, ranked_scores)]


def _split(values, candidates):
    """A flat array of one value a candidate -> one array a query."""
    out, start = [], 0
    for rows in candidates:
        out.append(values[start:start + len(rows)])
        start += len(rows)
    return out


def _merge(rows, first_scores, head_scores):
    """The re-ranked head (by ``head_scores``, ties by first-stage order) followed by the
    rest in first-stage order, its scores shifted below the head's."""
    n = len(head_scores)
    order = np.argsort(-np.asarray(head_scores, np.float64), kind="stable")
    head_rows, head = rows[:n][order], np.asarray(head_scores, np.float64)[order]
    tail_rows, tail = rows[n:], np.asarray(first_scores[n:], np.float64)
    if len(tail):
        tail = tail - tail.max() + (head.min() if n else 0.0) - 1.0
    return np.concatenate([head_rows, tail_rows]), np.concatenate([head, tail])


def search_file(index_dir, queries_path, output, top_k=100, rerank="none", rerank_depth=100,
                teacher_dir=None, model_dir=None, exclude_self=False, positive_label=None,
                batch_size=64, tag=None, id_field="id", text_field="text"):
    """The job of ``python -m virt_tf.search``: queries of a file -> a TREC run at
    ``output``. Cheap checks (the values, the queries file, the index folder) come before
    any model loads; the run is written atomically. Returns a summary dict."""
    qids, queries, _ = check_search(index_dir, queries_path, top_k, rerank, rerank_depth,
                                    teacher_dir, batch_size, id_field, text_field)
    index = Index.load(index_dir, model_dir)
    started = time.monotonic()
    ranked = index.search(queries, top_k, rerank, rerank_depth, teacher_dir, qids,
                          exclude_self, positive_label, batch_size)
    seconds = time.monotonic() - started
    corpus_files.write_run(output, qids, ranked, tag or f"virt_tf-{rerank}")
    return {"queries": len(qids), "documents": len(index), "top_k": top_k, "rerank": rerank,
            "seconds": seconds, "path": output}
