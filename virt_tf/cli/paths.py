"""Every path a user gives, checked before any work starts; OS errors on them as user errors.

Each entry point declares its path flags as a tuple of `PathFlag` (flag name and
kind) and calls `check_flags` first, before it reads data or builds a model, so a
mistake costs nothing: a `PathError` naming the flag, the path and what is wrong
(one ``error:`` line, exit 2). Kinds:

* ``INPUT_FILE``: must exist, be a file, be readable and (unless ``allow_empty``)
  not be empty;
* ``INPUT_DIR``: must exist, be a folder and be readable;
* ``MODEL_DIR``: an ``INPUT_DIR`` holding a non-empty ``model_config.json``
  (`virt_tf.rundir.MODEL_CONFIG`: a directory written by training);
* ``CHECKPOINT``: a pretrained checkpoint: a folder, a file, or a TensorFlow
  checkpoint prefix (``PREFIX.index`` exists);
* ``OUTPUT_DIR``: a folder that is, or can be, created and written: if it exists it
  must be a folder; the nearest existing folder above it must be writable;
* ``OUTPUT_FILE``: a file that can be written: not a folder, its nearest existing
  folder writable.

Nothing is created by a check: writability is probed with a temporary file that is
removed at once, so a refused run leaves no output behind.

During the run, `os_errors_as_user_errors` turns an `OSError` (or a TensorFlow I/O
error) on a path *under* a user-given path (a full disk, a folder made read-only or
removed while a job runs) into a `WriteError` naming the flag and the path; an OS
error on any other path (one this program made itself) stays a bug and keeps its
traceback. Which OS errors are the user's is `virt_tf.errors`' classification (library
modules use it too, without this command-line module). This module imports nothing heavy.
"""
import contextlib
import dataclasses
import os
import tempfile

from virt_tf.errors import (USER_ERRNOS, MissingFileError, PathError, UserError, WriteError,
                            describe, error_reason, tf_io_message)
from virt_tf.rundir import MODEL_CONFIG

INPUT_FILE = "input file"
INPUT_DIR = "input folder"
MODEL_DIR = "model folder"
CHECKPOINT = "checkpoint"
OUTPUT_FILE = "output file"
OUTPUT_DIR = "output folder"
KINDS = (INPUT_FILE, INPUT_DIR, MODEL_DIR, CHECKPOINT, OUTPUT_FILE, OUTPUT_DIR)
MIN_FREE_BYTES = 64 * 1024  # below this an output disk counts as full


@dataclasses.dataclass(frozen=True)
class PathFlag:
    """A flag (or argument) holding a path, of one of `KINDS`.

    Attributes:
      name: the flag name without dashes (``model_dir``); a list flag holds several paths.
      kind: one of `KINDS`.
      allow_empty: an ``INPUT_FILE`` may be empty.
      unless: names of flags that, when any is set, make this one unused (not checked).
    """
    name: str
    kind: str
    allow_empty: bool = False
    unless: tuple = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown path kind {self.kind!r}")


def _where(flag, path):
    """``--flag path``; a positional argument is named in capitals (``ROOT path``)."""
    return f"{flag if flag.isupper() else '--' + flag} {path}"


def _probe_write(folder):
    """None if a file can be created in ``folder`` (made and removed at once), else the OSError."""
    try:
        fd, name = tempfile.mkstemp(prefix=".virt_tf_probe_", dir=folder)
    except OSError as e:
        return e
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass
    return None


