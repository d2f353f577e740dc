"""The files of an index folder and the checks of one that need no model (no TensorFlow):
a command runs them before it loads anything.

An index folder::

    index.json   what the index is: model fingerprint, vector kind, searcher settings, sizes
                 (written last: its presence marks a finished index)
    docs.npz     ids, texts and vectors (float32 [n, hidden]) of the documents
    states.npz   the documents' token states (a float16 state cache), with keep_states
    scann/       the ScaNN searcher
    shards/, build.json   only while a build runs (a rerun resumes from them)
"""
import os

from virt_tf import rundir
from virt_tf.errors import ConfigError, DataError, ExistingFileError, PathError, error_reason
from virt_tf.retrieval import RERANK_MODES
from virt_tf.retrieval.corpus import check_run_ids, read_texts

INDEX_FORMAT = "virt_tf.index"
INDEX_VERSION = 1
INDEX_FILE = "index.json"
DOCS_FILE = "docs.npz"
STATES_FILE = "states.npz"
SEARCHER_DIR = "scann"
SHARDS_DIR = "shards"
BUILD_FILE = "build.json"


def check_output(output):
    """A `ExistingFileError` if ``output`` holds a finished index, a `ConfigError` if it is
    a folder that is not empty and holds no unfinished build (nothing of ours to resume)."""
    if os.path.exists(rundir.path(output, INDEX_FILE)):
        raise ExistingFileError(f"{output} already holds an index: remove it or choose "
                                "another --output")
    if (os.path.isdir(output) and os.listdir(output)
            and not os.path.exists(rundir.path(output, BUILD_FILE))):
        raise ConfigError(f"{output} is a folder that is not empty and holds no index "
                          "build: choose a new or empty --output")


def _index_info(folder):
    """``(the index.json of folder, None)``, or ``(None, what is wrong)`` when ``folder``
    holds no finished index written by ``virt_tf.index``."""
    path = rundir.path(folder, INDEX_FILE)
    if not os.path.isdir(folder):
        return None, "no such index folder"
    if not os.path.isfile(path):
        building = os.path.exists(rundir.path(folder, BUILD_FILE))
        return None, ("not an index written by virt_tf.index ("
                      + ("its build has not finished: rerun it" if building
                         else f"no {INDEX_FILE}") + ")")
    try:
        info = rundir.read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"{INDEX_FILE} is not readable JSON ({e})"
    except OSError as e:
        return None, f"{INDEX_FILE} cannot be read ({error_reason(e)})"
    if not isinstance(info, dict) or info.get("format") != INDEX_FORMAT \
            or info.get("version") != INDEX_VERSION:
        return None, f"not a {INDEX_FORMAT} v{INDEX_VERSION} index"
    return info, None


def read_index_info(folder):
    """The ``index.json`` of an index folder; a `DataError` if ``folder`` holds no finished
    index written by ``virt_tf.index``."""
    info, problem = _index_info(folder)
    if problem:
        raise DataError(f"{folder}: {problem}")
    return info


def check_index_dir(flag, folder):
    """The path check of an index folder given to ``--flag``: as `read_index_info`, but a
    `PathError` naming the flag and the folder (a command runs it with its path checks)."""
    info, problem = _index_info(folder)
    if problem:
        raise PathError(f"--{flag} {folder}: {problem}")
    return info


def check_build(corpus_path, output, id_field="id", text_field="text"):
    """The checks of a build that need no model: the corpus (`read_texts`; ids fit a run)
    and the output folder (`check_output`). Returns the corpus's ``(ids, texts)``."""
    ids, texts = read_texts(corpus_path, id_field, text_field)
    check_run_ids(corpus_path, ids)
    check_output(output)
    return ids, texts


def check_search(index_dir, queries_path, top_k, rerank="none", rerank_depth=100,
                 teacher_dir=None, batch_size=64, id_field="id", text_field="text"):
    """The checks of a search that need no model: the values, the queries (ids fit a run)
    and the index folder. Returns ``(query_ids, queries, index_info)``."""
    if top_k <= 0:
        raise ConfigError(f"--top_k must be positive, got {top_k}")
    if rerank not in RERANK_MODES:
        raise ConfigError(f"--rerank must be one of {RERANK_MODES}, got {rerank!r}")
    if rerank != "none" and rerank_depth <= 0:
        raise ConfigError(f"--rerank_depth must be positive, got {rerank_depth}")
    if rerank == "teacher" and not teacher_dir:
        raise ConfigError("--rerank=teacher needs --teacher_dir (a cross-encoder directory)")
    if batch_size <= 0:
        raise ConfigError(f"--batch_size must be positive, got {batch_size}")
    qids, queries = read_texts(queries_path, id_field, text_field)
    check_run_ids(queries_path, qids)
    info = read_index_info(index_dir)
    if rerank == "model" and not info.get("states"):
        raise ConfigError(f"{index_dir} was built without the token states: --rerank=model "
                          "needs them (build it again without --nokeep_states)")
    return qids, queries, info
