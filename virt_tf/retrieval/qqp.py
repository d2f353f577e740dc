"""Duplicate-question retrieval built from labelled QQP pairs (as BEIR built its Quora set).

From files of labelled question pairs (`read_labelled_pairs`):

* corpus: every distinct question (the text with its outer white space stripped), ids
  ``"1"``, ``"2"``... in order of first appearance;
* duplicates: a question's duplicates are the other questions of its cluster, the groups
  joined by the pairs labelled duplicate, taken transitively (being a duplicate means asking
  the same thing, an equivalence: if a = b and b = c are marked, a = c holds too, though
  QQP never asked its raters about that pair);
* queries: the questions with at least one duplicate; relevant documents: their
  duplicates (relevance 1); a query's own text is in the corpus under the query's id,
  which a search leaves out (``exclude_self``), as BEIR does;
* dev / train: the split is made over the connected components of the graph of *all*
  labelled pairs (duplicates or not): a component goes whole to one side, so no training
  pair contains a dev query, one of its duplicates, or any question a dev question was
  paired with. ``dev_fraction`` of the components (seeded shuffle) go to dev.

Output folder (written whole, atomically)::

    corpus.jsonl          {"id", "text"} a question
    queries.dev.jsonl     {"id", "text"} a dev query (ids are corpus ids)
    queries.train.jsonl
    qrels.dev.txt         TREC qrels: qid 0 docid 1
    qrels.train.txt
    train_pairs.jsonl     {"text_a", "text_b", "label"}: the labelled pairs of the train side
    info.json             counts, the inputs and the settings

A pair given twice (in either order) counts once; when its labels disagree the duplicate
label is kept and the disagreement counted. This module imports neither TensorFlow nor numpy.
"""
import json
import os
import random

from virt_tf import rundir
from virt_tf.errors import ConfigError, DataError, ExistingFileError
from virt_tf.retrieval.corpus import write_qrels

# field names of the three sources: GLUE / Hugging Face (question1...), prompt-tuning
# copies (text_a...); the label column is "label" or GLUE's "is_duplicate"
FIRST = ("question1", "text_a")
SECOND = ("question2", "text_b")
LABEL = ("label", "is_duplicate")


def _field(row, names, where):
    for name in names:
        if name in row:
            return row[name]
    raise DataError(f"{where}: expected one of the fields {', '.join(names)}")


def _pair(row, where):
    a, b = _field(row, FIRST, where), _field(row, SECOND, where)
    label = _field(row, LABEL, where)
    if not isinstance(a, str) or not isinstance(b, str):
        raise DataError(f"{where}: the two questions must be strings")
    try:
        label = int(label)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: label {label!r} is not 0 or 1") from e
    if label not in (0, 1):
        raise DataError(f"{where}: label {label!r} is not 0 or 1")
    return a.strip(), b.strip(), label


