"""Training and encoding speed on real data, all in one process (ratios are same-run).

For each model (cross, siamese, virt by default), precision (float32,
mixed_bfloat16) and batching (random or length-bucketed batches), trains
``--steps`` steps of the real training pipeline (`virt_tf.training`'s stream,
`VirtModel`, Adam) on the task's training pairs after ``--warmup`` untimed
steps, and reports seconds per step, pairs per second and the padded share of
the pair packings' positions. The VIRT-encoder runs with its teacher and
alpha 1, as in training. Then it encodes ``--encode_texts`` real texts one by
one through the offline ``encode`` signature (`virt_tf.encode.encode_texts`,
batches sorted by length) in each precision, in texts per second.

It prints the ratios the speed targets are stated in: VIRT / Siamese and
Siamese / cross step time, bfloat16 / float32 and float16 / float32 throughput,
and new / before for every number also found in ``--baseline_json`` (an earlier
``--output``). With ``--repeats=N`` every setting is timed N times, the
precisions of one model alternating within each repeat (float32, bfloat16,
float16, float32, ...), so that a slow spell of the machine hits all of them;
the ratios are of the medians, and the per-repeat ratios show the spread.
``--openvino_precisions`` adds our encoding through OpenVINO
(`virt_tf.openvino_backend`, the exported ``encode`` signature converted by
OpenVINO) at those inference precisions. With ``--sentence_transformers_python=PATH``
(or ``$VIRT_TF_ST_PYTHON``) it also runs sentence-transformers' encoding of the
same texts and weights in that interpreter (``tools/st_encode_speed.py``;
backends torch, onnx, openvino) and prints our texts/s over theirs, our OpenVINO
over theirs in particular. The report names the CPU and what ``--precision=auto``
picks on it.

    python tools/benchmark_speed.py --output=speed.json
    python tools/benchmark_speed.py --encoder_preset=tiny --steps=3 --warmup=1   # seconds

Weights: the default MiniLM-L6 checkpoint, or random ones with ``--encoder_preset``;
speed does not depend on them. Timings are wall-clock on whatever else this
machine is doing: compare only numbers from one run.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from virt_tf import paths  # noqa: E402
from virt_tf import cli  # noqa: E402
from virt_tf.errors import ConfigError  # noqa: E402
from virt_tf.paths import PathFlag  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_DATA = os.environ.get("VIRT_TF_DATA", os.path.join(os.path.dirname(REPO), "shared",
                                                           "data"))


def define_flags():
    flags.DEFINE_string("task", "mnli", "Task of the training pairs.")
    flags.DEFINE_string("data_dir", os.path.join(DEFAULT_DATA, "bench", "mnli"),
                        "Task files of --task.")
    flags.DEFINE_string("encode_file", os.path.join(DEFAULT_DATA, "rte", "train.tsv"),
                        "GLUE TSV whose sentence1 column is encoded (RTE premises).")
    flags.DEFINE_integer("encode_texts", 2000, "Texts to encode (0: skip encoding).")
    flags.DEFINE_integer("encode_batch", 32, "Encoding batch size.")
    flags.DEFINE_string("encoder_preset", None, "Random weights of a preset (tiny: a quick "
                        "check) instead of the MiniLM-L6 checkpoint.")
    flags.DEFINE_list("models", ["cross", "siamese", "virt"], "Models to train.")
    flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16", "mixed_float16"],
                      "Compute precisions of training.")
    flags.DEFINE_list("encode_precisions", None, "Compute precisions of TensorFlow encoding "
                      "(default: --precisions without mixed_float16, which a CPU emulates).")
    flags.DEFINE_list("openvino_precisions", ["f32", "bf16"], "Our encoding through OpenVINO "
                      "at these inference precisions (empty: none; needs openvino).")
    flags.DEFINE_integer("repeats", 1, "Time every setting this many times, precisions "
                         "alternating within a repeat; ratios of the medians.")
    flags.DEFINE_list("buckets", ["false", "true"], "Length-bucketed batches: false, true.")
    flags.DEFINE_integer("steps", 30, "Timed training steps per setting.")
    flags.DEFINE_integer("warmup", 5, "Untimed steps first (tracing, caches).")
    flags.DEFINE_integer("batch_size", 28, "Pairs a batch (paper: 28).")
    flags.DEFINE_integer("max_seq_length", 128, "Pair budget in word pieces.")
    flags.DEFINE_integer("max_train_examples", 10000, "Training pairs the batches come from.")
    flags.DEFINE_bool("jit_compile", False, "XLA for the train step.")
    flags.DEFINE_bool("stack_texts", False, "Siamese models: x and y in one encoder call "
                      "(stacked along the batch) in the new settings.")
    flags.DEFINE_integer("mirrored_cpu_devices", 0, "Also time --mirrored_models under a "
                         "MirroredStrategy over this many logical CPU devices (same process, "
                         "same global batch): the tf.distribute overhead on this CPU.")
    flags.DEFINE_list("mirrored_models", ["virt"], "Models for --mirrored_cpu_devices.")
    flags.DEFINE_bool("include_before", True, "Also time the path before the speed levers "
                      "(float32, random batches tokenized every step, two encoder calls).")
    flags.DEFINE_string("baseline_json", None, "An earlier --output: print new / before.")
    flags.DEFINE_string("sentence_transformers_python", os.environ.get("VIRT_TF_ST_PYTHON"),
                        "Interpreter with sentence-transformers (torch, onnx, openvino) for "
                        "the comparison (default: $VIRT_TF_ST_PYTHON).")
    flags.DEFINE_list("st_backends", ["torch", "onnx", "openvino"], "Their backends to run.")
    flags.DEFINE_string("st_model", None, "sentence-transformers folder of the same weights "
                        "(default: the MiniLM-L6 package's; a writable copy avoids re-exports).")
    flags.DEFINE_string("output", None, "Write the results as JSON here.")


# ------------------------------------------------------------------------------ training
class StepTimer:
    """Keras callback recording each train step's wall time."""

    def __new__(cls):
        import keras  # pylint: disable=import-outside-toplevel

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times, self._t = [], None

            def on_train_batch_begin(self, batch, logs=None):
                self._t = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter() - self._t)
        return _Timer()


