"""The errors a user can cause, apart from bugs.

Each is raised where an input is checked (a flag, a data file, a checkpoint,
a model directory, a serving request) and names the input. The entry points
(`virt_tf.cli.common.run_cli`) print a `UserError` as one line ``error: ...`` and exit
with code 2; any other exception is a bug and keeps its traceback (exit 1).
The classes also derive from the built-in error a caller would expect
(`ValueError`, `FileNotFoundError`, ...). This module imports nothing heavy.
"""


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
