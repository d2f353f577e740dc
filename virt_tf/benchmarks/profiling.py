"""Online cost of a model: tf.profiler FLOPs and measured latency (Table 1's last columns).

For each model of `virt_tf.models.registry.MODELS` (or a model with run options,
e.g. the `[u; v]` Siamese head), the FLOPs of its *online* part, counted by
`tf.compat.v1.profiler` (``ProfileOptionBuilder.float_operation()``) on the
frozen graph of a `tf.function` concrete function with static shapes, and its
latency (median of ``repeats`` timed calls after ``warmup`` calls, in this
process, at the same batch), each with its ratio to the cross-encoder.

* a model without an offline part (the cross-encoder): the whole model,
  encoder and head, on the pair packed as `[CLS] x [SEP] y [SEP]`
  (``query_pieces + doc_pieces + 3`` positions);
* a model that declares an offline part (siamese, virt, dse, dipair, poly,
  deformer): only ``score`` on the cached states of x (``query_pieces + 2``
  positions) and y (``doc_pieces + 2``): a head for most, DeFormer's joint
  upper layers for DeFormer.

The offline cost, ``encode`` of one text, is reported per text for a query
and for a passage, once per number of encoder layers run apart.

The profiler counts a multiply-add as 2 FLOPs and counts only ops with a
registered FLOP statistic (matmuls, element-wise arithmetic, reductions,
softmax; not GELU's erf, gathers or reshapes). Weights are random: cost does
not depend on them.

    from virt_tf.benchmarks import profiling
    results = profiling.profile(profiling.preset_config("minilm_l6"), ["cross", "virt"])
    print(profiling.format_table(results, "minilm_l6"))

`tools/profile_flops.py` is the command line; `tools/reproduce.py` puts these
numbers beside each row of its reports.

TensorFlow is imported by the functions that build and profile graphs, not at import
time: ``tools/profile_flops.py --help`` lists the presets through this module, and the
grid report (`virt_tf.reproduction.report`) formats FLOPs and reuses costs it measured
before without loading TensorFlow.
"""
import gc
import os
import platform
import statistics
import time

from virt_tf.config import CONFIG_DIR, preset
from virt_tf.errors import ConfigError
from virt_tf.models import registry


def preset_names():
    """Encoder presets of ``configs/presets`` (their dimensions; weights are random here)."""
    folder = os.path.join(CONFIG_DIR, "presets")
    return sorted(f[:-len(".yaml")] for f in os.listdir(folder) if f.endswith(".yaml"))


def preset_config(preset_name):
    """The `EncoderConfig` of a preset of ``configs/presets`` (e.g. ``minilm_l6``)."""
    # here and below: TensorFlow, loaded only to build a graph (the module's docstring)
    from virt_tf.modeling.encoder import EncoderConfig  # pylint: disable=import-outside-toplevel  (TensorFlow)
    return EncoderConfig.from_dict(preset(preset_name))


