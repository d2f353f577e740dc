"""Compare trained models on one split: accuracy, agreement, and paired significance.

Scores every model on the same pairs, then for each pair of models reports how many
examples only one of them gets right and the exact two-sided McNemar p-value (a paired
test: on 9815 MNLI pairs it sees differences that a comparison of two accuracies misses).
Each model's agreement with the first model (put the teacher first) is reported too, and
for every pair of the others the same test on agreeing with the first instead of being right.

  python tools/compare_runs.py --data_dir=../shared/data/bench/mnli \
      --model_dirs=runs/mnli/teacher,runs/mnli/siamese_s0,runs/mnli/virt_a3_s0

With --saved, the predictions the runs wrote when training ended (predictions.npz) are
compared as they are: no model or data is loaded, and the runs must have scored the same pairs.
The statistics are `virt_tf.evaluation.stats.compare`; this is the command line.

  python tools/compare_runs.py --saved --model_dirs=runs/mnli_screen/mix1_pure,runs/mnli_screen/recipe_head
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from virt_tf.cli import paths  # noqa: E402
from virt_tf.cli.common import run  # noqa: E402
from virt_tf.cli.paths import PathFlag  # noqa: E402
from virt_tf.errors import ConfigError  # noqa: E402
from virt_tf.evaluation.predictions import load_predictions, read_same_pairs  # noqa: E402
from virt_tf.evaluation.stats import compare  # noqa: E402
from virt_tf.rundir import write_json  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script, so tests can import it)."""
    flags.DEFINE_list("model_dirs", [], "Trained model directories of the same task (teacher first).")
    flags.DEFINE_string("data_dir", None, "Task files.")
    flags.DEFINE_string("split", None, "Split (default: the first model's eval split).")
    flags.DEFINE_integer("max_examples", None, "Score only the first N pairs.")
    flags.DEFINE_string("output", None, "Also write the numbers as JSON here.")
    flags.DEFINE_bool("saved", False, "Compare the predictions the runs saved when training "
                      "ended (predictions.npz; the same pairs), without loading models or data.")


PATH_FLAGS = (PathFlag("model_dirs", paths.MODEL_DIR), PathFlag("data_dir", paths.INPUT_DIR),
              PathFlag("output", paths.OUTPUT_FILE))


def main():
    """Check the flags and paths, then compare (OS errors on them are user errors)."""
    if len(FLAGS.model_dirs) < 2:
        raise ConfigError("--model_dirs needs at least two model directories")
    paths.check_flags(FLAGS, PATH_FLAGS)
    with paths.os_errors_as_user_errors(paths.flag_roots(FLAGS, PATH_FLAGS)):
        return _compare()


def _compare():
    """The saved predictions (--saved) or each model's on the split, compared."""
    if FLAGS.saved:
        classes, labels, split = read_same_pairs(FLAGS.model_dirs)
        root = os.path.dirname(os.path.normpath(FLAGS.model_dirs[0]))
        predictions = {os.path.relpath(d, root): c for d, c in classes.items()}
        return _report(predictions, labels, None, split)
    predictions, labels, task_name, split = _score()
    return _report(predictions, labels, task_name, split)


def _score():
    """Each model's predicted classes on the split: the ones saved by training when they
    are of these pairs, else scored here."""
    # deferred to after the path checks: scoring loads TensorFlow
    from virt_tf.evaluation.metrics import predict_probs  # pylint: disable=import-outside-toplevel
    from virt_tf.inference.matcher import load  # pylint: disable=import-outside-toplevel

    predictions, labels, task_name, split = {}, None, None, None
    for d in FLAGS.model_dirs:
        matcher = load(d)
        conf = matcher.config
        if task_name is None:
            task_name, split = conf["task"], FLAGS.split or conf.get("eval_split", "dev")
            examples = matcher.read_split(FLAGS.data_dir, split)
            examples = examples[:FLAGS.max_examples] if FLAGS.max_examples else examples
            labels = [e.label for e in examples]
        elif conf["task"] != task_name:
            raise ConfigError(f"{d} is a {conf['task']} model, the first is {task_name}")
        name = os.path.relpath(d, os.path.dirname(os.path.normpath(FLAGS.model_dirs[0])))
        cached = load_predictions(d, split, examples)  # written by training: no re-scoring
        probs = cached[0] if cached is not None else predict_probs(
            matcher.classifier, examples, matcher.preprocessor)
        predictions[name] = probs.argmax(axis=-1)
    return predictions, labels, task_name, split


def _report(predictions, labels, task_name, split):
    """Prints the accuracy, agreement and paired-test tables (and writes --output)."""
    result = compare(predictions, labels)
    first = next(iter(predictions))
    print(f"{len(labels)} {task_name} {split} pairs" if task_name else
          f"{len(labels)} {split} pairs (the predictions saved by the runs)")
    print(f"| model | accuracy (%) | agreement with {first} (%) | accuracy where {first} is "
          f"right / wrong (%) |\n|---|---|---|---|")
    for n, m in result["models"].items():
        print(f"| {n} | {100 * m['accuracy']:.1f} | {100 * m['agreement_with_' + first]:.1f} | "
              f"{100 * m[f'accuracy_where_{first}_right']:.1f} / "
              f"{100 * m[f'accuracy_where_{first}_wrong']:.1f} |")
    print("\n| a | b | only a right | only b right | McNemar p |\n|---|---|---|---|---|")
    for p in result["pairs"]:
        print(f"| {p['a']} | {p['b']} | {p['only_a_right']} | {p['only_b_right']} | "
              f"{p['mcnemar_p']:.3g} |")
    if len(predictions) > 2:
        print(f"\nagreement with {first} (same test, on agreeing with it instead of being right)")
        print("| a | b | only a agrees | only b agrees | McNemar p |\n|---|---|---|---|---|")
        for p in result["pairs"]:
            if "agreement_p" in p:
                print(f"| {p['a']} | {p['b']} | {p['only_a_agrees']} | {p['only_b_agrees']} | "
                      f"{p['agreement_p']:.3g} |")
    if FLAGS.output:
        write_json(FLAGS.output, dict(result, task=task_name, split=split, examples=len(labels)))
    return 0


if __name__ == "__main__":
    define_flags()
    run(main)
