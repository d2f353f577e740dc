"""Training and encoding speed on real data, all in one process (ratios are same-run).

Times the training step of each model (``--models``) in each precision and batching
beside the path before the speed levers, then the offline encoding of real texts
through TensorFlow, OpenVINO and (``--sentence_transformers_python=PATH`` or
``$VIRT_TF_ST_PYTHON``) sentence-transformers via ``tools/st_encode_speed.py``; prints
the ratios the speed targets are stated in, and new / before against
``--baseline_json`` (an earlier ``--output``). The settings, the timing and the report
are `virt_tf.benchmarks` (see its docstring); this is its command line. Timings are
wall-clock on whatever else this machine is doing: compare only numbers from one run.

    python tools/benchmark_speed.py --output=speed.json
    python tools/benchmark_speed.py --encoder_preset=tiny --steps=3 --warmup=1   # seconds
    python tools/benchmark_speed.py --models=siamese --precisions=float32 --buckets=true \
        --include_before=false --encode_texts=0 --profile_step=true   # where a step goes

Each training setting reports its FLOPs a step (tf.profiler, forward + backward), its
achieved GFLOP/s and their fraction of a matmul peak measured at its precision in the same
run (``--count_flops``); ``--profile_step`` adds, per setting, a markdown profile of its
first timed steps (op self time by part of the step and by op type, the split timing).
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from virt_tf.benchmarks import report  # noqa: E402
from virt_tf.cli import paths  # noqa: E402
from virt_tf.cli.common import run  # noqa: E402
from virt_tf.cli.paths import PathFlag  # noqa: E402
from virt_tf.errors import ConfigError  # noqa: E402
from virt_tf.rundir import read_json, write_json  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_DATA = paths.default_data_root(REPO)
ST_SCRIPT = os.path.join(REPO, "tools", "st_encode_speed.py")


def define_flags():
    """Defines the command-line flags (only when run as a script, so tests can import it)."""
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
    flags.DEFINE_bool("count_flops", True, "Count each setting's training FLOPs a step with "
                      "tf.profiler (forward + backward at the timed batches' lengths, once a "
                      "shape) and report its GFLOP/s beside a matmul peak measured in this "
                      "run at its precision.")
    flags.DEFINE_integer("peak_size", 2048, "Side of the square matmul of the peak.")
    flags.DEFINE_bool("profile_step", False, "Also profile the first timed steps of each "
                      "setting: op self time by part of the step (forward, backward, "
                      "optimizer) and by op type, and the split timing, as markdown.")
    flags.DEFINE_integer("profile_steps", 3, "Steps a --profile_step trace covers.")
    flags.DEFINE_bool("freeze_word_embeddings", False, "Train the new settings with the word "
                      "embeddings frozen (the training option of that name).")
    flags.DEFINE_enum("embedding_updates", "dense", ["dense", "lazy"], "Adam's update of "
                      "the embedding tables in the new settings (the training option).")
    flags.DEFINE_string("output", None, "Write the results as JSON here.")


PATH_FLAGS = (PathFlag("data_dir", paths.INPUT_DIR), PathFlag("encode_file", paths.INPUT_FILE),
              PathFlag("baseline_json", paths.INPUT_FILE), PathFlag("st_model", paths.INPUT_DIR),
              PathFlag("sentence_transformers_python", paths.INPUT_FILE),
              PathFlag("output", paths.OUTPUT_FILE))


def main():
    """Check the flags and paths, then benchmark (OS errors on them are user errors)."""
    for value in FLAGS.buckets:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"--buckets takes true/false, got {value!r}")
    if FLAGS.profile_step and FLAGS.profile_steps < 1:
        raise ConfigError(f"--profile_steps must be >= 1, got {FLAGS.profile_steps}")
    if FLAGS.peak_size < 1:
        raise ConfigError(f"--peak_size must be >= 1, got {FLAGS.peak_size}")
    used = [s for s in PATH_FLAGS if s.name != "encode_file" or FLAGS.encode_texts]
    paths.check_flags(FLAGS, used)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, used)):
        return _main()


def _main():
    """Run the suite, print the report (and --output)."""
    from virt_tf.benchmarks import suite  # pylint: disable=import-outside-toplevel  (TensorFlow after the checks: fast --help)
    buckets = [value.lower() == "true" for value in FLAGS.buckets]
    results = suite.run(
        FLAGS.task, FLAGS.data_dir, FLAGS.encoder_preset, FLAGS.models, FLAGS.precisions,
        buckets, FLAGS.steps, FLAGS.warmup, FLAGS.batch_size, FLAGS.max_seq_length,
        FLAGS.max_train_examples, FLAGS.encode_file, FLAGS.encode_texts, FLAGS.encode_batch,
        FLAGS.jit_compile, FLAGS.sentence_transformers_python, FLAGS.st_backends,
        FLAGS.include_before, FLAGS.st_model, FLAGS.stack_texts, FLAGS.mirrored_cpu_devices,
        FLAGS.mirrored_models, log=lambda s: logging.info("%s", s), repeats=FLAGS.repeats,
        encode_precisions=FLAGS.encode_precisions,
        openvino_precisions=FLAGS.openvino_precisions, st_script=ST_SCRIPT,
        count_flops=FLAGS.count_flops, peak_size=FLAGS.peak_size,
        profile_steps=min(FLAGS.profile_steps, FLAGS.steps) if FLAGS.profile_step else 0,
        freeze_word_embeddings=FLAGS.freeze_word_embeddings,
        embedding_updates=FLAGS.embedding_updates)
    if FLAGS.baseline_json:
        results["versus_baseline"] = report.versus_baseline(results,
                                                            read_json(FLAGS.baseline_json))
    print(report.format_report(results))
    if FLAGS.output:
        write_json(FLAGS.output, results)
        print(f"wrote {FLAGS.output}")
    return 0


if __name__ == "__main__":
    define_flags()
    run(main)
