"""Task registry and readers of the official file layouts.

Every reader returns a list of `Example(text_a, text_b, label)` with integer
labels. A malformed row raises `DataError` naming file and line, unless
``skip_bad_rows`` is set, in which case bad rows are skipped and counted.
Without a ``data_dir`` the GLUE/SuperGLUE tasks come from tensorflow-datasets: from its
data folder when prepared there, else downloaded, after one short check that the download
host answers (`download_reachable`; no network is one `DataError` naming ``--data_dir``
and the files the task reads, not minutes of retries).
"""
import csv
import dataclasses
import json
import os
import random
import sys
import threading
import urllib.error
import urllib.request
from typing import Callable, Optional, Sequence

from virt_tf.errors import ConfigError, DataError

csv.field_size_limit(sys.maxsize)  # a passage may be longer than csv's default field limit


@dataclasses.dataclass(frozen=True)
class Example:
    """A pair of texts and its integer label (an index into the task's labels)."""
    text_a: str
    text_b: str
    label: int


@dataclasses.dataclass
class ReadStats:
    """What a reader met: rows read, malformed rows skipped, empty texts."""
    rows: int = 0
    skipped: int = 0
    empty_texts: int = 0


@dataclasses.dataclass
class Task:
    """A text-pair classification task.

    ``files`` maps split name -> candidate file names inside ``data_dir`` (the
    first that exists is read); ``tfds_name``/``tfds_splits`` give the online source.
    """
    name: str
    labels: Sequence[str]
    files: dict
    read: Callable
    tfds_name: Optional[str] = None
    tfds_splits: Optional[dict] = None
    tfds_fields: Optional[tuple] = None
    metrics: tuple = ("accuracy",)
    eval_splits: tuple = ("dev",)
    options: dict = dataclasses.field(default_factory=dict)  # `get_task(name, **options)`

    @property
    def num_labels(self):
        return len(self.labels)


def _open_text(path):
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: bytes that are not UTF-8 ({e.reason})") from e


