"""The errors a user can cause, apart from bugs.

Each is raised where an input is checked (a flag, a data file, a checkpoint,
a model directory, a serving request) and names the input. The entry points
(`virt_tf.cli.common.run_cli`) print a `UserError` as one line ``error: ...`` and exit
with code 2; any other exception is a bug and keeps its traceback (exit 1).
The classes also derive from the built-in error a caller would expect
(`ValueError`, `FileNotFoundError`, ...).

Below the classes, the classification of OS errors that every layer needs (a write that
fails in training, a path the user gave): `is_io_error`, `describe`, `USER_ERRNOS`. This
module imports nothing heavy: TensorFlow's file-system errors are recognised only when
TensorFlow is already loaded (`tf_io_message`), never by importing it.
"""
import errno
import os
import sys


class UserError(Exception):
    """Bad input from the user (not a bug of this program)."""


class ConfigError(UserError, ValueError):
    """A configuration value or flag out of range, of the wrong kind, or missing."""


class DataError(UserError, ValueError):
    """Bad input data; the message names file and line."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or model directory that does not fit (names the file or variable)."""


class StageError(UserError, RuntimeError):
    """A stage directory that cannot be resumed with this configuration."""


class NumericalError(UserError, RuntimeError):
    """A NaN or Inf loss (settings that diverge); the last good checkpoint is kept."""


class ServingInputError(UserError, ValueError):
    """Inputs of a serving function with the wrong dtype or shape."""


class PathError(UserError, OSError):
    """A path the user gave is of the wrong kind (a file where a folder is wanted...),
    cannot be read or written, or is empty; the message names the flag and the path.
    Raised by `virt_tf.cli.paths` before any work starts."""


class WriteError(PathError):
    """Writing under a path the user gave failed during the run (a full disk, a folder
    made read-only or removed): the message names the path and what was kept."""


class MissingFileError(PathError, FileNotFoundError):
    """A file or directory the user named does not exist."""


class ExistingFileError(PathError, FileExistsError):
    """An output the user named exists and may not be replaced."""


class MissingDependencyError(UserError, ImportError):
    """An optional package that an asked-for feature needs is not installed (names it and
    how to install it)."""


# ------------------------------------------------------------------ OS errors, classified
# errno values a user's path (or its disk) causes; anything else is not the user's
USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
               errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EFBIG,
               errno.ENAMETOOLONG, errno.EIO}


def error_reason(error):
    """'No space left on device' for an OSError, the first line of anything else.

    An OSError with an errno is described by it alone: h5py, say, puts a long dump
    of its own into ``strerror``."""
    if isinstance(error, OSError) and error.errno is not None:
        return os.strerror(error.errno)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    return lines[0] if lines else type(error).__name__


def tf_io_message(error):
    """A TensorFlow I/O error's message (from its C++ file system), else None.

    Looks TensorFlow up in `sys.modules` instead of importing it: an error of TensorFlow
    can only exist once TensorFlow is loaded."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, getattr(tf.errors, "OpError", ())):
        return None
    io_codes = (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError,
                tf.errors.NotFoundError, tf.errors.FailedPreconditionError,
                tf.errors.AlreadyExistsError, tf.errors.DataLossError, tf.errors.UnknownError)
    return error.message if isinstance(error, io_codes) else None


def is_io_error(error):
    """Whether ``error`` is an `OSError` or a TensorFlow file-system error."""
    return isinstance(error, OSError) or tf_io_message(error) is not None


def describe(error, output=True):
    """What went wrong, on one line, with a hint for a full disk or a refused access
    (``output``: a write, else a read)."""
    code = getattr(error, "errno", None)
    text = error_reason(error)
    if tf_io_message(error) is not None:
        code = {"ResourceExhaustedError": errno.ENOSPC,
                "PermissionDeniedError": errno.EACCES}.get(type(error).__name__)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"{text} (the disk is full: free space and run the same command again)"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{text} (not {'writable' if output else 'readable'}: fix the permissions "
                "and run the same command again)")
    return text