def significant(x, digits=5):
    """`x` to `digits` significant digits: times of a few milliseconds keep their precision
    (a fixed number of decimals would not), so ratios of the stored numbers stay exact."""
    return float(f"{x:.{digits}g}")


def legacy_stream(examples, preprocessor, batch_size, epochs, seed):
    """The training stream as it was before this benchmark's levers: seeded random
    batches of strings, tokenized in every batch of every epoch."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from virt_tf.data.pipeline import epoch_order  # pylint: disable=import-outside-toplevel

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
                stack_texts=False, strategy=None):
    """Seconds per step of ``steps`` timed train steps of ``model_name`` (after ``warmup``).

    ``legacy`` (the training `Example`s) measures the path before the speed levers:
    float32, random batches tokenized every batch, x and y in two encoder calls.
    """
    import keras  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from virt_tf.data.pipeline import (TokenizedPairs, batch_plan, padding_share,  # pylint: disable=import-outside-toplevel
                                       training_stream)
    from virt_tf.config import load_config  # pylint: disable=import-outside-toplevel
    from virt_tf.losses import needs_teacher, objective_from_config  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.checkpoints import assign_weights  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import build_classifier, build_now  # pylint: disable=import-outside-toplevel
    from virt_tf.models.virt import VirtModel  # pylint: disable=import-outside-toplevel
    from virt_tf.optimization import create_optimizer  # pylint: disable=import-outside-toplevel
    from virt_tf.precision import wrap_optimizer  # pylint: disable=import-outside-toplevel
    from virt_tf.training import precision_scope  # pylint: disable=import-outside-toplevel

    keras.utils.set_random_seed(0)
    pairs = examples if isinstance(examples, TokenizedPairs) else \
        TokenizedPairs.from_examples(examples, preprocessor)
    if legacy is not None:
        precision, bucket = "float32", False
    num_labels = int(pairs.labels.max()) + 1
    total = warmup + steps
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    strategy = strategy or tf.distribute.get_strategy()
    with precision_scope(precision), strategy.scope():
        def build(name):
            clf = build_now(build_classifier(name, encoder_config, num_labels, {}))
            if pretrained is not None:
                assign_weights(clf.encoder, pretrained.weights, pretrained.source)
            return clf
        student = build(model_name)
        if hasattr(student, "stack_texts"):
            student.stack_texts = bool(stack_texts) and legacy is None
        # the objective the model's config implies (VIRT: task + alpha 1 * L_virt, a teacher)
        terms = objective_from_config(load_config("mnli", model_name,
                                                  overrides={"virt_alpha": None}))
        teacher = build("cross") if needs_teacher(terms) else None
        model = VirtModel(student, teacher, terms=terms)
        # float16: dynamic loss scaling, as training runs it
        model.compile(optimizer=wrap_optimizer(create_optimizer(5e-5, 10 * total), precision),
                      jit_compile=jit_compile)
    epochs = max(1, -(-total * batch_size // len(pairs)))
    key = "pair" if "pair" in student.input_packings else "texts"  # as training does
    plan = batch_plan(pairs.sort_lengths(key), batch_size, epochs, 0, bucket)[:total]
    if legacy is not None:
        stream = legacy_stream(legacy, preprocessor, batch_size, epochs, 0)
    elif strategy.num_replicas_in_sync > 1:
        from virt_tf.distribute import distributed_stream  # pylint: disable=import-outside-toplevel
        stream = distributed_stream(strategy, pairs, preprocessor, plan)
    else:
        stream = training_stream(pairs, preprocessor, batch_size, epochs, 0, bucket=bucket,
                                 bucket_key=key)
    timer = StepTimer()
    model.fit(stream if strategy.num_replicas_in_sync > 1 else stream.take(total), epochs=1,
              steps_per_epoch=total, verbose=0, callbacks=[timer])
    timed = timer.times[warmup:]
    mean = statistics.fmean(timed)
    return {"model": model_name, "precision": precision, "buckets": bool(bucket),
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


# ------------------------------------------------------------------------------ encoding
def encode_speed(texts, encoder_config, pretrained, preprocessor, precision, batch_size):
    """Texts per second of `encode_texts` through `ModelServer.encode` (sorted batches)."""
    from virt_tf.encode import encode_texts  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.checkpoints import assign_weights  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import build_classifier, build_now  # pylint: disable=import-outside-toplevel
    from virt_tf.serving import ModelServer  # pylint: disable=import-outside-toplevel
    from virt_tf.training import precision_scope  # pylint: disable=import-outside-toplevel

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
    signature saved as a SavedModel and converted by OpenVINO (`virt_tf.openvino_backend`),
    the same weights and texts as `encode_speed`."""
    from virt_tf.encode import encode_texts  # pylint: disable=import-outside-toplevel
    from virt_tf.modeling.checkpoints import assign_weights  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import build_classifier, build_now  # pylint: disable=import-outside-toplevel
    from virt_tf.openvino_backend import encoder_for_classifier  # pylint: disable=import-outside-toplevel

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


