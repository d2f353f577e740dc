"""Shared command-line behaviour: user errors become one line and exit code 2.

A `virt_tf.errors.UserError` (bad data, bad config, a checkpoint that does not
fit, a non-finite loss, a stage directory that cannot be resumed, a missing
file), raised where the input is checked, prints a single line
``error: <Class>: <message>`` on stderr, never a traceback, and exits with code
2. Anything else is a bug: it keeps its traceback and exits with code 1.
"""
import gc
import sys

from absl import logging

EXIT_USER_ERROR = 2

def user_error_types():
    """The exception classes `run_cli` reports as user errors."""
    from virt_tf.errors import UserError  # pylint: disable=import-outside-toplevel
    return (UserError,)


def one_line(error, limit=2000):
    """The message of ``error`` on one line (TensorFlow messages span several)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_cli(fn):
    """Run ``fn``; a `UserError` prints `error: <Class>: ...` on stderr and exits 2."""
    try:
        return fn() or 0
    except user_error_types() as e:
        logging.debug("user error", exc_info=True)
        message = f"{type(e).__name__}: {one_line(e)}"
    # Objects of the failed run (a half-restored checkpoint...) may log warnings when
    # they are collected; let them do so now so that the error is the last line.
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


def require_flags(flag_values, names):
    """A `ConfigError` naming the first of ``names`` that was not given."""
    from virt_tf.errors import ConfigError  # pylint: disable=import-outside-toplevel
    for name in names:
        if not getattr(flag_values, name):
            raise ConfigError(f"--{name} is required")


def absl_main(fn):
    """An absl ``main(argv)`` that refuses stray arguments and runs ``fn`` under `run_cli`."""
    def main(argv):
        if len(argv) > 1:
            from absl import app  # pylint: disable=import-outside-toplevel
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        return run_cli(fn)
    return main
