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
their ``ratios`` are `virt_tf.benchmarks.report.ratios`.
"""
import os
import platform

from virt_tf.benchmarks.report import ratios
from virt_tf.benchmarks.timing import (encode_speed, openvino_encode_speed,
                                       sentence_transformers_speed, train_speed)


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
    import csv  # pylint: disable=import-outside-toplevel
    with open(path, encoding="utf-8") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [r[column] for _, r in zip(range(limit), rows)]


def run(task_name, data_dir, encoder_preset=None, models=("cross", "siamese", "virt"),
        precisions=("float32", "mixed_bfloat16"), buckets=(False, True), steps=30, warmup=5,
        batch_size=28, max_seq_length=128, max_train_examples=10000, encode_file=None,
        encode_texts=2000, encode_batch=32, jit_compile=False, st_python=None,
        st_backends=(), include_before=True, st_model=None, stack_texts=False,
        mirrored_cpu_devices=0, mirrored_models=("virt",), log=print, repeats=1,
        encode_precisions=None, openvino_precisions=(), st_script=None):
    """The whole benchmark; returns the results dict (see `report.format_report`).

    ``st_python`` runs ``st_script`` (``tools/st_encode_speed.py``) in that interpreter.
    """
    if st_python and not st_script:
        raise ValueError("st_python needs st_script (tools/st_encode_speed.py)")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from virt_tf.distribute import get_strategy  # pylint: disable=import-outside-toplevel
    mirrored = (get_strategy("mirrored", cpu_devices=mirrored_cpu_devices)
                if mirrored_cpu_devices > 1 else None)  # before TensorFlow places anything
    from virt_tf.config import preset  # pylint: disable=import-outside-toplevel
    from virt_tf.data import tasks  # pylint: disable=import-outside-toplevel
    from virt_tf.data.pipeline import TokenizedPairs  # pylint: disable=import-outside-toplevel
    from virt_tf.data.tokenization import BertPairPreprocessor  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.checkpoints import default_checkpoint_dir, read_pretrained  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.encoder import EncoderConfig  # pylint: disable=import-outside-toplevel

    if encoder_preset:
        pretrained, config = None, EncoderConfig.from_dict(preset(encoder_preset))
        vocab = os.path.join(default_checkpoint_dir(), "vocab.txt")
    else:
        pretrained = read_pretrained()
        config, vocab = pretrained.config, pretrained.vocab_file
    prep = BertPairPreprocessor(vocab, True, max_seq_length)
    task = tasks.get_task(task_name)
    examples = tasks.read_split(task, data_dir, "train")[:max_train_examples]
    pairs = TokenizedPairs.from_examples(examples, prep)
    from virt_tf import precision as precision_lib  # pylint: disable=import-outside-toplevel
    auto_policy, auto_reason = precision_lib.resolve_precision("auto")
    if openvino_precisions and encode_texts and encode_file:  # fail before hours of timing
        from virt_tf.openvino_backend import require_openvino  # pylint: disable=import-outside-toplevel
        require_openvino()
    results = {"task": task_name, "train_examples": len(pairs), "batch_size": batch_size,
               "repeats": int(repeats),
               "auto_precision": {"policy": auto_policy, "reason": auto_reason},
               "steps": steps, "warmup": warmup, "encoder_preset": encoder_preset,
               "tensorflow": tf.__version__, "cpu_count": os.cpu_count(),
               "machine": platform.machine(), "jit_compile": jit_compile,
               "encode_batch": encode_batch, "stack_texts": stack_texts, "train": [],
               "encode": [], "cpu": cpu_name()}
    if include_before:
        for name in models:
            log(f"train {name} before")
            results["train"].append(train_speed(name, "float32", False, pairs, config,
                                                pretrained, prep, steps, warmup, batch_size,
                                                legacy=examples))
            log(f"  {results['train'][-1]}")
    # precisions innermost: the settings compared with each other run next to each other,
    # and each repeat visits them all again (alternating repeats)
    for repeat in range(int(repeats)):
        for bucket in buckets:
            for name in models:
                for precision in precisions:
                    log(f"train {name} {precision} buckets={bucket} repeat={repeat + 1}")
                    r = train_speed(name, precision, bucket, pairs, config, pretrained, prep,
                                    steps, warmup, batch_size, jit_compile,
                                    stack_texts=stack_texts)
                    results["train"].append(dict(r, repeat=repeat))
                    log(f"  {results['train'][-1]}")
    if mirrored is not None:
        precision = "float32"
        for name in mirrored_models:
            for strategy in (None, mirrored):
                log(f"train {name} {precision} buckets=True replicas="
                    f"{strategy.num_replicas_in_sync if strategy else 1}")
                r = train_speed(name, precision, True, pairs, config, pretrained, prep, steps,
                                warmup, batch_size, jit_compile, stack_texts=stack_texts,
                                strategy=strategy)
                results.setdefault("distribution", []).append(r)
                log(f"  {r}")
    if encode_texts and encode_file:
        texts = read_first_column(encode_file, "sentence1", encode_texts)
        for repeat in range(int(repeats)):
            for precision in (encode_precisions if encode_precisions is not None else
                              [p for p in precisions if p != "mixed_float16"]):
                log(f"encode {len(texts)} texts {precision} repeat={repeat + 1}")
                r = encode_speed(texts, config, pretrained, prep, precision, encode_batch)
                results["encode"].append(dict(r, repeat=repeat))
                log(f"  {results['encode'][-1]}")
            for ov_precision in openvino_precisions:
                log(f"encode {len(texts)} texts openvino {ov_precision} repeat={repeat + 1}")
                r = openvino_encode_speed(texts, config, pretrained, prep, ov_precision,
                                          encode_batch)
                results["encode"].append(dict(r, repeat=repeat))
                log(f"  {results['encode'][-1]}")
        if st_python:
            log(f"sentence-transformers in {st_python}: {', '.join(st_backends)}")
            results["sentence_transformers"] = sentence_transformers_speed(
                st_python, texts, st_backends, encode_batch, st_model or default_checkpoint_dir(),
                st_script)
    results["ratios"] = ratios(results)
    return results
