"""The whole speed benchmark in one process (`run`): every setting, in the order that keeps
compared settings next to each other.

For each model, precision and batching (random or length-bucketed batches), `run`
times ``steps`` training steps (`virt_tf.benchmarks.timing.train_speed`) after
``warmup`` untimed ones, beside the path before the speed levers (float32, random
batches tokenized every step, two encoder calls) and, with ``mirrored_cpu_devices``,
under a MirroredStrategy over that many logical CPU devices. With ``repeats=N``
every setting is timed N times, the precisions of one model alternating within each
repeat (float32, bfloat16, float16, float32, ...), so that a slow spell of the
machine hits all of them. Then it encodes ``encode_texts`` texts of a GLUE TSV's
``sentence1`` column in each precision through TensorFlow and through OpenVINO, and
with ``st_python`` runs sentence-transformers on the same texts and weights in that
interpreter. The results name the CPU and what ``--precision=auto`` picks on it;
their ``ratios`` are `virt_tf.benchmarks.report.ratios`. Each training row also has its
FLOPs a step, achieved GFLOP/s and fraction of a matmul peak measured first in the same run
(`virt_tf.benchmarks.step_cost`), and on request a profile of its step
(`virt_tf.benchmarks.timing.profile_step`).
"""
import csv
import dataclasses
import os
import platform

import tensorflow as tf

from virt_tf.benchmarks.report import ratios
from virt_tf.benchmarks.step_cost import matmul_peak
from virt_tf.benchmarks.timing import (encode_speed, openvino_encode_speed,
                                       sentence_transformers_speed, train_speed)
from virt_tf.config import preset
from virt_tf.data import tasks
from virt_tf.data.pipeline import TokenizedPairs
from virt_tf.data.tokenization import BertPairPreprocessor
from virt_tf.inference import require_openvino
from virt_tf.modeling.checkpoints import default_checkpoint_dir, read_pretrained
from virt_tf.modeling.encoder import EncoderConfig
from virt_tf.rundir import VOCAB
from virt_tf.training import precision as precision_lib
from virt_tf.training.distribute import get_strategy