# ----------------------------------------------------------------------------- counting
def count_flops(concrete_fn, freeze=True):
    """FLOPs of one call of ``concrete_fn`` (a `tf.function` concrete function, static shapes).

    Variables are frozen into constants first, then the graph is imported into
    a fresh `tf.Graph` and profiled with ``float_operation()``; ``freeze=False``
    profiles the function's own graph (variables read by their static shapes; needed
    when the graph assigns variables, as dropout's random state does). Raises if an
    op of the graph that has a FLOP statistic has a shape that is not fully static
    (it would be silently skipped otherwise).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the docstring)
    from tensorflow.python.framework import convert_to_constants  # pylint: disable=import-outside-toplevel  (see the docstring)
    from tensorflow.python.util import deprecation  # pylint: disable=import-outside-toplevel  (see the docstring)

    if not freeze:
        with deprecation.silence():
            return _graph_flops(concrete_fn.graph)
    _, graph_def = convert_to_constants.convert_variables_to_constants_v2_as_graph(concrete_fn)
    if graph_def.library.function:
        names = [f.signature.name for f in graph_def.library.function]
        raise ValueError(f"nested functions would not be profiled: {names[:3]}")
    graph = tf.Graph()
    with graph.as_default(), deprecation.silence():
        tf.graph_util.import_graph_def(graph_def, name="")
        return _graph_flops(graph)


def _graph_flops(graph):
    """``float_operation()`` FLOPs of ``graph``, after checking every op's shapes."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the docstring)
    from tensorflow.python.framework import ops as tf_ops  # pylint: disable=import-outside-toplevel  (see the docstring)

    for op in graph.get_operations():
        try:
            tf_ops.get_stats_for_node_def(graph, op.node_def, "flops")
        except ValueError as e:  # an incomplete shape
            raise ValueError(f"cannot count the FLOPs of {op.name} ({op.type}): {e}") from e
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                            cmd="op", options=options)
    return int(profile.total_float_ops)


def time_calls(fn, args, warmup=2, repeats=5):
    """Seconds of each of ``repeats`` calls of ``fn(*args)`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        _sync(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _sync(fn(*args))
        times.append(time.perf_counter() - start)
    return times


def _sync(out):
    """Wait for ``out`` (a structure of tensors): read every tensor's value."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the docstring)
    for t in tf.nest.flatten(out):
        t.numpy()


# ----------------------------------------------------------------------------- functions
def _ids(batch, seq, vocab_size, seed):
    """Random word ids, an all-ones mask and zero type ids, each `[batch, seq]` int32."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the docstring)
    word_ids = tf.random.stateless_uniform([batch, seq], [seed, 1], 1000, vocab_size, tf.int32)
    return word_ids, tf.ones([batch, seq], tf.int32), tf.zeros([batch, seq], tf.int32)


def online_function(model_name, classifier, batch, query_len, doc_len, pair_len):
    """The online part of ``model_name`` as ``(concrete_fn, args, description)``.

    No offline part (cross): ids `[batch, pair_len]` x3 -> probabilities `[batch, C]`.
    Offline part: states `[batch, query_len, H]`, mask `[batch, query_len]`,
    states `[batch, doc_len, H]`, mask `[batch, doc_len]` -> probabilities.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the docstring)

    del model_name
    cfg = classifier.encoder_config
    if not classifier.offline:
        def cross(word_ids, mask, type_ids):
            pair = {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}
            return tf.nn.softmax(classifier({"pair": pair}, training=False), axis=-1)
        spec = tf.TensorSpec([batch, pair_len], tf.int32)
        fn = tf.function(cross).get_concrete_function(spec, spec, spec)
        args = _ids(batch, pair_len, cfg.vocab_size, 0)
        # segment 0: [CLS] x [SEP] (query_len positions), segment 1: y [SEP]
        args = (args[0], args[1], tf.concat([tf.zeros([batch, query_len], tf.int32),
                                             tf.ones([batch, doc_len - 1], tf.int32)], axis=1))
        return fn, args, f"encoder + head on the pair ({pair_len} positions)"

    def score(states_a, mask_a, states_b, mask_b):
        return tf.nn.softmax(classifier.score(states_a, mask_a, states_b, mask_b,
                                              training=False), axis=-1)
    h = cfg.hidden_size
    specs = (tf.TensorSpec([batch, query_len, h], tf.float32),
             tf.TensorSpec([batch, query_len], tf.int32),
             tf.TensorSpec([batch, doc_len, h], tf.float32),
             tf.TensorSpec([batch, doc_len], tf.int32))
    fn = tf.function(score).get_concrete_function(*specs)
    args = (tf.random.stateless_normal([batch, query_len, h], [1, 2]),
            tf.ones([batch, query_len], tf.int32),
            tf.random.stateless_normal([batch, doc_len, h], [3, 4]),
            tf.ones([batch, doc_len], tf.int32))
    return fn, args, f"score on cached states ({query_len} + {doc_len} positions)"


