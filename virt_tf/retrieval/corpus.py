"""Files of retrieval: a corpus or queries (id and text), relevance judgements, runs.

Texts (`read_texts`), one a row, in one of two forms:

* ``.jsonl``: objects with an id field and a text field (``id_field``/``text_field``,
  default ``"id"`` and ``"text"``; BEIR's corpus files use ``"_id"``); ids may be strings
  or integers;
* anything else: tab-separated rows ``id<TAB>text``; a first row naming the columns
  (holding ``id_field`` and ``text_field``) is a header, and then the file may have more
  columns, found by name.

Ids must be unique and not empty; a text may be empty. A missing file, a bad row or a
repeated id is a `DataError` naming file and line.

Judgements (`read_qrels`): TREC qrels, ``qid iteration docid relevance`` (whitespace).
Runs (`write_run`, `read_run`): TREC run format, ``qid Q0 docid rank score tag``, one
line a retrieved document, best first. This module imports neither TensorFlow nor numpy.
"""
import json
import os

from virt_tf import rundir
from virt_tf.data.tasks import check_unique_ids
from virt_tf.errors import DataError


def _lines(path):
    """``(line_number, line)`` of a UTF-8 file (a BOM, the last newline and CRs dropped)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: bytes that are not UTF-8 ({e.reason})") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(n, line[:-1] if line.endswith("\r") else line) for n, line in enumerate(lines, 1)]


def _json_row(where, line, id_field, text_field):
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg})") from e
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    if not isinstance(row.get(text_field), str):
        raise DataError(f"{where}: expected a string field {text_field!r}")
    text_id = row.get(id_field)
    if not isinstance(text_id, (str, int)) or isinstance(text_id, bool):
        raise DataError(f"{where}: expected a field {id_field!r} (a string or an integer)")
    return str(text_id), row[text_field]


def read_texts(path, id_field="id", text_field="text"):
    """Rows of ``path`` -> ``(ids, texts)``, two lists of str in file order (see the module
    docstring for the forms)."""
    ids, texts = [], []
    columns = (0, 1)
    for number, line in _lines(path):
        where = f"{path}:{number}"
        if not line.strip():
            raise DataError(f"{where}: empty row")
        if path.endswith(".jsonl"):
            text_id, text = _json_row(where, line, id_field, text_field)
        else:
            fields = line.split("\t")
            if number == 1 and id_field in fields and text_field in fields:
                columns = (fields.index(id_field), fields.index(text_field))
                width = len(fields)
                continue
            if columns == (0, 1) and len(fields) != 2:
                raise DataError(f"{where}: expected 2 tab-separated fields (id, text), got "
                                f"{len(fields)}")
            if columns != (0, 1) and len(fields) != width:
                raise DataError(f"{where}: expected {width} tab-separated fields as the "
                                f"header, got {len(fields)}")
            text_id, text = fields[columns[0]], fields[columns[1]]
        if not text_id:
            raise DataError(f"{where}: empty id")
        ids.append(text_id)
        texts.append(text)
    if not ids:
        raise DataError(f"{path}: no texts")
    check_unique_ids(path, ids, "rows")
    return ids, texts


def check_run_ids(path, ids):
    """A `DataError` for an id with white space (a TREC run cannot hold it)."""
    for text_id in ids:
        if any(c.isspace() for c in text_id):
            raise DataError(f"{path}: id {text_id!r} has white space (a TREC run cannot "
                            "hold it)")


def read_qrels(path):
    """TREC qrels -> ``{qid: {docid: relevance}}`` (int relevance; 0 is judged not
    relevant)."""
    qrels = {}
    for number, line in _lines(path):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4:
            raise DataError(f"{path}:{number}: expected 4 fields (qid iteration docid "
                            f"relevance), got {len(fields)}")
        try:
            relevance = int(fields[3])
        except ValueError as e:
            raise DataError(f"{path}:{number}: relevance {fields[3]!r} is not an "
                            "integer") from e
        qrels.setdefault(fields[0], {})[fields[2]] = relevance
    if not qrels:
        raise DataError(f"{path}: no judgements")
    return qrels


def write_qrels(path, qrels):
    """Write ``{qid: {docid: relevance}}`` as TREC qrels, atomically."""
    lines = [f"{qid} 0 {docid} {rel}\n" for qid, docs in qrels.items()
             for docid, rel in docs.items()]
    rundir.write_text_atomic(path, "".join(lines))


def _check_id(kind, value):
    if not value or any(c.isspace() for c in value):
        raise DataError(f"a TREC run needs {kind} ids without white space, got {value!r}")


def write_run(path, qids, results, tag="virt_tf"):
    """Write a TREC run, atomically: ``results[i]`` is the ranked list of ``(docid, score)``
    of query ``qids[i]``, best first. Ids with white space cannot be written (a
    `DataError`)."""
    lines = []
    for qid, ranked in zip(qids, results):
        _check_id("query", qid)
        for rank, (docid, score) in enumerate(ranked, 1):
            _check_id("document", docid)
            lines.append(f"{qid} Q0 {docid} {rank} {float(score):.7g} {tag}\n")
    rundir.write_text_atomic(path, "".join(lines))


def read_run(path):
    """A TREC run -> ``{qid: {docid: score}}``."""
    run = {}
    for number, line in _lines(path):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 6:
            raise DataError(f"{path}:{number}: expected 6 fields (qid Q0 docid rank score "
                            f"tag), got {len(fields)}")
        try:
            score = float(fields[4])
        except ValueError as e:
            raise DataError(f"{path}:{number}: score {fields[4]!r} is not a number") from e
        run.setdefault(fields[0], {})[fields[2]] = score
    return run
