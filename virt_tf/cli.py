"""Shared command-line behaviour: user errors become one line and exit code 2.

A known user error (bad data, bad config, a checkpoint that does not fit, a
non-finite loss, a stage directory that cannot be resumed, a missing file)
prints a single line `error: ...` on stderr, never a traceback, and exits with
code 2. Anything else is a bug and keeps its traceback.
"""
import gc
import sys

from absl import logging

EXIT_USER_ERROR = 2

# module -> names of its user-error classes. A module that was never imported
# cannot have raised its errors, so they are looked up in `sys.modules` only:
# failing on bad data does not import TensorFlow just to print one line.
_USER_ERRORS = {
    "virt_tf.config": ("ConfigError",),
    "virt_tf.data.tasks": ("DataError",),
    "virt_tf.modeling.checkpoints": ("CheckpointError",),
    "virt_tf.training": ("NumericalError", "StageError"),
}


def user_error_types():
    types = [FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
             PermissionError, ValueError]
    for module, names in _USER_ERRORS.items():
        mod = sys.modules.get(module)
        if mod is not None:
            types.extend(getattr(mod, name) for name in names if hasattr(mod, name))
    return tuple(types)


def one_line(error, limit=2000):
    """The message of ``error`` on one line (TensorFlow messages span several)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_cli(fn):
    """Run ``fn``; a known user error prints `error: ...` on stderr and exits 2."""
    try:
        return fn() or 0
    except user_error_types() as e:
        logging.debug("user error", exc_info=True)
        message = one_line(e)
    # Objects of the failed run (a half-restored checkpoint...) may log warnings when
    # they are collected; let them do so now so that the error is the last line.
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


def require_flags(flag_values, names):
    """A `ValueError` naming the first of ``names`` that was not given."""
    for name in names:
        if not getattr(flag_values, name):
            raise ValueError(f"--{name} is required")


def absl_main(fn):
    """An absl ``main(argv)`` that refuses stray arguments and runs ``fn`` under `run_cli`."""
    def main(argv):
        if len(argv) > 1:
            from absl import app  # pylint: disable=import-outside-toplevel
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        return run_cli(fn)
    return main
