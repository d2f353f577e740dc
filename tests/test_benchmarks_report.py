"""virt_tf.benchmarks.report on fabricated results: the ratios of the speed targets (medians
over repeats, per repeat), new / before, and the printed table."""
from virt_tf.benchmarks import report


def rec(model, precision, buckets, sec, setting="new", **extra):
    return dict({"model": model, "precision": precision, "buckets": buckets,
                 "setting": setting, "seconds_per_step": sec, "pairs_per_second": 28 / sec},
                **extra)


def test_ratios_pair_each_setting_with_its_counterpart():
    """Step ratios compare models at the same precision and batching; rate ratios compare a
    setting with float32 random batches and with the path before the levers."""
    results = {"train": [rec("virt", "float32", False, 4.0, "before"),
                         rec("cross", "float32", True, 1.0), rec("siamese", "float32", True, 2.0),
                         rec("virt", "float32", True, 3.0), rec("virt", "float32", False, 3.5),
                         rec("siamese", "mixed_bfloat16", True, 8.0)],
               "encode": [{"precision": "float32", "texts_per_second": 100.0},
                          {"precision": "mixed_bfloat16", "texts_per_second": 50.0}],
               "distribution": [dict(rec("virt", "float32", True, 3.0), replicas=1),
                                dict(rec("virt", "float32", True, 4.5), replicas=2)]}
    r = report.ratios(results)
    assert r["virt / siamese step (float32, buckets)"] == 1.5
    assert r["siamese / cross step (float32, buckets)"] == 2.0
    assert r["virt: pairs/s float32, buckets / float32 random batches"] == round(3.5 / 3, 3)
    assert r["virt: pairs/s float32, buckets / before"] == round(4 / 3, 3)
    assert r["siamese: pairs/s mixed_bfloat16 / float32 (buckets)"] == 0.25
    assert r["encode: bfloat16 / float32 texts/s"] == 0.5
    assert r["virt: step with 2 mirrored CPU devices / one device"] == 1.5
    # no cross-encoder in bfloat16, no siamese without buckets: no ratio made up for them
    assert "siamese / cross step (mixed_bfloat16, buckets)" not in r
    assert "virt / siamese step (float32)" not in r
    # one repeat: no per-repeat lists
    assert not any(k.endswith("per repeat") for k in r)


def test_ratios_take_medians_over_repeats_and_compare_openvino_with_theirs():
    def rep(precision, sec, repeat):
        return rec("siamese", precision, True, sec, repeat=repeat)

    # bfloat16 / float32 per repeat: 2/1, 2/4, 2/2 -> [0.5, 2.0, 1.0]; medians 2 and 2 -> 1.0
    results = {"train": [rep("float32", 1.0, 0), rep("mixed_bfloat16", 2.0, 0),
                         rep("float32", 4.0, 1), rep("mixed_bfloat16", 2.0, 1),
                         rep("float32", 2.0, 2), rep("mixed_bfloat16", 2.0, 2)],
               "encode": [{"precision": "float32", "backend": "tensorflow",
                           "texts_per_second": 40.0},
                          {"precision": "openvino f32", "backend": "openvino",
                           "texts_per_second": 60.0}],
               "sentence_transformers": {"backends": {"openvino": {"texts_per_second": 50.0},
                                                      "torch": {"error": "x"}}}}
    r = report.ratios(results)
    assert r["siamese: pairs/s mixed_bfloat16 / float32 (buckets)"] == 1.0
    assert r["siamese: pairs/s mixed_bfloat16 / float32 (buckets) per repeat"] == [
        0.5, 2.0, 1.0]
    assert r["encode: ours openvino f32 / sentence-transformers openvino"] == 1.2
    assert r["encode: ours openvino f32 / ours TensorFlow float32"] == 1.5
    # ours at its best (OpenVINO here) over theirs; a failed backend of theirs gets no ratio
    assert r["encode: ours (openvino f32) / sentence-transformers openvino"] == 1.2
    assert "encode: ours openvino f32 / sentence-transformers torch" not in r