def read_labelled_pairs(path):
    """``(question_a, question_b, label)`` rows of one file: ``.jsonl`` (an object a line),
    ``.json`` (a list of objects, or an object of objects), or ``.tsv`` with a header naming
    the columns (GLUE's ``question1, question2, is_duplicate``)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    rows = []
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: invalid JSON ({e.msg})") from e
        items = data.values() if isinstance(data, dict) else data
        rows = [(f"{path}: row {n}", r) for n, r in enumerate(items, 1)]
    elif path.endswith(".jsonl"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((f"{path}:{n}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from e
    else:
        lines = [l.rstrip("\r") for l in text.splitlines()]
        header = lines[0].split("\t") if lines else []
        for n, line in enumerate(lines[1:], 2):
            if line.strip():
                fields = line.split("\t")
                if len(fields) != len(header):
                    raise DataError(f"{path}:{n}: expected {len(header)} tab-separated "
                                    f"fields as the header, got {len(fields)}")
                rows.append((f"{path}:{n}", dict(zip(header, fields))))
    out = []
    for where, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object")
        out.append(_pair(row, where))
    if not out:
        raise DataError(f"{path}: no pairs")
    return out


class _Groups:
    """Union-find over question numbers."""

    def __init__(self):
        self.parent = []

    def add(self):
        self.parent.append(len(self.parent))

    def find(self, x):
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, a, b):
        self.parent[self.find(a)] = self.find(b)

    def groups(self):
        """``{root: [members]}``, members ascending."""
        out = {}
        for x in range(len(self.parent)):
            out.setdefault(self.find(x), []).append(x)
        return out


def build_retrieval_set(pairs, dev_fraction=0.2, seed=0):
    """The retrieval set of labelled ``pairs`` (see the module docstring), in memory.

    Returns a dict: ``corpus`` (list of ``(id, text)``), ``queries`` and ``qrels`` (each a
    dict ``{"dev": ..., "train": ...}``: lists of ``(id, text)``; ``{qid: {docid: 1}}``),
    ``train_pairs`` (list of ``(text_a, text_b, label)``) and ``info`` (counts).
    """
    if not 0 < dev_fraction < 1:
        raise ConfigError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    number, texts = {}, []
    labels = {}
    conflicts = 0
    links, duplicates = _Groups(), _Groups()
    for a, b, label in pairs:
        if not a or not b:
            continue
        for text in (a, b):
            if text not in number:
                number[text] = len(texts)
                texts.append(text)
                links.add()
                duplicates.add()
        x, y = number[a], number[b]
        key = (min(x, y), max(x, y))
        if key in labels and labels[key] != label:
            conflicts += 1
        labels[key] = max(label, labels.get(key, 0))
    for (x, y), label in labels.items():
        links.join(x, y)
        if label == 1:
            duplicates.join(x, y)
    clusters = duplicates.groups()
    components = sorted(links.groups().values(), key=lambda members: members[0])
    random.Random(seed).shuffle(components)
    dev_count = int(round(dev_fraction * len(components)))
    side = {}
    for i, members in enumerate(components):
        for x in members:
            side[x] = "dev" if i < dev_count else "train"
    qid = lambda x: str(x + 1)  # noqa: E731  (corpus ids from 1)
    queries = {"dev": [], "train": []}
    qrels = {"dev": {}, "train": {}}
    for x in range(len(texts)):
        others = [y for y in clusters[duplicates.find(x)] if y != x]
        if others:
            queries[side[x]].append((qid(x), texts[x]))
            qrels[side[x]][qid(x)] = {qid(y): 1 for y in others}
    train_pairs = [(texts[x], texts[y], label) for (x, y), label in labels.items()
                   if side[x] == "train"]
    info = {"questions": len(texts), "pairs": len(labels), "label_conflicts": conflicts,
            "duplicate_clusters": sum(len(m) > 1 for m in clusters.values()),
            "components": len(components), "dev_components": dev_count,
            "queries": {k: len(v) for k, v in queries.items()},
            "judgements": {k: sum(len(d) for d in v.values()) for k, v in qrels.items()},
            "train_pairs": len(train_pairs), "dev_fraction": dev_fraction, "seed": seed,
            "relevance": "transitive duplicates (clusters of the duplicate pairs)"}
    return {"corpus": [(qid(x), t) for x, t in enumerate(texts)], "queries": queries,
            "qrels": qrels, "train_pairs": train_pairs, "info": info}


def _jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_retrieval_set(pair_files, output, dev_fraction=0.2, seed=0):
    """Read ``pair_files``, build the set and write it into the folder ``output`` (new or
    empty; written whole through a temporary folder). Returns the ``info`` dict."""
    if os.path.isdir(output) and os.listdir(output):
        raise ExistingFileError(f"{output} exists and is not empty: choose a new --output")
    pairs = []
    for path in pair_files:
        pairs.extend(read_labelled_pairs(path))
    built = build_retrieval_set(pairs, dev_fraction, seed)
    info = dict(built["info"], inputs=[os.path.basename(p) for p in pair_files])
    if os.path.isdir(output):
        os.rmdir(output)
    with rundir.atomic_target(output) as tmp:
        os.makedirs(tmp)
        _jsonl(os.path.join(tmp, "corpus.jsonl"),
               ({"id": i, "text": t} for i, t in built["corpus"]))
        for split in ("dev", "train"):
            _jsonl(os.path.join(tmp, f"queries.{split}.jsonl"),
                   ({"id": i, "text": t} for i, t in built["queries"][split]))
            write_qrels(os.path.join(tmp, f"qrels.{split}.txt"), built["qrels"][split])
        _jsonl(os.path.join(tmp, "train_pairs.jsonl"),
               ({"text_a": a, "text_b": b, "label": l} for a, b, l in built["train_pairs"]))
        rundir.write_json(os.path.join(tmp, "info.json"), info)
    return info
