"""Compare trained models on one split: accuracy, agreement, and paired significance.

Scores every model on the same pairs, then for each pair of models reports how many
examples only one of them gets right and the exact two-sided McNemar p-value (a paired
test: on 9815 MNLI pairs it sees differences that a comparison of two accuracies misses).
Each model's agreement with the first model (put the teacher first) is reported too.

  python tools/compare_runs.py --data_dir=../shared/data/bench/mnli \
      --model_dirs=runs/mnli/teacher,runs/mnli/siamese_s0,runs/mnli/virt_a3_s0
"""
import itertools
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script, so tests can import it)."""
    flags.DEFINE_list("model_dirs", [], "Trained model directories of the same task (teacher first).")
    flags.DEFINE_string("data_dir", None, "Task files.")
    flags.DEFINE_string("split", None, "Split (default: the first model's eval split).")
    flags.DEFINE_integer("max_examples", None, "Score only the first N pairs.")
    flags.DEFINE_string("output", None, "Also write the numbers as JSON here.")


def mcnemar_exact(only_a, only_b):
    """Two-sided exact McNemar p-value from the two discordant counts."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    # P(X <= k) for X ~ Binomial(n, 1/2), doubled; computed in log space for large n.
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
            for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return min(1.0, 2.0 * tail)


def compare(predictions, labels):
    """predictions: {name: int array}. Returns per-model and per-pair statistics."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    labels = np.asarray(labels)
    names = list(predictions)
    first = predictions[names[0]]
    models = {n: {"accuracy": float(np.mean(p == labels)),
                  "agreement_with_" + names[0]: float(np.mean(p == first))}
              for n, p in predictions.items()}
    pairs = []
    for a, b in itertools.combinations(names, 2):
        ra, rb = predictions[a] == labels, predictions[b] == labels
        only_a, only_b = int(np.sum(ra & ~rb)), int(np.sum(rb & ~ra))
        pairs.append({"a": a, "b": b, "only_a_right": only_a, "only_b_right": only_b,
                      "mcnemar_p": mcnemar_exact(only_a, only_b)})
    return {"models": models, "pairs": pairs}


def main(argv):
    del argv
    from virt_tf.data import tasks  # pylint: disable=import-outside-toplevel
    from virt_tf.data.tokenization import BertPairPreprocessor  # pylint: disable=import-outside-toplevel
    from virt_tf.evaluate import predict_probs  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import load_classifier  # pylint: disable=import-outside-toplevel

    if len(FLAGS.model_dirs) < 2:
        raise app.UsageError("--model_dirs needs at least two model directories")
    predictions, labels, task_name, split = {}, None, None, None
    for d in FLAGS.model_dirs:
        model, conf = load_classifier(d)
        if task_name is None:
            task_name, split = conf["task"], FLAGS.split or conf.get("eval_split", "dev")
            examples = tasks.read_split(tasks.get_task(task_name), FLAGS.data_dir, split)
            examples = examples[:FLAGS.max_examples] if FLAGS.max_examples else examples
            labels = [e.label for e in examples]
        elif conf["task"] != task_name:
            raise app.UsageError(f"{d} is a {conf['task']} model, the first is {task_name}")
        prep = BertPairPreprocessor(os.path.join(d, conf["vocab_file"]), conf["lower_case"],
                                    conf["max_seq_length"])
        name = os.path.relpath(d, os.path.dirname(os.path.normpath(FLAGS.model_dirs[0])))
        predictions[name] = predict_probs(model, examples, prep).argmax(axis=-1)
    result = compare(predictions, labels)
    first = next(iter(predictions))
    print(f"{len(labels)} {task_name} {split} pairs")
    print(f"| model | accuracy (%) | agreement with {first} (%) |\n|---|---|---|")
    for n, m in result["models"].items():
        print(f"| {n} | {100 * m['accuracy']:.1f} | {100 * m['agreement_with_' + first]:.1f} |")
    print("\n| a | b | only a right | only b right | McNemar p |\n|---|---|---|---|---|")
    for p in result["pairs"]:
        print(f"| {p['a']} | {p['b']} | {p['only_a_right']} | {p['only_b_right']} | "
              f"{p['mcnemar_p']:.3g} |")
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            json.dump(dict(result, task=task_name, split=split, examples=len(labels)), f, indent=2)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
