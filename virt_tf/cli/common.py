"""Shared command-line behaviour: user errors become one line and exit code 2.

A `virt_tf.errors.UserError` (bad data, bad config, a checkpoint that does not
fit, a non-finite loss, a stage directory that cannot be resumed, a missing
file), raised where the input is checked, prints a single line
``error: <Class>: <message>`` on stderr, never a traceback, and exits with code
2. Anything else is a bug: it keeps its traceback and exits with code 1.

Flags are parsed by `parse_flags` (`run` passes it to ``absl.app.run``): an
unknown flag, an unknown enum value or a value of the wrong type is a
`ConfigError` line with exit 2 too, instead of absl's "FATAL Flags parsing
error" (exit 1). Every entry point and tool starts with `run`; each checks its
path flags (`virt_tf.cli.paths`) before any work.

Every command logs its progress on stderr in one format, `LOG_FORMAT`, set here
(`configure_logging`, called by `run_main` before the command's main): absl's and
TensorFlow's Python loggers and Python warnings (Keras') alike; a command's result goes
to stdout.
"""
import gc
import logging as std_logging
import sys

from absl import app, flags, logging

from virt_tf.errors import ConfigError, UserError

EXIT_USER_ERROR = 2


def user_error_types():
    """The exception classes `run_cli` reports as user errors."""
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
    report_user_error(message)  # outside the except block: the failed run's frames are freed


def report_user_error(message):
    """Print ``message`` (``<Class>: <text>``) as the last line ``error: ...`` on stderr
    and exit 2."""
    # Objects of the failed run (a half-restored checkpoint...) may log warnings when
    # they are collected; let them do so now so that the error is the last line.
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


def require_flags(flag_values, names):
    """A `ConfigError` naming the first of ``names`` that was not given."""
    for name in names:
        if not getattr(flag_values, name):
            raise ConfigError(f"--{name} is required")


def _refuse_stray_arguments(argv):
    """A `ConfigError` for arguments that are not flags (absl leaves them in ``argv``)."""
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])} (flags are "
                          "--name=value; see --help)")


def absl_main(fn):
    """An absl ``main(argv)`` that refuses stray arguments and runs ``fn`` under `run_cli`."""
    def main(argv):
        """absl's entry: ``argv`` holds what is left after the flags."""
        return run_cli(lambda: _refuse_stray_arguments(argv) or fn())
    return main


def parse_flags(argv):
    """absl's ``flags_parser``: a flag error is one `ConfigError` line and exit 2.

    Unknown flags, enum values outside their choices, values of the wrong type
    and missing required flags are all user errors. Returns the remaining
    arguments (``argv[0]`` first), as absl's own parser does.
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = f"{ConfigError.__name__}: {one_line(e)} (see --help)"
    report_user_error(message)


# absl's help flags: absl prints the usage and exits 1; asking for help is no error.
HELP_FLAGS = ("-h", "-?", "--help", "-help", "--helpshort", "--helpfull", "--helpxml")


# ``2026-12-05 01:37:21 INFO pipeline: train 16, tune 8, dev 16``: time, level, module.
LOG_FORMAT = "%(asctime)s %(levelname)s %(module)s: %(message)s"
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def configure_logging():
    """Give every log line of the command `LOG_FORMAT` on stderr: absl's handler (on the
    root logger, where TensorFlow's logger and captured Python warnings end too) gets the
    format instead of absl's ``I1205 01:37:21.388430 140348923960192 file.py:110]``."""
    formatter = std_logging.Formatter(LOG_FORMAT, LOG_TIME_FORMAT)
    logging.use_absl_handler()  # app.run installs it; a no-op then
    logging.get_absl_handler().setFormatter(formatter)
    # TensorFlow's logger has a handler of its own when it was set up before absl's: the
    # format there too, and its lines once (not again through the root logger)
    tf_logger = std_logging.getLogger("tensorflow")
    for handler in tf_logger.handlers:
        handler.setFormatter(formatter)
    if tf_logger.handlers:
        tf_logger.propagate = False
    std_logging.captureWarnings(True)  # warnings.warn(...) as a WARNING line of the format


def run_main(main, argv=None):
    """``absl.app.run(main)`` with flag errors as one `ConfigError` line (`parse_flags`),
    every log line in `LOG_FORMAT` (`configure_logging`) and ``--help`` ending with exit
    code 0 (absl's own exits 1)."""
    args = sys.argv if argv is None else argv

    def logged_main(remaining):
        configure_logging()
        return main(remaining)

    try:
        app.run(logged_main, argv=argv, flags_parser=parse_flags)
    except SystemExit as e:
        if e.code == 1 and any(a.split("=")[0] in HELP_FLAGS for a in args[1:]):
            sys.exit(0)
        raise


def run(fn, argv=None):
    """The whole command: parse flags (`parse_flags`), then ``fn()`` under `run_cli`.

    Every entry point's ``__main__`` calls this after defining its flags.
    """
    run_main(absl_main(fn), argv=argv)