def test_versus_baseline_divides_only_settings_found_in_both_runs():
    baseline = {"train": [rec("virt", "float32", True, 4.0), rec("virt", "float32", False, 2.0,
                                                                 "before"),
                          {k: v for k, v in rec("cross", "float32", True, 2.0).items()
                           if k != "setting"}],  # an older file: no setting means "new"
                "encode": [{"precision": "float32", "texts_per_second": 50.0}]}
    results = {"train": [rec("virt", "float32", True, 2.0), rec("virt", "float32", False, 4.0,
                                                                "before"),
                         rec("cross", "float32", True, 1.0), rec("virt", "mixed_bfloat16",
                                                                 True, 1.0)],
               "encode": [{"precision": "float32", "texts_per_second": 75.0},
                          {"precision": "mixed_bfloat16", "texts_per_second": 10.0}]}
    assert report.versus_baseline(results, baseline) == {
        "virt float32 buckets=True (new): pairs/s new / before": 2.0,
        "virt float32 buckets=False (before): pairs/s new / before": 0.5,
        "cross float32 buckets=True (new): pairs/s new / before": 2.0,
        "encode float32: texts/s new / before": 1.5}


def test_report_lists_every_timed_setting_and_the_ratios():
    results = {"task": "mnli", "batch_size": 28, "steps": 3, "warmup": 1, "cpu_count": 2,
               "cpu": "Some CPU (avx2)", "tensorflow": "2.x", "repeats": 2,
               "auto_precision": {"policy": "float32", "reason": "no bfloat16 here"},
               "encode_batch": 8,
               "train": [rec("virt", "float32", True, 2.0, repeat=0, padding_share=0.051,
                             mean_pair_positions=40.25),
                         rec("virt", "float32", True, 4.0, repeat=1, padding_share=0.5,
                             mean_pair_positions=80.0)],
               "distribution": [rec("virt", "float32", True, 2.5, replicas=2,
                                    padding_share=0.05, mean_pair_positions=40.0)],
               "encode": [{"precision": "float32", "texts": 40, "texts_per_second": 123.45},
                          {"precision": "openvino bf16", "texts": 40, "texts_per_second": 200.0,
                           "inference_precision": "bf16"}],
               "sentence_transformers": {"backends": {
                   "torch": {"texts_per_second": 99.0},
                   "onnx": {"error": "E" * 200}}},
               "ratios": {"virt / siamese step (float32, buckets)": 1.1},
               "versus_baseline": {"encode float32: texts/s new / before": 1.5}}
    lines = report.format_report(results).splitlines()
    assert lines[0].startswith("training: batch 28, 3 timed steps after 1, mnli pairs; "
                               "2 CPU(s): Some CPU (avx2); TF 2.x; 2 alternating repeats")
    assert "--precision=auto picks float32 here: no bfloat16 here" in lines
    rows = [line.split() for line in lines if line.startswith("virt ")]
    assert rows == [["virt", "new#1", "float32", "bucketed", "2.000", "14.0", "5.1%", "40.2"],
                    ["virt", "new#2", "float32", "bucketed", "4.000", "7.0", "50.0%", "80.0"],
                    ["virt", "x2", "float32", "bucketed", "2.500", "11.2", "5.0%", "40.0"]]
    assert "encoding 40 texts, batch 8:" in lines
    words = [line.split() for line in lines]
    assert ["virt_tf", "float32", "123.5", "texts/s"] in words
    assert ["virt_tf", "openvino", "bf16", "200.0", "texts/s", "(runs", "bf16)"] in words
    assert ["sentence-transformers", "torch", "99.0", "texts/s"] in words
    onnx = next(line for line in lines if "sentence-transformers onnx" in line)
    assert onnx.endswith("failed: " + "E" * 80)  # the error cut to 80 characters
    assert lines[lines.index("ratios:") + 1] == "  virt / siamese step (float32, buckets): 1.1"
    assert lines[lines.index("new / before:") + 1] == "  encode float32: texts/s new / before: 1.5"


def test_report_of_one_repeat_without_encoding_or_baseline():
    results = {"task": "mnli", "batch_size": 28, "steps": 3, "warmup": 1, "cpu_count": 2,
               "tensorflow": "2.x", "encode_batch": 8, "encode": [],
               "train": [rec("cross", "float32", False, 1.0, "before", padding_share=0.5,
                             mean_pair_positions=70.0)],
               "ratios": {}}
    text = report.format_report(results)
    assert "alternating repeats" not in text and "--precision=auto" not in text
    assert "encoding" not in text and "new / before" not in text
    assert "2 CPU(s): ?" in text  # no CPU name recorded
    assert text.splitlines()[-1] == "ratios:"
    assert ["cross", "before", "float32", "random"] == [
        line.split() for line in text.splitlines() if line.startswith("cross")][0][:4]
