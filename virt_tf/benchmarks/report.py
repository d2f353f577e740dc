"""The speed benchmark's report: the ratios of the speed targets and the printed table.

* `ratios`: from one run's results, on the medians over repeats: VIRT / Siamese and
  Siamese / cross step time at the same precision and batching, each setting's
  pairs/s over float32 random batches, over float32 with the same batches and over
  the path before the speed levers, mirrored CPU devices over one device, encoding
  bfloat16 / float32, our OpenVINO over our TensorFlow float32 and ours over
  sentence-transformers'; with several repeats also `per_repeat_ratios`;
* `versus_baseline`: new / before for every number found in an earlier run's results;
* `format_report`: the text the command prints: with FLOPs counted, each setting's
  achieved GFLOP/s and its fraction of the run's matmul peak at that precision; with
  profiles, each setting's profile as markdown (`profile_markdown`).

Plain dicts and lists in, no TensorFlow.
"""
import statistics


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
    """The text the command prints: the settings, one row a timed setting, the encoding
    rates, the ratios and new / before."""
    auto = results.get("auto_precision")
    lines = [f"training: batch {results['batch_size']}, {results['steps']} timed steps after "
             f"{results['warmup']}, {results['task']} pairs; {results['cpu_count']} CPU(s): "
             f"{results.get('cpu', '?')}; TF {results['tensorflow']}"
             + (f"; {results['repeats']} alternating repeats" if results.get("repeats", 1) > 1
                else "")]
    if auto:
        lines.append(f"--precision=auto picks {auto['policy']} here: {auto['reason']}")
    peaks = results.get("matmul_peak", {})
    if peaks:
        lines.append("matmul peak (median of a few square TF matmuls): " + ", ".join(
            f"{p} {v['gflops_per_second']:.0f} GFLOP/s ({v['dtype']}, {v['size']}^2)"
            for p, v in peaks.items()))
    embedding = [f"{k}={results[k]}" for k in ("freeze_word_embeddings", "embedding_updates")
                 if k in results]
    if embedding:
        lines.append("training options of the new settings: " + ", ".join(embedding))
    lines += ["",
             f"{'model':<9}{'setting':<8}{'precision':<16}{'batches':<10}{'s/step':>8}"
             f"{'pairs/s':>9}{'padding':>9}{'positions':>11}"
             + (f"{'GFLOP/step':>12}{'GFLOP/s':>9}{'of peak':>9}" if peaks else "")]
    for r in results.get("train", []):
        setting = r["setting"] + (f"#{r['repeat'] + 1}" if results.get("repeats", 1) > 1 else "")
        lines.append(f"{r['model']:<9}{setting:<8}{r['precision']:<16}"
                     f"{'bucketed' if r['buckets'] else 'random':<10}"
                     f"{r['seconds_per_step']:>8.3f}{r['pairs_per_second']:>9.1f}"
                     f"{100 * r['padding_share']:>8.1f}%{r['mean_pair_positions']:>11.1f}"
                     + _flops_columns(r, peaks))
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
    counted = next((r["flops_counted"] for r in results.get("train", [])
                    if "flops_counted" in r), None)
    if counted:
        lines.append(f"(FLOPs: {counted})")
    lines += profile_markdown(results)
    lines += ["", "ratios:"] + [f"  {k}: {v}" for k, v in results["ratios"].items()]
    if results.get("versus_baseline"):
        lines += ["", "new / before:"] + [f"  {k}: {v}" for k, v in
                                          results["versus_baseline"].items()]
    return "\n".join(lines)


def _flops_columns(row, peaks):
    """The GFLOP/step, GFLOP/s and fraction-of-peak columns of a training row ("" without
    counted FLOPs in the run, "-" for a row without them)."""
    if not peaks:
        return ""
    if "gflops_per_second" not in row:
        return f"{'-':>12}{'-':>9}{'-':>9}"
    fraction = (f"{100 * row['peak_fraction']:>8.1f}%" if "peak_fraction" in row
                else f"{'-':>9}")
    return (f"{row['train_flops_per_step'] / 1e9:>12.3f}{row['gflops_per_second']:>9.1f}"
            + fraction)


def profile_markdown(results):
    """Lines of markdown: one section a profiled training row (its profile's tables)."""
    lines = []
    for r in results.get("train", []):
        if "profile" not in r:
            continue
        lines += ["", f"### {r['model']}, {r['setting']}, {r['precision']}, "
                      f"{'bucketed' if r['buckets'] else 'random'} batches", "",
                  r["profile"]["markdown"]]
    return lines