def sentence_transformers_speed(python, texts, backends, batch_size, model_dir):
    """Run tools/st_encode_speed.py in another interpreter; its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "texts.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(texts, f)
        cmd = [python, os.path.join(REPO, "tools", "st_encode_speed.py"), "--texts", path,
               "--model", model_dir, "--batch_size", str(batch_size),
               "--backends", ",".join(backends)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False,
                              env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------- report
def _median_records(records, key):
    """One record a ``key``: the median of its repeats' times (a single repeat: itself)."""
    groups = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    out = {}
    for k, group in groups.items():
        if len(group) == 1:
            out[k] = group[0]
            continue
        merged = dict(group[0])
        for field in ("seconds_per_step", "pairs_per_second", "texts_per_second", "seconds"):
            if field in merged:
                merged[field] = statistics.median(g[field] for g in group)
        merged["repeats"] = len(group)
        out[k] = merged
    return out


def ratios(results):
    """The ratios of the speed targets, from one run's results (medians over repeats)."""
    out = {}
    records = results.get("train", [])
    train = _median_records([r for r in records if r["setting"] == "new"],
                            lambda r: (r["model"], r["precision"], r["buckets"]))
    before = _median_records([r for r in records if r["setting"] == "before"],
                             lambda r: r["model"])
    for (model, precision, bucket), r in train.items():
        tag = f"{precision}{', buckets' if bucket else ''}"
        siamese = train.get(("siamese", precision, bucket))
        cross = train.get(("cross", precision, bucket))
        if model == "virt" and siamese:
            out[f"virt / siamese step ({tag})"] = r["seconds_per_step"] / siamese[
                "seconds_per_step"]
        if model == "siamese" and cross:
            out[f"siamese / cross step ({tag})"] = r["seconds_per_step"] / cross[
                "seconds_per_step"]
        base = train.get((model, "float32", False))
        if base and (precision, bucket) != ("float32", False):
            out[f"{model}: pairs/s {tag} / float32 random batches"] = \
                r["pairs_per_second"] / base["pairs_per_second"]
        same_batches = train.get((model, "float32", bucket))
        if same_batches and precision != "float32" and bucket:
            out[f"{model}: pairs/s {precision} / float32 (buckets)"] = \
                r["pairs_per_second"] / same_batches["pairs_per_second"]
        if model in before:
            out[f"{model}: pairs/s {tag} / before"] = \
                r["pairs_per_second"] / before[model]["pairs_per_second"]
    dist = {(r["model"], r["replicas"]): r for r in results.get("distribution", [])}
    for (model, replicas), r in dist.items():
        one = dist.get((model, 1))
        if replicas > 1 and one:
            out[f"{model}: step with {replicas} mirrored CPU devices / one device"] = \
                r["seconds_per_step"] / one["seconds_per_step"]
    enc = _median_records(results.get("encode", []), lambda r: r["precision"])
    if "float32" in enc and "mixed_bfloat16" in enc:
        out["encode: bfloat16 / float32 texts/s"] = (enc["mixed_bfloat16"]["texts_per_second"]
                                                    / enc["float32"]["texts_per_second"])
    for name, r in enc.items():
        if r.get("backend") == "openvino" and "float32" in enc:
            out[f"encode: ours {name} / ours TensorFlow float32"] = (
                r["texts_per_second"] / enc["float32"]["texts_per_second"])
    st = results.get("sentence_transformers", {}).get("backends", {})
    best = max(enc.values(), key=lambda r: r["texts_per_second"]) if enc else None
    for backend, r in st.items():
        if best and r.get("texts_per_second"):
            out[f"encode: ours ({best['precision']}) / sentence-transformers {backend}"] = \
                best["texts_per_second"] / r["texts_per_second"]
    if st.get("openvino", {}).get("texts_per_second"):
        for name, r in enc.items():
            if r.get("backend") == "openvino":
                out[f"encode: ours {name} / sentence-transformers openvino"] = (
                    r["texts_per_second"] / st["openvino"]["texts_per_second"])
    out = {k: round(v, 3) for k, v in out.items()}
    out.update(per_repeat_ratios(results))
    return out


