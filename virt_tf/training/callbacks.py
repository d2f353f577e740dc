"""The Keras callbacks of a training stage (`virt_tf.training.stage.run_stage`).

`NanGuard` stops at the first non-finite loss; `StepCheckpoint` saves the resumable
checkpoints (with `TrainClock`, the training seconds up to each); `TrainLog` appends the
running metrics to ``train_log.jsonl``; `KeepBestEpoch` keeps the weights of the best
tune-split epoch; `PoisonWeights` (testing only) makes a step's loss NaN. Every file they
write goes through `virt_tf.rundir`'s atomic writer.
"""
import json
import math
import os
import time

import keras

from virt_tf import rundir
from virt_tf.errors import is_io_error
from virt_tf.rundir import BEST_INFO, BEST_WEIGHTS
from virt_tf.training.safe_writes import checkpoint_write_error, inject_write_fault


class NanGuard(keras.callbacks.Callback):
    """Stops at the first non-finite loss, naming the step. Runs before checkpointing.

    The logged losses are running means over the epoch, so the first step
    whose loss is NaN or Inf makes them non-finite at once.
    """

    def __init__(self):
        super().__init__()
        self.bad = None

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        for key in ("loss", "task_loss", "virt_loss"):
            value = logs.get(key)
            if value is not None and not math.isfinite(float(value)):
                step = int(self.model.optimizer.iterations.numpy())
                self.bad = f"non-finite {key} ({float(value)}) at step {step}"
                self.model.stop_training = True
                return


class PoisonWeights(keras.callbacks.Callback):
    """Testing only (``--debug_nan_at_step``): makes the loss of step ``step`` NaN.

    Before step ``step`` (1-based optimizer step) every trainable variable of
    ``classifier`` is multiplied by NaN, as a diverging run would leave them.
    """

    def __init__(self, classifier, step):
        super().__init__()
        self.classifier = classifier
        self.step = int(step)

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) + 1 == self.step:
            for v in self.classifier.trainable_variables:
                v.assign(v * float("nan"))


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a tf.train checkpoint every ``every`` optimizer steps and at each epoch end.

    With a ``clock`` (`TrainClock`) it also records the training seconds up to each
    saved step, so a resumed run reports the time of all its sessions. ``fault`` (testing
    only) is a ``--debug_write_fault`` spec (`inject_write_fault`)."""

    def __init__(self, manager, every, guard, clock=None, fault=None):
        super().__init__()
        self.manager = manager
        self.every = every
        self.guard = guard
        self.clock = clock
        self.fault = fault
        self._last = -1  # step of the last save, not to save twice at an epoch end

    def _save(self):
        if self.guard.bad:  # never save weights that produced a non-finite loss
            return
        step = int(self.model.optimizer.iterations.numpy())
        if step == self._last:
            return
        try:
            inject_write_fault(self.fault, "checkpoint", step, self.manager.directory)
            self.manager.save(checkpoint_number=step)
        except Exception as e:  # pylint: disable=broad-except
            if not is_io_error(e):
                raise
            raise checkpoint_write_error(self.manager.directory, step, e) from e
        if self.clock is not None:
            self.clock.record(step)
        self._last = step

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.every == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        self._save()


class TrainClock:
    """Training seconds summed over the sessions of a resumed run.

    ``path`` (``clock.json`` beside the checkpoints) holds the seconds spent up to the
    last saved step; a resume starts from them (the steps redone after a kill are
    counted again: they were spent)."""

    def __init__(self, path, resumed_step):
        self.path = path
        self.before = 0.0
        if resumed_step and os.path.exists(path):
            saved = rundir.read_json(path)
            if int(saved.get("step", -1)) == int(resumed_step):
                self.before = float(saved["seconds"])
        self.start = time.time()

    def seconds(self):
        """Training seconds so far, earlier sessions included."""
        return self.before + time.time() - self.start

    def record(self, step):
        """Record the seconds up to ``step`` (a checkpoint just saved)."""
        rundir.write_json(self.path, {"step": int(step), "seconds": round(self.seconds(), 1)})


class TrainLog(keras.callbacks.Callback):
    """Appends the running training metrics every ``every`` steps, and each epoch's
    metrics with its tune-split results, to ``train_log.jsonl`` (for curves and for
    choosing the epoch). A resumed run drops the lines past its restored step, and a
    line torn by a failed write (a full disk)."""

    def __init__(self, path, every, start_step):
        super().__init__()
        self.path, self.every = path, int(every)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                lines = [l.rstrip("\n") + "\n" for l in f
                         if rundir.logged_step(l) <= start_step]
            rundir.write_text_atomic(path, "".join(lines))

    def _write(self, record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if step % self.every == 0:
            self._write({"step": step, "kind": "train",
                         **{k: float(v) for k, v in (logs or {}).items()}})

    def on_epoch_end(self, epoch, logs=None):
        self._write({"step": self._step(), "kind": "epoch", "epoch": epoch + 1,
                     **{k: float(v) for k, v in (logs or {}).items()}})


class KeepBestEpoch(keras.callbacks.Callback):
    """After each epoch, keeps the weights of the best tune-split accuracy so far in
    ``checkpoints/best.weights.h5`` (with ``best.json``: the epoch and its accuracy),
    surviving a resume."""

    def __init__(self, classifier, directory):
        super().__init__()
        self.classifier = classifier
        self.weights = rundir.checkpoint_path(directory, BEST_WEIGHTS)
        self.info = rundir.checkpoint_path(directory, BEST_INFO)

    def best(self):
        """``{"epoch", "val_accuracy"}`` of the best epoch so far, or None."""
        if not os.path.exists(self.info):
            return None
        return rundir.read_json(self.info)

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_accuracy")
        if score is None:
            return
        best = self.best()
        if best is None or float(score) > best["val_accuracy"]:
            with rundir.atomic_target(self.weights, ".weights.h5") as tmp:
                self.classifier.save_weights(tmp)
            rundir.write_json(self.info, {"epoch": epoch + 1, "val_accuracy": float(score)})
