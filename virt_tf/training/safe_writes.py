"""Writes into a user's model directory that fail (a full disk, a read-only folder).

`virt_tf.training.stage` saves through these helpers: a failed checkpoint save removes its
partly written files and is a `WriteError` naming the last good checkpoint, which stays
the latest (TensorFlow replaces the `checkpoint` state file only after a complete
save), so rerunning the same command resumes from it; a failed final save of the
model files removes their temporary parts and says that the trained weights are in the
last checkpoint, so the rerun only saves. ``--debug_write_fault`` (testing only) makes
one such write fail after a part of it reached the disk (`inject_write_fault`).
TensorFlow is imported only when a write has failed: the entry points check
``--debug_write_fault`` (`parse_write_fault`) before they import it. Partly written files
are the `virt_tf.rundir.temporary` names of the run-directory contract.
"""
import contextlib
import errno
import glob
import os
import shutil

from absl import logging

from virt_tf import rundir
from virt_tf.errors import WriteError, describe, is_io_error



def parse_write_fault(spec):
    """``checkpoint@STEP:ERRNO`` or ``model:ERRNO`` -> ``(what, step, errno)``; None if empty.

    Testing only (``--debug_write_fault``): which write `inject_write_fault` fails.
    Raises ValueError on a malformed spec.
    """
    if not spec:
        return None
    target, _, code = spec.partition(":")
    what, _, step = target.partition("@")
    if what not in ("checkpoint", "model") or (what == "checkpoint") != bool(step) or \
            code not in ("ENOSPC", "EACCES") or (step and not step.isdigit()):
        raise ValueError(f"expected checkpoint@STEP:ERRNO or model:ERRNO with ERRNO ENOSPC or "
                         f"EACCES, got {spec!r}")
    return what, int(step) if step else None, getattr(errno, code)


def inject_write_fault(spec, what, step, folder):
    """Testing only: fail the write ``what`` (of ``step``) as a full disk or a read-only
    folder would, after a part of it reached ``folder`` (those parts are for the writer's
    error handling to remove)."""
    fault = parse_write_fault(spec)
    if fault is None or fault[0] != what or (what == "checkpoint" and fault[1] != step):
        return
    if what == "checkpoint":
        partial = os.path.join(folder, f"ckpt-{step}_temp", "part-00000-of-00001.data-00000-of-00001")
    else:
        partial = rundir.temporary(rundir.path(folder, rundir.WEIGHTS), ".weights.h5")
    os.makedirs(os.path.dirname(partial), exist_ok=True)
    with open(partial, "wb") as f:
        f.write(b"\0" * 1024)
    raise OSError(fault[2], os.strerror(fault[2]), partial)


def _latest_checkpoint(ckpt_dir):
    # defers TensorFlow: `virt_tf.train` imports this module for its flag checks, which run
    # before TensorFlow is loaded
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.train.latest_checkpoint(ckpt_dir)


def _remove_partial(paths_to_remove):
    for path in paths_to_remove:
        try:
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError:
            logging.warning("could not remove the partly written %s", path)


def remove_stale_parts(directory, ckpt_dir):
    """Remove what a killed earlier process of this stage left half-written: temporary
    files (`rundir.PARTS`) in ``directory`` and ``ckpt_dir``, and TensorFlow's unfinished
    checkpoint parts (``ckpt-*_temp*``). Called before a stage (re)starts, when no other
    process writes these folders."""
    _remove_partial(glob.glob(os.path.join(directory, rundir.PARTS)) +
                    glob.glob(os.path.join(ckpt_dir, rundir.PARTS)) +
                    glob.glob(os.path.join(ckpt_dir, "ckpt-*_temp*")))


def checkpoint_write_error(ckpt_dir, step, error):
    """A `WriteError` for a failed checkpoint save of ``step``, after removing its parts.

    The `checkpoint` state file is only replaced once a save is complete, so the
    latest checkpoint it names is the last good one, and a rerun resumes from it.
    """
    latest = _latest_checkpoint(ckpt_dir)
    if not (latest or "").endswith(f"ckpt-{step}"):
        _remove_partial(glob.glob(os.path.join(ckpt_dir, f"ckpt-{step}.*")) +
                        glob.glob(os.path.join(ckpt_dir, f"ckpt-{step}_temp*")))
    kept = (f"the last good checkpoint {latest} is kept: run the same command again to "
            "resume from it" if latest else "no checkpoint had been saved yet")
    return WriteError(f"{ckpt_dir}: could not write the checkpoint of step {step}: "
                      f"{describe(error)}; {kept}")


@contextlib.contextmanager
def final_write(directory, ckpt_dir):
    """The final model files: an I/O error removes their temporary parts and is a
    `WriteError` saying that the trained weights are kept in the last checkpoint."""
    try:
        yield
    except Exception as e:  # pylint: disable=broad-except
        if not is_io_error(e):
            raise
        _remove_partial(glob.glob(os.path.join(directory, rundir.PARTS)))
        latest = _latest_checkpoint(ckpt_dir)
        raise WriteError(f"{directory}: could not write the trained model: {describe(e)}; "
                         f"the trained weights are kept in {latest}: run the same command "
                         "again, it only saves") from e