def _label_id(value, labels, where):
    """Map a raw label (string, int or bool) to its index in ``labels``."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value).strip()
    lowered = {l.lower(): i for i, l in enumerate(labels)}
    if text.lower() in lowered:
        return lowered[text.lower()]
    raise DataError(f"{where}: unknown label {text!r} (expected one of {list(labels)})")


def _check_text(text, where, stats):
    if not isinstance(text, str):
        raise DataError(f"{where}: text field is {type(text).__name__}, not a string")
    if not text.strip():
        stats.empty_texts += 1
    return text


def _rows_tsv(path, skip_bad_rows, stats, columns=None, header=True):
    """Yield (line_no, dict or list) from a GLUE TSV (quotes are literal text)."""
    text = _open_text(path)
    reader = csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    head = None
    for i, row in enumerate(reader, start=1):
        if header and head is None:
            head = row
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        stats.rows += 1
        if head is not None and len(row) != len(head):
            msg = f"{path}:{i}: expected {len(head)} tab-separated columns, found {len(row)}"
            if skip_bad_rows:
                stats.skipped += 1
                continue
            raise DataError(msg)
        yield i, (dict(zip(head, row)) if head is not None else row)
    if stats.rows == 0:
        raise DataError(f"{path}: file has a header but no data rows")


def _rows_jsonl(path, skip_bad_rows, stats):
    text = _open_text(path)
    stripped = text.lstrip()
    if stripped.startswith("{") and path.endswith(".json") and "\n{" not in stripped:
        # A single JSON object of {id: row} (the layout of some GLUE samples).
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
        for i, row in enumerate(obj.values() if isinstance(obj, dict) else obj, start=1):
            stats.rows += 1
            yield i, row
        return
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        stats.rows += 1
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if skip_bad_rows:
                stats.skipped += 1
                continue
            raise DataError(f"{path}:{i}: invalid JSON line ({e})") from e
        yield i, row


def _fields_reader(a_field, b_field, label_field, fmt):
    """A reader that takes named fields from TSV (with header) or JSONL rows."""

    def read(path, labels, skip_bad_rows, stats):
        rows = (_rows_tsv(path, skip_bad_rows, stats) if fmt(path) == "tsv"
                else _rows_jsonl(path, skip_bad_rows, stats))
        out = []
        for line, row in rows:
            where = f"{path}:{line}"
            try:
                missing = [f for f in (a_field, b_field, label_field) if f not in row]
                if missing:
                    raise DataError(f"{where}: missing field(s) {missing}")
                out.append(Example(_check_text(row[a_field], where, stats),
                                   _check_text(row[b_field], where, stats),
                                   _label_id(row[label_field], labels, where)))
            except DataError:
                if skip_bad_rows:
                    stats.skipped += 1
                    continue
                raise
        return out

    return read


def _by_extension(path):
    return "tsv" if path.endswith(".tsv") else "jsonl"


def _pairs_reader(a_field="text_a", b_field="text_b", label_field="label"):
    return _fields_reader(a_field, b_field, label_field, _by_extension)


def _mrpc_read(path, labels, skip_bad_rows, stats):
    out = []
    for line, row in _rows_tsv(path, skip_bad_rows, stats, header=True):
        where = f"{path}:{line}"
        try:
            out.append(Example(_check_text(row["#1 String"], where, stats),
                               _check_text(row["#2 String"], where, stats),
                               _label_id(row["Quality"], labels, where)))
        except (DataError, KeyError) as e:
            if skip_bad_rows:
                stats.skipped += 1
                continue
            raise DataError(f"{where}: {e}") if isinstance(e, KeyError) else e
    return out


def _glue_or_pairs(a_field, b_field, label_field):
    """GLUE TSV with named header columns, or the generic pairs JSONL."""
    glue = _fields_reader(a_field, b_field, label_field, lambda p: "tsv")
    pairs = _pairs_reader()

    def read(path, labels, skip_bad_rows, stats):
        if path.endswith(".tsv"):
            return glue(path, labels, skip_bad_rows, stats)
        return pairs(path, labels, skip_bad_rows, stats)

    return read


TASKS = {}


def check_unique_ids(path, ids, unit="rows"):
    """Raise `DataError` naming the first id of ``ids`` (read from ``path``) that appears
    twice, and the two ``unit`` numbers (1-based) holding it."""
    seen = {}
    for number, text_id in enumerate(ids):
        if text_id in seen:
            raise DataError(f"{path}: id {text_id!r} appears twice ({unit} {seen[text_id] + 1} "
                            f"and {number + 1})")
        seen[text_id] = number


def register(task):
    """Add ``task`` to `TASKS` under its name; returns it."""
    TASKS[task.name] = task
    return task


register(Task(
    name="rte", labels=("entailment", "not_entailment"),
    files={"train": ["train.tsv"], "dev": ["dev.tsv"]},
    read=_glue_or_pairs("sentence1", "sentence2", "label"),
    tfds_name="glue/rte", tfds_splits={"train": "train", "dev": "validation"},
    tfds_fields=("sentence1", "sentence2")))
register(Task(
    name="mrpc", labels=("0", "1"),
    files={"train": ["train.tsv", "train.jsonl"], "dev": ["dev.tsv", "dev.jsonl"]},
    read=lambda p, *a: (_mrpc_read if p.endswith(".tsv") else _pairs_reader())(p, *a),
    tfds_name="glue/mrpc", tfds_splits={"train": "train", "dev": "validation"},
    tfds_fields=("sentence1", "sentence2"), metrics=("accuracy", "f1")))
register(Task(
    name="qqp", labels=("0", "1"),
    files={"train": ["train.tsv", "train.jsonl"], "dev": ["dev.tsv", "dev.jsonl"]},
    read=_glue_or_pairs("question1", "question2", "is_duplicate"),
    tfds_name="glue/qqp", tfds_splits={"train": "train", "dev": "validation"},
    tfds_fields=("question1", "question2"), metrics=("accuracy", "f1")))
register(Task(
    name="mnli", labels=("entailment", "neutral", "contradiction"),
    files={"train": ["train.tsv", "train.jsonl"],
           "dev": ["dev_matched.tsv", "dev_matched.jsonl"],
           "dev_matched": ["dev_matched.tsv", "dev_matched.jsonl"],
           "dev_mismatched": ["dev_mismatched.tsv", "dev_mismatched.jsonl"]},
    read=_glue_or_pairs("sentence1", "sentence2", "gold_label"),
    tfds_name="glue/mnli",
    tfds_splits={"train": "train", "dev": "validation_matched",
                 "dev_matched": "validation_matched",
                 "dev_mismatched": "validation_mismatched"},
    tfds_fields=("premise", "hypothesis"), eval_splits=("dev_matched", "dev_mismatched")))
register(Task(
    name="boolq", labels=("false", "true"),
    files={"train": ["train.jsonl"], "dev": ["val.jsonl", "dev.jsonl"]},
    read=_fields_reader("question", "passage", "label", lambda p: "jsonl"),
    tfds_name="super_glue/boolq", tfds_splits={"train": "train", "dev": "validation"},
    tfds_fields=("question", "passage")))


def pairs_task(labels=None, a_field="text_a", b_field="text_b", label_field="label",
               metrics=("accuracy",)):
    """The generic pairs task (TSV with header or JSONL): Q2P, Q2A or your own data."""
    labels = tuple(labels) if labels else ()
    return Task(name="pairs", labels=labels,
                files={"train": ["train.jsonl", "train.tsv"], "dev": ["dev.jsonl", "dev.tsv"],
                       "test": ["test.jsonl", "test.tsv"]},
                read=_pairs_reader(a_field, b_field, label_field), metrics=tuple(metrics),
                options={"labels": list(labels), "a_field": a_field, "b_field": b_field,
                         "label_field": label_field, "metrics": list(metrics)})


register(pairs_task())


def get_task(name, **pairs_options):
    """The registered `Task` ``name``; ``pairs`` is built from ``pairs_options``."""
    if name == "pairs":
        return pairs_task(**pairs_options)
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


def infer_pair_labels(path, label_field="label"):
    """Sorted distinct labels of a pairs file (integers sort numerically)."""
    stats = ReadStats()
    rows = (_rows_tsv(path, True, stats) if path.endswith(".tsv")
            else _rows_jsonl(path, True, stats))
    values = {str(r[label_field]).strip() for _, r in rows if label_field in r}
    if not values:
        raise DataError(f"{path}: no {label_field!r} field found")
    try:
        return tuple(str(v) for v in sorted(int(v) for v in values))
    except ValueError:
        return tuple(sorted(values))


def split_path(task, data_dir, split):
    """The file of ``split`` in ``data_dir``: the first of the task's names for it that
    exists (`DataError` when none does)."""
    if split not in task.files:
        raise DataError(f"task {task.name} has no split {split!r}; "
                        f"known: {sorted(task.files)}")
    for name in task.files[split]:
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    raise DataError(f"{os.path.join(data_dir, task.files[split][0])}: file not found "
                    f"(task {task.name}, split {split}); {data_dir} holds none of "
                    f"{' or '.join(task.files[split])}; the task reads {layouts(task)}")


def layouts(task):
    """The files a task reads from ``--data_dir``, split by split, as one line."""
    return "; ".join(f"{split}: {' or '.join(names)}" for split, names in task.files.items())


# Where tensorflow-datasets downloads the GLUE and SuperGLUE files from, and how long the
# one check that it answers may take.
TFDS_DOWNLOAD_HOST = "dl.fbaipublicfiles.com"
PROBE_SECONDS = 3.0


def download_reachable(host=TFDS_DOWNLOAD_HOST, timeout=PROBE_SECONDS):
    """Whether ``https://HOST/`` answers within ``timeout`` seconds (any HTTP status counts):
    one attempt, name lookup and TLS included, no retry. The environment's proxy settings
    apply, as they do to tensorflow-datasets' download."""
    answered = []

    def ask():
        request = urllib.request.Request(f"https://{host}/", method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=timeout).close()  # pylint: disable=consider-using-with
            answered.append(True)
        except urllib.error.HTTPError:  # an HTTP answer, whatever its status
            answered.append(True)
        except (OSError, ValueError):  # no route, no name, refused, timed out, not TLS
            pass

    # A thread, so that the bound holds for the name lookup too (urlopen's timeout does not
    # cover it); a lookup still stuck then ends with the process.
    probe = threading.Thread(target=ask, daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(answered)


def tfds_prepared(task):
    """Whether tensorflow-datasets holds ``task``'s dataset in its data folder already
    (``TFDS_DATA_DIR``, default ``~/tensorflow_datasets``): then nothing is downloaded."""
    root = os.environ.get("TFDS_DATA_DIR",
                          os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))
    return os.path.isdir(os.path.join(root, *task.tfds_name.split("/")))