def cpu_name():
    """The CPU model and its vector extensions (what bfloat16 speed depends on)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
    except OSError:
        return platform.processor()
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines()
                 if l.startswith("model name")), "?")
    flags_line = next((l for l in info.splitlines() if l.startswith("flags")), "")
    ext = sorted({f for f in flags_line.split() if f.startswith(("avx512", "amx", "avx2"))})
    return f"{name} ({', '.join(ext) or 'no AVX2/AVX-512'})"


def read_first_column(path, column, limit):
    """The first ``limit`` values of ``column`` of a GLUE TSV (quotes kept as text)."""
    with open(path, encoding="utf-8") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [r[column] for _, r in zip(range(limit), rows)]


@dataclasses.dataclass(frozen=True)
class _Workload:
    """What every training setting is timed on: the encoder, its preprocessor, the
    training pairs (and their `Example`s), ``steps`` after ``warmup``, ``batch_size``, and
    the ``measure`` options of every `timing.train_speed` call (FLOPs, profile, the
    embedding options)."""
    config: object
    pretrained: object
    prep: object
    examples: list
    pairs: object
    steps: int
    warmup: int
    batch_size: int
    measure: dict = dataclasses.field(default_factory=dict)

    def train_speed(self, name, precision, bucket, **options):
        """`timing.train_speed` of model ``name`` on this workload."""
        return train_speed(name, precision, bucket, self.pairs, self.config, self.pretrained,
                           self.prep, self.steps, self.warmup, self.batch_size,
                           **self.measure, **options)


def _mirrored_strategy(cpu_devices):
    """A MirroredStrategy over ``cpu_devices`` logical CPU devices (None below 2).

    Call it before TensorFlow places anything: it splits the CPU into devices.
    """
    return get_strategy("mirrored", cpu_devices=cpu_devices) if cpu_devices > 1 else None


def _encoder(encoder_preset, max_seq_length):
    """``(config, pretrained, prep)``: the random encoder of ``encoder_preset`` (pretrained
    None) or the default checkpoint, and the pair preprocessor of its vocabulary."""
    if encoder_preset:
        pretrained, config = None, EncoderConfig.from_dict(preset(encoder_preset))
        vocab = os.path.join(default_checkpoint_dir(), VOCAB)
    else:
        pretrained = read_pretrained()
        config, vocab = pretrained.config, pretrained.vocab_file
    return config, pretrained, BertPairPreprocessor(vocab, True, max_seq_length)


def _training_pairs(task_name, data_dir, prep, max_train_examples):
    """``(examples, pairs)``: the first ``max_train_examples`` training `Example`s of the
    task and their `TokenizedPairs`."""
    task = tasks.get_task(task_name)
    examples = tasks.read_split(task, data_dir, "train")[:max_train_examples]
    return examples, TokenizedPairs.from_examples(examples, prep)


def _new_results(task_name, train_examples, batch_size, repeats, steps, warmup,
                 encoder_preset, jit_compile, encode_batch, stack_texts):
    """The results dict before any timing: the settings, the machine, what
    ``--precision=auto`` picks on it, and empty ``train`` and ``encode`` lists."""
    auto_policy, auto_reason = precision_lib.resolve_precision("auto")
    return {"task": task_name, "train_examples": train_examples, "batch_size": batch_size,
            "repeats": int(repeats),
            "auto_precision": {"policy": auto_policy, "reason": auto_reason},
            "steps": steps, "warmup": warmup, "encoder_preset": encoder_preset,
            "tensorflow": tf.__version__, "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "jit_compile": jit_compile,
            "encode_batch": encode_batch, "stack_texts": stack_texts, "train": [],
            "encode": [], "cpu": cpu_name()}


def _time_before(work, models, log):
    """The training rows of the path before the speed levers, one per model: float32,
    random batches tokenized every step, two encoder calls."""
    rows = []
    for name in models:
        log(f"train {name} before")
        rows.append(work.train_speed(name, "float32", False, legacy=work.examples))
        log(f"  {rows[-1]}")
    return rows


def _time_settings(work, models, precisions, buckets, repeats, jit_compile, stack_texts,
                   log):
    """The training rows of every batching, model and precision, ``repeats`` times.

    Precisions are innermost: the settings compared with each other run next to each
    other, and each repeat visits them all again (alternating repeats).
    """
    rows = []
    for repeat in range(int(repeats)):
        for bucket in buckets:
            for name in models:
                for precision in precisions:
                    log(f"train {name} {precision} buckets={bucket} repeat={repeat + 1}")
                    r = work.train_speed(name, precision, bucket, jit_compile=jit_compile,
                                         stack_texts=stack_texts)
                    rows.append(dict(r, repeat=repeat))
                    log(f"  {rows[-1]}")
    return rows


def _time_distribution(work, models, mirrored, jit_compile, stack_texts, log):
    """The float32 bucketed training rows of ``models`` without a strategy, then under
    ``mirrored``: the tf.distribute overhead on this CPU."""
    rows, precision = [], "float32"
    for name in models:
        for strategy in (None, mirrored):
            log(f"train {name} {precision} buckets=True replicas="
                f"{strategy.num_replicas_in_sync if strategy else 1}")
            r = work.train_speed(name, precision, True, jit_compile=jit_compile,
                                 stack_texts=stack_texts, strategy=strategy)
            rows.append(r)
            log(f"  {r}")
    return rows


def _time_encoding(work, texts, encode_precisions, train_precisions, openvino_precisions,
                   repeats, encode_batch, log):
    """The encoding rows of ``texts``, ``repeats`` times: through TensorFlow in each of
    ``encode_precisions`` (default: ``train_precisions`` without mixed_float16), then
    through OpenVINO in each of ``openvino_precisions``."""
    if encode_precisions is None:
        encode_precisions = [p for p in train_precisions if p != "mixed_float16"]
    rows = []
    for repeat in range(int(repeats)):
        for precision in encode_precisions:
            log(f"encode {len(texts)} texts {precision} repeat={repeat + 1}")
            r = encode_speed(texts, work.config, work.pretrained, work.prep, precision,
                             encode_batch)
            rows.append(dict(r, repeat=repeat))
            log(f"  {rows[-1]}")
        for ov_precision in openvino_precisions:
            log(f"encode {len(texts)} texts openvino {ov_precision} repeat={repeat + 1}")
            r = openvino_encode_speed(texts, work.config, work.pretrained, work.prep,
                                      ov_precision, encode_batch)
            rows.append(dict(r, repeat=repeat))
            log(f"  {rows[-1]}")
    return rows


def _time_sentence_transformers(st_python, st_script, st_backends, st_model, texts,
                                encode_batch, log):
    """sentence-transformers' result on ``texts`` in the interpreter ``st_python``, with
    the weights of ``st_model`` (default: the default checkpoint's folder)."""
    log(f"sentence-transformers in {st_python}: {', '.join(st_backends)}")
    return sentence_transformers_speed(st_python, texts, st_backends, encode_batch,
                                       st_model or default_checkpoint_dir(), st_script)


def _matmul_peaks(precisions, size, log):
    """`step_cost.matmul_peak` of each of ``precisions`` (GFLOP/s at its compute dtype)."""
    peaks = {}
    for precision in precisions:
        peaks[precision] = matmul_peak(precision, size)
        log(f"matmul peak {precision}: {peaks[precision]}")
    return peaks


def _add_peak_fractions(rows, peaks):
    """Each row's matmul peak at its precision and its achieved fraction of it."""
    for r in rows:
        peak = peaks.get(r["precision"])
        if peak and "gflops_per_second" in r:
            r["matmul_peak_gflops_per_second"] = round(peak["gflops_per_second"], 1)
            r["peak_fraction"] = round(r["gflops_per_second"] / peak["gflops_per_second"], 4)


def run(task_name, data_dir, encoder_preset=None, models=("cross", "siamese", "virt"),
        precisions=("float32", "mixed_bfloat16"), buckets=(False, True), steps=30, warmup=5,
        batch_size=28, max_seq_length=128, max_train_examples=10000, encode_file=None,
        encode_texts=2000, encode_batch=32, jit_compile=False, st_python=None,
        st_backends=(), include_before=True, st_model=None, stack_texts=False,
        mirrored_cpu_devices=0, mirrored_models=("virt",), log=print, repeats=1,
        encode_precisions=None, openvino_precisions=(), st_script=None, count_flops=True,
        peak_size=2048, profile_steps=0, freeze_word_embeddings=False,
        embedding_updates="dense"):
    """The whole benchmark; returns the results dict (see `report.format_report`).

    ``st_python`` runs ``st_script`` (``tools/st_encode_speed.py``) in that interpreter.
    ``count_flops`` adds each training row's FLOPs a step, its achieved GFLOP/s and its
    fraction of the ``matmul_peak`` (a ``peak_size`` square matmul, measured first in this
    run at each precision); ``profile_steps`` adds a profile of that many timed steps to
    each row (`timing.profile_step`). ``freeze_word_embeddings`` and ``embedding_updates``
    are those training options, for every setting but the path before the levers.
    """
    if st_python and not st_script:
        raise ValueError("st_python needs st_script (tools/st_encode_speed.py)")
    mirrored = _mirrored_strategy(mirrored_cpu_devices)  # before TensorFlow places anything
    config, pretrained, prep = _encoder(encoder_preset, max_seq_length)
    examples, pairs = _training_pairs(task_name, data_dir, prep, max_train_examples)
    measure = {"count_flops": count_flops, "flops_cache": {}, "profile_steps": profile_steps,
               "freeze_embeddings": freeze_word_embeddings,
               "embedding_updates": embedding_updates}
    work = _Workload(config, pretrained, prep, examples, pairs, steps, warmup, batch_size,
                     measure)
    results = _new_results(task_name, len(pairs), batch_size, repeats, steps, warmup,
                           encoder_preset, jit_compile, encode_batch, stack_texts)
    results.update(freeze_word_embeddings=freeze_word_embeddings,
                   embedding_updates=embedding_updates)
    if count_flops:  # the peaks first: the machine as the settings find it
        trained = set(precisions) | ({"float32"} if include_before else set())
        results["matmul_peak"] = _matmul_peaks(sorted(trained), peak_size, log)
    if openvino_precisions and encode_texts and encode_file:  # fail before hours of timing
        require_openvino()
    if include_before:
        results["train"] += _time_before(work, models, log)
    results["train"] += _time_settings(work, models, precisions, buckets, repeats,
                                       jit_compile, stack_texts, log)
    if mirrored is not None and mirrored_models:
        results["distribution"] = _time_distribution(work, mirrored_models, mirrored,
                                                     jit_compile, stack_texts, log)
    if encode_texts and encode_file:
        texts = read_first_column(encode_file, "sentence1", encode_texts)
        results["encode"] += _time_encoding(work, texts, encode_precisions, precisions,
                                            openvino_precisions, repeats, encode_batch, log)
        if st_python:
            results["sentence_transformers"] = _time_sentence_transformers(
                st_python, st_script, st_backends, st_model, texts, encode_batch, log)
    if count_flops:
        _add_peak_fractions(results["train"] + results.get("distribution", []),
                            results["matmul_peak"])
    results["ratios"] = ratios(results)
    return results