def encode_function(classifier, batch, seq):
    """``encode`` of one text as ``(concrete_fn, args)``: ids `[batch, seq]` -> states."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the docstring)

    def encode(word_ids, mask, type_ids):
        packing = {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}
        return classifier.encode(packing, training=False)["sequence_output"]
    spec = tf.TensorSpec([batch, seq], tf.int32)
    fn = tf.function(encode).get_concrete_function(spec, spec, spec)
    return fn, _ids(batch, seq, classifier.encoder_config.vocab_size, 5)


# ----------------------------------------------------------------------------- profiling
def _cost(fn, args, warmup, repeats):
    flops = count_flops(fn)
    times = time_calls(fn, args, warmup, repeats)
    return {"flops": flops, "latency_ms": 1000 * statistics.median(times),
            "latency_ms_all": [round(1000 * t, 3) for t in times]}


def model_variants(models):
    """``{key: (registry name, run options)}`` from a list of names or such a mapping.

    A list of registry names profiles each with its default options; a mapping
    profiles a model with run options that change its online part, e.g.
    ``{"siamese_concat": ("siamese", {"fusion": "concat"})}``.
    """
    if isinstance(models, dict):
        return {k: (v[0], dict(v[1] or {})) for k, v in models.items()}
    return {name: (name, {}) for name in models}


def profile(encoder_config, models=None, batch=28, query_pieces=16, doc_pieces=256,
            num_labels=2, warmup=2, repeats=5, log=print, offline=True):
    """Profile ``models`` (registry names, or ``{key: (name, options)}``; default all).

    Returns the results dict: ``results["models"][key]`` has ``model``, ``flops``
    (a batch), ``flops_per_pair``, ``latency_ms`` (median, a batch),
    ``latency_ms_per_pair``, ``flops_ratio`` and ``latency_ratio``
    (cross-encoder / this model; absent without a ``cross`` model);
    ``results["offline_encode"]`` the per-text cost of ``encode`` (skipped with
    ``offline=False``).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see the docstring)

    variants = model_variants(models or list(registry.MODELS))
    unknown = sorted({m for m, _ in variants.values()} - set(registry.MODELS))
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; known: {sorted(registry.MODELS)}")
    for name, value in (("batch_size", batch), ("query_pieces", query_pieces),
                        ("doc_pieces", doc_pieces), ("repeats", repeats)):
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    query_len, doc_len = query_pieces + 2, doc_pieces + 2
    pair_len = query_pieces + doc_pieces + 3
    if pair_len > encoder_config.max_position_embeddings:
        raise ConfigError(f"the pair needs {pair_len} positions, the encoder has "
                         f"{encoder_config.max_position_embeddings}")
    results = {"encoder_config": encoder_config.to_dict(), "batch_size": batch,
               "query_pieces": query_pieces, "doc_pieces": doc_pieces,
               "positions": {"cross_pair": pair_len, "dual_query": query_len,
                             "dual_doc": doc_len},
               "warmup": warmup, "repeats": repeats, "tensorflow": tf.__version__,
               "cpu_count": os.cpu_count(), "machine": platform.machine(), "models": {}}
    for name, (model, options) in variants.items():
        tf.random.set_seed(0)
        classifier = registry.build_now(registry.build_classifier(model, encoder_config,
                                                                  num_labels, options))
        fn, args, description = online_function(name, classifier, batch, query_len, doc_len,
                                                pair_len)
        log(f"[{name}] online part: {description}")
        cost = _cost(fn, args, warmup, repeats)
        cost.update(model=model, options=options, online_part=description,
                    flops_per_pair=cost["flops"] / batch,
                    latency_ms_per_pair=cost["latency_ms"] / batch,
                    params=int(classifier.count_params()))
        results["models"][name] = cost
        cost["offline_layers"] = classifier.separate_layers
        key = ("offline_encode" if classifier.separate_layers == encoder_config.num_hidden_layers
               else f"offline_encode_{classifier.separate_layers}_layers")
        if offline and classifier.offline and key not in results:
            results[key] = {"layers": classifier.separate_layers}
            for what, seq in (("query", query_len), ("passage", doc_len)):
                log(f"[{name}] offline encode of a {what} ({seq} positions, "
                    f"{classifier.separate_layers} layers)")
                efn, eargs = encode_function(classifier, batch, seq)
                ecost = _cost(efn, eargs, warmup, repeats)
                results[key][what] = {
                    "positions": seq, "flops_per_text": ecost["flops"] / batch,
                    "latency_ms_per_text": ecost["latency_ms"] / batch,
                    "batch_flops": ecost["flops"], "batch_latency_ms": ecost["latency_ms"]}
        del classifier, fn, args
        gc.collect()
    cross = next((c for c in results["models"].values() if c["model"] == "cross"), None)
    if cross:
        for cost in results["models"].values():
            cost["flops_ratio"] = cross["flops"] / cost["flops"]
            cost["latency_ratio"] = cross["latency_ms"] / cost["latency_ms"]
    return results