def per_repeat_ratios(results):
    """pairs/s of each reduced precision over float32 in each repeat (same model, bucketed
    batches): the spread that one-off runs hide. Lists, in repeat order."""
    by_repeat = {}
    for r in results.get("train", []):
        if r["setting"] == "new" and "repeat" in r:
            by_repeat[(r["model"], r["precision"], r["buckets"], r["repeat"])] = r
    if len({k[3] for k in by_repeat}) < 2:
        return {}
    out = {}
    for (model, precision, bucket, repeat), r in sorted(by_repeat.items()):
        base = by_repeat.get((model, "float32", bucket, repeat))
        if precision != "float32" and base:
            key = (f"{model}: pairs/s {precision} / float32 "
                   f"({'buckets' if bucket else 'random'}) per repeat")
            out.setdefault(key, []).append(round(r["pairs_per_second"]
                                                 / base["pairs_per_second"], 3))
    return out


def versus_baseline(results, baseline):
    """new / before for every training setting and encode precision found in both."""
    out = {}
    key = lambda r: (r["model"], r["precision"], r["buckets"], r.get("setting", "new"))  # noqa: E731
    before = {key(r): r for r in baseline.get("train", [])}
    for r in results.get("train", []):
        b = before.get(key(r))
        if b:
            out[f"{r['model']} {r['precision']} buckets={r['buckets']} ({r['setting']}): "
                "pairs/s new / before"] = round(r["pairs_per_second"] / b["pairs_per_second"], 3)
    enc_before = {r["precision"]: r for r in baseline.get("encode", [])}
    for r in results.get("encode", []):
        b = enc_before.get(r["precision"])
        if b:
            out[f"encode {r['precision']}: texts/s new / before"] = round(
                r["texts_per_second"] / b["texts_per_second"], 3)
    return out