def _no_data_dir(task, why):
    """The `DataError` of a task that cannot be read without ``--data_dir``: ``why``, then
    the layouts of the task's files."""
    return DataError(f"no --data_dir given and {why}; give --data_dir=DIR, a folder with "
                     f"the task's files (task {task.name} reads {layouts(task)})")


def _read_tfds(task, split):
    """Examples of ``split`` from tensorflow-datasets (its unlabelled test rows left out);
    `DataError` naming ``--data_dir`` when the task cannot come from there."""
    if not task.tfds_name:
        raise _no_data_dir(task, f"task {task.name} has no tensorflow-datasets source")
    # Checked before tensorflow_datasets is imported (it loads TensorFlow), and before it
    # retries a download for minutes.
    if not tfds_prepared(task) and not download_reachable():
        raise _no_data_dir(task, f"{TFDS_DOWNLOAD_HOST}, where tensorflow-datasets downloads "
                                 f"{task.tfds_name}, cannot be reached (no network?)")
    try:  # only this path needs it, and it loads TensorFlow: tasks are read before that
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  (heavy: loads TensorFlow)
    except ImportError as e:
        raise _no_data_dir(task, "tensorflow-datasets is not installed") from e
    try:
        ds = tfds.load(task.tfds_name, split=task.tfds_splits[split])
    except Exception as e:  # offline, or the dataset cannot be prepared
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise _no_data_dir(task, f"tensorflow-datasets could not load {task.tfds_name} "
                                 f"({split}): {reason}") from e
    a, b = task.tfds_fields
    out = []
    for row in tfds.as_numpy(ds):
        label = int(row["label"])
        if label < 0:  # unlabeled test rows
            continue
        out.append(Example(row[a].decode("utf-8"), row[b].decode("utf-8"), label))
    return out


def read_split(task, data_dir, split, skip_bad_rows=False, stats=None):
    """Examples of ``split`` from ``data_dir`` (or tensorflow-datasets when it is None)."""
    stats = stats if stats is not None else ReadStats()
    if data_dir is None:
        return _read_tfds(task, split)
    path = split_path(task, data_dir, split)
    examples = task.read(path, task.labels, skip_bad_rows, stats)
    if not examples:
        raise DataError(f"{path}: no usable rows")
    return examples


def hold_out(examples, fraction=0.1, seed=0):
    """Seeded split of train into (train, tune) with ``fraction`` held out (paper 4.3.2)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"tune fraction must be in [0, 1), got {fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_tune = int(round(fraction * len(examples)))
    tune = [examples[i] for i in sorted(order[:n_tune])]
    train = [examples[i] for i in sorted(order[n_tune:])]
    return train, tune
