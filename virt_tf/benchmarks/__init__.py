"""The speed benchmark as a library: training and encoding speed on real data, one process.

* `timing`: the measured cases: seconds per training step of the real training
  pipeline (`virt_tf.training.stage`'s stream, `VirtModel`, Adam; the VIRT-encoder with
  its teacher and alpha 1, as in training) with the padded share of the pair
  packings, the path before the speed levers, and texts per second of the offline
  ``encode`` signature (`virt_tf.inference.state_cache.encode_texts`, batches sorted by length)
  through TensorFlow, OpenVINO, or sentence-transformers in another interpreter;
* `suite`: `run`, every setting in one process (ratios are same-run): models x
  precisions x batchings, precisions alternating within each of ``repeats``, then
  encoding; the CPU and what ``--precision=auto`` picks on it;
* `report`: the ratios the speed targets are stated in (medians over repeats, and
  per repeat), new / before against an earlier run, the printed table;
* `step_cost`: a training step's FLOPs (tf.profiler on its gradient graph) and a matmul
  peak at each precision: the achieved GFLOP/s and its fraction of the peak;
* `step_profile`: where a step's time goes: op self times of a traced step by part
  (forward, backward, optimizer) and by op type, and a split timing.

    from virt_tf.benchmarks import report, suite
    results = suite.run("mnli", DATA_DIR, encoder_preset="tiny", steps=3, warmup=1,
                        encode_file=RTE_TRAIN_TSV, encode_texts=40)
    print(report.format_report(results))

Weights: the default MiniLM-L6 checkpoint, or random ones of ``encoder_preset``;
speed does not depend on them. Timings are wall-clock on whatever else the machine
is doing: compare only numbers from one run. ``tools/benchmark_speed.py`` is the
command line; ``profiling`` (the online cost of a model, Table 1's last columns) sits beside
them.
"""