def format_report(results):
    auto = results.get("auto_precision")
    lines = [f"training: batch {results['batch_size']}, {results['steps']} timed steps after "
             f"{results['warmup']}, {results['task']} pairs; {results['cpu_count']} CPU(s): "
             f"{results.get('cpu', '?')}; TF {results['tensorflow']}"
             + (f"; {results['repeats']} alternating repeats" if results.get("repeats", 1) > 1
                else "")]
    if auto:
        lines.append(f"--precision=auto picks {auto['policy']} here: {auto['reason']}")
    lines += ["",
             f"{'model':<9}{'setting':<8}{'precision':<16}{'batches':<10}{'s/step':>8}"
             f"{'pairs/s':>9}{'padding':>9}{'positions':>11}"]
    for r in results.get("train", []):
        setting = r["setting"] + (f"#{r['repeat'] + 1}" if results.get("repeats", 1) > 1 else "")
        lines.append(f"{r['model']:<9}{setting:<8}{r['precision']:<16}"
                     f"{'bucketed' if r['buckets'] else 'random':<10}"
                     f"{r['seconds_per_step']:>8.3f}{r['pairs_per_second']:>9.1f}"
                     f"{100 * r['padding_share']:>8.1f}%{r['mean_pair_positions']:>11.1f}")
    for r in results.get("distribution", []):
        lines.append(f"{r['model']:<9}{'x' + str(r['replicas']):<8}{r['precision']:<16}"
                     f"{'bucketed':<10}{r['seconds_per_step']:>8.3f}{r['pairs_per_second']:>9.1f}"
                     f"{100 * r['padding_share']:>8.1f}%{r['mean_pair_positions']:>11.1f}")
    if results.get("encode"):
        lines += ["", f"encoding {results['encode'][0]['texts']} texts, batch "
                      f"{results['encode_batch']}:"]
        for r in results["encode"]:
            extra = (f"  (runs {r['inference_precision']})" if r.get("inference_precision")
                     else "")
            lines.append(f"  virt_tf {r['precision']:<16}{r['texts_per_second']:>8.1f} texts/s"
                         f"{extra}")
        for backend, r in results.get("sentence_transformers", {}).get("backends", {}).items():
            value = (f"{r['texts_per_second']:>8.1f} texts/s" if "texts_per_second" in r
                     else f"failed: {r.get('error', '?')[:80]}")
            if r.get("inference_precision"):
                value += f"  (runs {r['inference_precision']})"
            lines.append(f"  sentence-transformers {backend:<9}{value}")
    lines += ["", "ratios:"] + [f"  {k}: {v}" for k, v in results["ratios"].items()]
    if results.get("versus_baseline"):
        lines += ["", "new / before:"] + [f"  {k}: {v}" for k, v in
                                          results["versus_baseline"].items()]
    return "\n".join(lines)


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
        encode_precisions=None, openvino_precisions=()):
    """The whole benchmark; returns the results dict (see `format_report`)."""
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
                st_python, texts, st_backends, encode_batch, st_model or default_checkpoint_dir())
    results["ratios"] = ratios(results)
    return results


PATH_FLAGS = (PathFlag("data_dir", paths.INPUT_DIR), PathFlag("encode_file", paths.INPUT_FILE),
              PathFlag("baseline_json", paths.INPUT_FILE), PathFlag("st_model", paths.INPUT_DIR),
              PathFlag("sentence_transformers_python", paths.INPUT_FILE),
              PathFlag("output", paths.OUTPUT_FILE))


def main():
    """Check the flags and paths, then benchmark (OS errors on them are user errors)."""
    for value in FLAGS.buckets:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"--buckets takes true/false, got {value!r}")
    used = [s for s in PATH_FLAGS if s.name != "encode_file" or FLAGS.encode_texts]
    paths.check_flags(FLAGS, used)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, used)):
        return _main()


def _main():
    buckets = [value.lower() == "true" for value in FLAGS.buckets]
    results = run(FLAGS.task, FLAGS.data_dir, FLAGS.encoder_preset, FLAGS.models,
                  FLAGS.precisions, buckets, FLAGS.steps, FLAGS.warmup, FLAGS.batch_size,
                  FLAGS.max_seq_length, FLAGS.max_train_examples, FLAGS.encode_file,
                  FLAGS.encode_texts, FLAGS.encode_batch, FLAGS.jit_compile,
                  FLAGS.sentence_transformers_python, FLAGS.st_backends,
                  FLAGS.include_before, FLAGS.st_model, FLAGS.stack_texts,
                  FLAGS.mirrored_cpu_devices, FLAGS.mirrored_models,
                  log=lambda s: logging.info("%s", s), repeats=FLAGS.repeats,
                  encode_precisions=FLAGS.encode_precisions,
                  openvino_precisions=FLAGS.openvino_precisions)
    if FLAGS.baseline_json:
        with open(FLAGS.baseline_json, encoding="utf-8") as f:
            results["versus_baseline"] = versus_baseline(results, json.load(f))
    print(format_report(results))
    if FLAGS.output:
        from virt_tf.training import write_json  # pylint: disable=import-outside-toplevel
        write_json(FLAGS.output, results)
        print(f"wrote {FLAGS.output}")
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main)
