"""The measured cases of the speed benchmark: a training step, offline encoding.

* `train_speed`: seconds per step of the real training pipeline
  (`virt_tf.training.stage`'s stream, `VirtModel`, Adam) after untimed warm-up steps,
  with the padded share of the batches; ``legacy=`` times the path before the
  speed levers (`legacy_stream`), ``strategy=`` under a `tf.distribute` strategy;
  ``count_flops=`` adds the timed steps' training FLOPs and the achieved GFLOP/s
  (`virt_tf.benchmarks.step_cost`), ``profile_steps=`` a profile of that many of them
  (`profile_step`);
* `profile_step`: where a step's time goes (`virt_tf.benchmarks.step_profile`): op self
  times of a few traced steps by op type and by part of the step, and the split timing;
* `encode_speed`, `openvino_encode_speed`: texts per second of
  `virt_tf.inference.state_cache.encode_texts` through `ModelServer.encode` or through
  OpenVINO (`virt_tf.inference.openvino`);
* `sentence_transformers_speed`: sentence-transformers' encoding of the same
  texts, run by a script (``tools/st_encode_speed.py``) in another interpreter.

Every time is wall-clock (`time.perf_counter`) and stored to `significant` digits.
"""
import json
import os
import statistics
import subprocess
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from virt_tf.benchmarks import step_profile
from virt_tf.benchmarks.step_cost import FLOPS_COUNTED, batch_flops
from virt_tf.config import load_config
from virt_tf.data.pipeline import (TokenizedPairs, batch_plan, epoch_order, padding_share,
                                   training_stream)
from virt_tf.inference.openvino import encoder_for_classifier
from virt_tf.inference.serving import ModelServer
from virt_tf.inference.state_cache import encode_texts
from virt_tf.losses import needs_teacher, objective_from_config
from virt_tf.modeling.checkpoints import assign_weights
from virt_tf.models.registry import build_classifier, build_now
from virt_tf.models.virt import VirtModel
from virt_tf.training.distribute import distributed_stream
from virt_tf.training.optimization import create_optimizer, freeze_word_embeddings
from virt_tf.training.precision import precision_scope, wrap_optimizer


def significant(x, digits=5):
    """`x` to `digits` significant digits: times of a few milliseconds keep their precision
    (a fixed number of decimals would not), so ratios of the stored numbers stay exact."""
    return float(f"{x:.{digits}g}")


# ------------------------------------------------------------------------------ training
class StepTimer(keras.callbacks.Callback):
    """Keras callback recording each train step's wall time (seconds, in ``times``)."""

    def __init__(self):
        super().__init__()
        self.times, self._t = [], None

    def on_train_batch_begin(self, batch, logs=None):
        """Start the clock of step ``batch``."""
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        """Record the seconds of step ``batch``."""
        self.times.append(time.perf_counter() - self._t)