def format_flops(flops):
    """1.39e12 -> '1390G', 4.75e7 -> '47.5M' (G, M or K, 3-4 significant digits)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.4g}{unit}"
    return f"{flops:.4g}"


def format_table(results, encoder_name=""):
    """The printed report: online cost per model, then the offline encode cost."""
    c = results["encoder_config"]
    p = results["positions"]
    lines = [
        f"encoder {encoder_name} (L={c['num_hidden_layers']} H={c['hidden_size']} "
        f"A={c['num_attention_heads']}, random weights); batch {results['batch_size']}; "
        f"x {results['query_pieces']} + y {results['doc_pieces']} pieces (dual: "
        f"{p['dual_query']} + {p['dual_doc']} positions, cross pair: {p['cross_pair']}); "
        f"latency: median of {results['repeats']} after {results['warmup']} warm-up, "
        f"{results['cpu_count']} CPU(s), TF {results['tensorflow']}",
        "",
        f"{'model':<9}{'online part':<46}{'FLOPs/pair':>12}{'FLOPs/batch':>13}"
        f"{'FLOPs ratio':>13}{'latency/batch':>15}{'latency ratio':>15}",
    ]
    for name, m in results["models"].items():
        flops_ratio = f"{m['flops_ratio']:.4g}x" if "flops_ratio" in m else "-"
        latency_ratio = f"{m['latency_ratio']:.3g}x" if "latency_ratio" in m else "-"
        lines.append(f"{name:<9}{m['online_part']:<46}"
                     f"{format_flops(m['flops_per_pair']):>12}{format_flops(m['flops']):>13}"
                     f"{flops_ratio:>13}{m['latency_ms']:>12.2f} ms{latency_ratio:>15}")
    if "flops_ratio" in next(iter(results["models"].values()), {}):
        lines.append("(ratios: cross-encoder / model, i.e. how many times fewer FLOPs and "
                     "lower latency)")
    for key, block in results.items():
        if not key.startswith("offline_encode"):
            continue
        users = [n for n, m in results["models"].items()
                 if m.get("offline_layers") == block.get("layers")]
        lines += ["", f"offline encode, {block.get('layers')} layers ({', '.join(users)}; once "
                      "a text, cacheable):"]
        for what in ("query", "passage"):
            e = block[what]
            lines.append(f"  {what:<8}{e['positions']:>4} positions: "
                         f"{format_flops(e['flops_per_text'])} FLOPs/text, "
                         f"{e['latency_ms_per_text']:.2f} ms/text "
                         f"(batch of {results['batch_size']}: {e['batch_latency_ms']:.1f} ms)")
    return "\n".join(lines)
