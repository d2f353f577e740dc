"""Evaluators (separate from models) and the `python -m virt_tf.evaluate` entry point."""
import json
import os
import sys

import numpy as np

from absl import app, flags, logging


def predict_probs(classifier, examples, preprocessor, batch_size=64):
    """Class probabilities `[n, num_labels]` in the order of ``examples``."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from virt_tf.data.pipeline import eval_dataset  # pylint: disable=import-outside-toplevel

    ds, order = eval_dataset(examples, preprocessor, batch_size)
    predict = tf.function(lambda f: tf.nn.softmax(classifier(f, training=False), axis=-1),
                          reduce_retracing=True)
    chunks = [predict(features).numpy() for features, _ in ds]
    probs = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 1))
    out = np.empty_like(probs)
    out[order] = probs
    return out


def compute_metrics(probs, labels, names=("accuracy",)):
    """Accuracy, F1 (positive class 1) and ROC-AUC with Keras metrics."""
    import keras  # pylint: disable=import-outside-toplevel

    labels = np.asarray(labels)
    pred = probs.argmax(axis=-1)
    out = {"examples": int(len(labels))}
    acc = keras.metrics.SparseCategoricalAccuracy()
    acc.update_state(labels, probs)
    out["accuracy"] = float(acc.result())
    if "f1" in names:
        p, r = keras.metrics.Precision(), keras.metrics.Recall()
        p.update_state(labels == 1, pred == 1)
        r.update_state(labels == 1, pred == 1)
        pv, rv = float(p.result()), float(r.result())
        out["f1"] = 2 * pv * rv / (pv + rv) if pv + rv > 0 else 0.0
    if "roc_auc" in names:
        auc = keras.metrics.AUC(num_thresholds=1000)
        auc.update_state(labels == 1, probs[:, 1])
        out["roc_auc"] = float(auc.result())
    return out


def evaluate_examples(classifier, examples, preprocessor, metric_names, batch_size=64):
    probs = predict_probs(classifier, examples, preprocessor, batch_size)
    return compute_metrics(probs, [e.label for e in examples], metric_names)


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", None, "A trained model directory (holds model_config.json).")
    flags.DEFINE_string("data_dir", None, "Task files; tensorflow-datasets when not given.")
    flags.DEFINE_string("split", None, "Split to score (default: the task's eval split).")
    flags.DEFINE_integer("batch_size", 64, "Evaluation batch size.")
    flags.DEFINE_integer("max_eval_examples", None, "Score only the first N examples.")
    flags.DEFINE_bool("skip_bad_rows", False, "Skip and count malformed rows.")
    flags.DEFINE_string("output", None, "Write the metrics JSON here as well.")


def main(argv):
    del argv
    from virt_tf.cli import run_cli  # pylint: disable=import-outside-toplevel
    return run_cli(_evaluate)


def _evaluate():
    from virt_tf.data import tasks  # pylint: disable=import-outside-toplevel
    from virt_tf.data.tokenization import BertPairPreprocessor  # pylint: disable=import-outside-toplevel
    from virt_tf.models.registry import load_classifier  # pylint: disable=import-outside-toplevel

    if not FLAGS.model_dir:
        raise ValueError("--model_dir is required")
    classifier, config = load_classifier(FLAGS.model_dir)
    task = tasks.get_task(config["task"], **config.get("pairs_options", {}))
    if config["task"] == "pairs":
        task.labels = tuple(config["labels"])
    split = FLAGS.split or config.get("eval_split", "dev")
    examples = tasks.read_split(task, FLAGS.data_dir, split, FLAGS.skip_bad_rows)
    if FLAGS.max_eval_examples:
        examples = examples[:FLAGS.max_eval_examples]
    prep = BertPairPreprocessor(os.path.join(FLAGS.model_dir, config["vocab_file"]),
                                config["lower_case"], config["max_seq_length"])
    metrics = evaluate_examples(classifier, examples, prep, config.get("metrics", ["accuracy"]),
                                FLAGS.batch_size)
    metrics["split"] = split
    logging.info("metrics: %s", metrics)
    print(json.dumps(metrics, indent=2))
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
    sys.exit(0)