def legacy_stream(examples, preprocessor, batch_size, epochs, seed):
    """The training stream as it was before this benchmark's levers: seeded random
    batches of strings, tokenized in every batch of every epoch."""
    a = np.array([e.text_a for e in examples])
    b = np.array([e.text_b for e in examples])
    y = np.array([e.label for e in examples], np.int32)
    order = epoch_order(len(examples), epochs, seed)
    ds = tf.data.Dataset.from_tensor_slices((a[order], b[order], y[order])).batch(batch_size)
    ds = ds.map(lambda ta, tb, lab: (preprocessor(ta, tb), lab),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_speed(model_name, precision, bucket, examples, encoder_config, pretrained,
                preprocessor, steps, warmup, batch_size, jit_compile=False, legacy=None,
                stack_texts=False, strategy=None, count_flops=False, flops_cache=None,
                profile_steps=0, freeze_embeddings=False, embedding_updates="dense"):
    """Seconds per step of ``steps`` timed train steps of ``model_name`` (after ``warmup``).

    ``legacy`` (the training `Example`s) measures the path before the speed levers:
    float32, random batches tokenized every batch, x and y in two encoder calls.
    ``count_flops`` (one device only) adds ``train_flops_per_step`` (the mean over the
    timed steps) and ``gflops_per_second`` (their FLOPs over their seconds), counted once a
    batch shape and model (``flops_cache``, a dict, keeps the counts across calls: they do
    not depend on the precision); ``profile_steps`` adds ``profile`` (`profile_step` of the
    first timed batches). ``freeze_embeddings`` and ``embedding_updates`` are the training
    options `freeze_word_embeddings` and `embedding_updates` (the new path only).
    """
    keras.utils.set_random_seed(0)
    pairs = examples if isinstance(examples, TokenizedPairs) else \
        TokenizedPairs.from_examples(examples, preprocessor)
    if legacy is not None:
        precision, bucket = "float32", False
    num_labels = int(pairs.labels.max()) + 1
    total = warmup + steps
    strategy = strategy or tf.distribute.get_strategy()
    with precision_scope(precision), strategy.scope():
        def build(name):
            """A new classifier ``name``, with the pretrained weights when given."""
            clf = build_now(build_classifier(name, encoder_config, num_labels, {}))
            if pretrained is not None:
                assign_weights(clf.encoder, pretrained.weights, pretrained.source)
            return clf
        student = build(model_name)
        if freeze_embeddings and legacy is None:
            freeze_word_embeddings(student)
        if legacy is not None:
            embedding_updates = "dense"
        if hasattr(student, "stack_texts"):
            student.stack_texts = bool(stack_texts) and legacy is None
        # the objective the model's config implies (VIRT: task + alpha 1 * L_virt, a teacher)
        terms = objective_from_config(load_config("mnli", model_name,
                                                  overrides={"virt_alpha": None}))
        teacher = build("cross") if needs_teacher(terms) else None
        model = VirtModel(student, teacher, terms=terms)
        # float16: dynamic loss scaling, as training runs it
        model.compile(optimizer=wrap_optimizer(create_optimizer(
            5e-5, 10 * total, embedding_updates=embedding_updates), precision),
                      jit_compile=jit_compile)
    epochs = max(1, -(-total * batch_size // len(pairs)))
    key = "pair" if "pair" in student.input_packings else "texts"  # as training does
    plan = batch_plan(pairs.sort_lengths(key), batch_size, epochs, 0, bucket)[:total]
    if legacy is not None:
        stream = legacy_stream(legacy, preprocessor, batch_size, epochs, 0)
    elif strategy.num_replicas_in_sync > 1:
        stream = distributed_stream(strategy, pairs, preprocessor, plan)
    else:
        stream = training_stream(pairs, preprocessor, batch_size, epochs, 0, bucket=bucket,
                                 bucket_key=key)
    timer = StepTimer()
    model.fit(stream if strategy.num_replicas_in_sync > 1 else stream.take(total), epochs=1,
              steps_per_epoch=total, verbose=0, callbacks=[timer])
    timed = timer.times[warmup:]
    mean = statistics.fmean(timed)
    row = {"model": model_name, "precision": precision, "buckets": bool(bucket),
            "setting": "before" if legacy is not None else "new",
            "replicas": strategy.num_replicas_in_sync,
            "seconds_per_step": significant(mean),
            "median_seconds_per_step": significant(statistics.median(timed)),
            "pairs_per_second": significant(batch_size / mean),
            "padding_share": round(padding_share(pairs.lengths, plan[warmup:]), 4),
            "padding_share_x": round(padding_share(pairs.lengths_a, plan[warmup:]), 4),
            "padding_share_y": round(padding_share(pairs.lengths_b, plan[warmup:]), 4),
            "mean_pair_positions": round(float(np.mean(
                pairs.lengths[plan[warmup:]].max(axis=1))), 1),
            "mean_x_plus_y_positions": round(float(np.mean(
                pairs.lengths_a[plan[warmup:]].max(axis=1)
                + pairs.lengths_b[plan[warmup:]].max(axis=1))), 1),
            "steps": len(timed)}
    if legacy is None:
        row.update(freeze_word_embeddings=bool(freeze_embeddings),
                   embedding_updates=embedding_updates)
    one_device = strategy.num_replicas_in_sync == 1
    if (count_flops or profile_steps) and one_device:
        batches = list(stream.take(total))[warmup:]  # the timed batches again (seeded)
        if count_flops:
            stacked = bool(getattr(student, "stack_texts", False))
            flops = batch_flops(model, batches, flops_cache, (model_name, stacked))
            row.update(train_flops_per_step=significant(statistics.fmean(flops)),
                       gflops_per_second=significant(sum(flops) / sum(timed) / 1e9),
                       flops_counted=FLOPS_COUNTED)
        if profile_steps:
            row["profile"] = profile_step(model, batches[:profile_steps], stream.element_spec)
    return row


def profile_step(model, batches, element_spec, repeats=3):
    """Where the time of ``model``'s (a compiled `VirtModel`) training step goes, on
    ``batches`` (a list of ``(features, labels)`` of a dataset of ``element_spec``, the one
    ``model`` was fitted on: no new trace of its step): the steps traced by `tf.profiler`
    (one `model.fit` over them), op self time by part of the step and by op type
    (`step_profile.phase_table`, `step_profile.op_table`), the split timing
    (`step_profile.split_timing`, median of ``repeats`` passes) and all of it as markdown.
    Runs the steps: the model's weights change."""
    steps = len(batches)
    stream = tf.data.Dataset.from_generator(lambda: iter(batches),
                                            output_signature=element_spec)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as folder:
        ops = step_profile.trace_ops(lambda: model.fit(
            stream, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer]), folder)
    scopes = step_profile.optimizer_scopes(model.optimizer)
    profile = {"steps": steps,
               "wall_ms_per_step": 1000 * statistics.fmean(timer.times),
               "op_ms_per_step": 1000 * sum(op.seconds for op in ops) / steps,
               "optimizer_scopes": sorted(scopes),
               "phases": step_profile.phase_table(ops, steps, scopes),
               "ops": step_profile.op_table(ops, steps),
               "split": step_profile.split_timing(model, batches, repeats)}
    profile["markdown"] = step_profile.to_markdown(profile)
    return profile


# ------------------------------------------------------------------------------ encoding
def encode_speed(texts, encoder_config, pretrained, preprocessor, precision, batch_size):
    """Texts per second of `encode_texts` through `ModelServer.encode` (sorted batches)."""
    with precision_scope(precision):
        clf = build_now(build_classifier("siamese", encoder_config, 2, {}))
        if pretrained is not None:
            assign_weights(clf.encoder, pretrained.weights, pretrained.source)
        server = ModelServer(clf, "siamese")
    encode_texts(server.encode, preprocessor, texts[:batch_size * 2], batch_size)  # warm-up
    start = time.perf_counter()
    states, _ = encode_texts(server.encode, preprocessor, texts, batch_size)
    seconds = time.perf_counter() - start
    return {"precision": precision, "backend": "tensorflow", "texts": len(texts),
            "seconds": significant(seconds),
            "texts_per_second": significant(len(texts) / seconds),
            "states_dtype": str(states.dtype)}


def openvino_encode_speed(texts, encoder_config, pretrained, preprocessor, inference_precision,
                          batch_size):
    """Texts per second of `encode_texts` through OpenVINO: the Siamese model's ``encode``
    signature saved as a SavedModel and converted by OpenVINO (`virt_tf.inference.openvino`),
    the same weights and texts as `encode_speed`."""
    clf = build_now(build_classifier("siamese", encoder_config, 2, {}))
    if pretrained is not None:
        assign_weights(clf.encoder, pretrained.weights, pretrained.source)
    encoder = encoder_for_classifier(clf, "siamese", inference_precision)
    encode_texts(encoder, preprocessor, texts[:batch_size * 2], batch_size)  # warm-up
    start = time.perf_counter()
    states, _ = encode_texts(encoder, preprocessor, texts, batch_size)
    seconds = time.perf_counter() - start
    return {"precision": f"openvino {inference_precision}", "backend": "openvino",
            "inference_precision": str(encoder.actual_precision()), "texts": len(texts),
            "seconds": significant(seconds), "texts_per_second": significant(len(texts) / seconds),
            "states_dtype": str(states.dtype)}


def sentence_transformers_speed(python, texts, backends, batch_size, model_dir, script):
    """Run ``script`` (tools/st_encode_speed.py) in the interpreter ``python``; its JSON result.

    The script reads the texts from the JSON file ``--texts`` and prints its result as the
    last line of its output; Hugging Face Hub stays offline."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "texts.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(texts, f)
        cmd = [python, script, "--texts", path, "--model", model_dir, "--batch_size",
               str(batch_size), "--backends", ",".join(backends)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False,
                              env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