def _existing_parent(path):
    """The nearest existing path above ``path`` (``path``'s own folder first)."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    return parent


def _check_writable_folder(flag, path, folder, creating):
    """``folder`` (an existing path at or above ``path``) must be a writable folder with
    some free space; ``creating``: ``path`` does not exist yet."""
    prefix = "cannot be created: " if creating else (
        "" if os.path.abspath(folder) == os.path.abspath(path) else "cannot be written: ")
    subject = f"{folder} is " if prefix else "is "
    if not os.path.isdir(folder):
        raise PathError(f"{_where(flag, path)}: {prefix}{subject}a file, not a folder")
    error = _probe_write(folder)
    if error is not None:
        raise PathError(f"{_where(flag, path)}: {prefix}{subject}not writable "
                        f"({error_reason(error)})")
    try:
        free = _free_bytes(folder)
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise PathError(f"{_where(flag, path)}: the disk is full ({free} bytes free)")


def _free_bytes(folder):
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def check_output_dir(flag, path):
    """``path`` is a writable folder, or can be created as one. Creates nothing."""
    if os.path.lexists(path):
        if not os.path.isdir(path):
            raise PathError(f"{_where(flag, path)}: is a file, not a folder")
        _check_writable_folder(flag, path, path, creating=False)
    else:
        _check_writable_folder(flag, path, _existing_parent(path), creating=True)
    return path


def check_output_file(flag, path):
    """``path`` is a file that can be (re)written (written beside it, then renamed)."""
    if os.path.isdir(path):
        raise PathError(f"{_where(flag, path)}: is a folder, not a file")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise PathError(f"{_where(flag, path)}: names a folder (ends with a separator), "
                        "not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.lexists(path) or os.path.isdir(parent):
        _check_writable_folder(flag, path, parent, creating=False)
    else:
        _check_writable_folder(flag, path, _existing_parent(path), creating=True)
    return path


def check_input_file(flag, path, allow_empty=False):
    """``path`` exists, is a readable file and (unless ``allow_empty``) is not empty."""
    if not os.path.exists(path):
        raise MissingFileError(f"{_where(flag, path)}: file not found")
    if os.path.isdir(path):
        raise PathError(f"{_where(flag, path)}: is a folder, not a file")
    try:
        with open(path, "rb") as f:
            first = f.read(1)
    except OSError as e:
        raise PathError(f"{_where(flag, path)}: cannot be read ({error_reason(e)})") from e
    if not first and not allow_empty:
        raise PathError(f"{_where(flag, path)}: the file is empty")
    return path


def check_input_dir(flag, path):
    """``path`` exists and is a readable folder."""
    if not os.path.exists(path):
        raise MissingFileError(f"{_where(flag, path)}: folder not found")
    if not os.path.isdir(path):
        raise PathError(f"{_where(flag, path)}: is a file, not a folder")
    try:
        os.listdir(path)
    except OSError as e:
        raise PathError(f"{_where(flag, path)}: cannot be read ({error_reason(e)})") from e
    return path


def check_model_dir(flag, path):
    """``path`` is a folder written by training: it holds a non-empty `MODEL_CONFIG`."""
    check_input_dir(flag, path)
    config = os.path.join(path, MODEL_CONFIG)
    if not os.path.isfile(config):
        raise PathError(f"{_where(flag, path)}: no {MODEL_CONFIG} (not a trained model "
                        "directory)")
    try:
        check_input_file(flag, config)
    except PathError as e:
        raise PathError(f"{_where(flag, path)}: {str(e).split(': ', 1)[1]} "
                        f"({MODEL_CONFIG})") from e
    return path


def check_checkpoint(flag, path):
    """``path`` is a checkpoint folder, file, or TensorFlow prefix (``path.index`` exists)."""
    if os.path.isdir(path):
        return check_input_dir(flag, path)
    if os.path.exists(path + ".index"):
        check_input_file(flag, path + ".index")
        return path
    return check_input_file(flag, path)


_CHECKS = {INPUT_FILE: check_input_file, INPUT_DIR: check_input_dir,
           MODEL_DIR: check_model_dir, CHECKPOINT: check_checkpoint,
           OUTPUT_FILE: check_output_file, OUTPUT_DIR: check_output_dir}


def check_path(flag, path, kind, allow_empty=False):
    """Check one ``path`` given to ``flag`` as a ``kind``; returns it."""
    if kind == INPUT_FILE:
        return check_input_file(flag, path, allow_empty)
    return _CHECKS[kind](flag, path)


def values(flag_values, spec):
    """The paths given to ``spec.name`` (a list flag gives several; unset: none)."""
    if any(getattr(flag_values, name, None) for name in spec.unless):
        return []
    value = getattr(flag_values, spec.name)
    if not value:
        return []
    return [v for v in value if v] if isinstance(value, (list, tuple)) else [value]


def check_flags(flag_values, specs):
    """Check every path of ``specs`` (`PathFlag`s) in ``flag_values``: inputs first.

    Raises `PathError` (or `MissingFileError`) for the first that is wrong.
    """
    ordered = sorted(specs, key=lambda s: s.kind in (OUTPUT_FILE, OUTPUT_DIR))
    for spec in ordered:
        for path in values(flag_values, spec):
            check_path(spec.name, path, spec.kind, spec.allow_empty)


# ----------------------------------------------------------------------- during the run
def _inside(path, root):
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def flag_roots(flag_values, specs):
    """``[(flag, path, kind), ...]``: every path given to the flags of ``specs``."""
    return [(spec.name, path, spec.kind) for spec in specs
            for path in values(flag_values, dataclasses.replace(spec, unless=()))]


def user_path_of(error, roots):
    """``(flag, root, kind, path)`` when ``error`` is an OS error on a ``path`` under one
    of ``roots`` (``(flag, user-given path[, kind])`` tuples), else None."""
    if isinstance(error, OSError):
        if error.errno is not None and error.errno not in USER_ERRNOS:
            return None
        named = [p for p in (error.filename, error.filename2) if isinstance(p, (str, bytes))]
        text = str(error)
    else:
        text = tf_io_message(error)
        if text is None:
            return None
        named = []
    for flag, root, *kind in roots:
        kind = kind[0] if kind else OUTPUT_DIR
        if not root:
            continue
        for path in named:
            path = os.fsdecode(path)
            if _inside(path, root):
                return flag, root, kind, path
        if not named and (root in text or os.path.abspath(root) in text):
            return flag, root, kind, root
    return None


@contextlib.contextmanager
def os_errors_as_user_errors(roots):
    """OS errors on paths under ``roots`` (``(flag, user-given path[, kind])`` tuples, see
    `flag_roots`) become user errors naming the flag, its path and the file: a
    `WriteError` under an output (or a path of no kind), a `PathError` under an input.

    Any other error, an OS error on another path included, passes unchanged (a bug).
    """
    try:
        yield
    except UserError:
        raise
    except Exception as e:  # pylint: disable=broad-except
        found = user_path_of(e, roots)
        if found is None:
            raise
        flag, root, kind, path = found
        output = kind in (OUTPUT_DIR, OUTPUT_FILE)
        one_line = " ".join(describe(e, output).split())
        error_class = WriteError if output else PathError
        raise error_class(f"{_where(flag, root)}: {path}: {one_line}") from e


def default_data_root(repo_root):
    """The folder of the tasks' data: ``$VIRT_TF_DATA``, else ``shared/data`` beside the
    repository at ``repo_root`` (where the project's tools and tests look by default)."""
    return os.environ.get("VIRT_TF_DATA") or os.path.join(os.path.dirname(repo_root),
                                                          "shared", "data")
