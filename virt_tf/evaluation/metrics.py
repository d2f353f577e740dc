"""Evaluators, apart from models and entry points: probabilities and task metrics."""
import weakref

import keras
import numpy as np
import tensorflow as tf

from virt_tf.data.pipeline import eval_dataset

# classifier -> {input signature: its traced `features -> probabilities`}; entries go with
# their classifier.
_PREDICTORS = weakref.WeakKeyDictionary()


def _free_dims(spec):
    """The `tf.TensorSpec` of ``spec`` with every dimension free (batch and length)."""
    return tf.TensorSpec([None] * spec.shape.rank, spec.dtype, name=spec.name)


def _predictor(classifier, features_spec):
    """The one traced ``features -> softmax(classifier(features))`` of ``classifier``
    (float32 `[batch, num_labels]`) for features shaped like ``features_spec`` (a structure
    of `tf.TensorSpec`, e.g. `[batch, seq]` ids), built on first use and kept while
    ``classifier`` lives.

    A new `tf.function` at every call traced the model again at every call (TensorFlow's
    "triggered tf.function retracing" warning after a few evaluations). The signature frees
    every dimension, so one graph serves every batch of every call: a pair's probabilities
    do not depend on its batch's shape nor on what was evaluated before (a resumed run's
    evaluation equals an uninterrupted one's, bit for bit). The function reaches the
    classifier through a weak reference, so the cache does not keep the model alive.
    """
    signature = tf.nest.map_structure(_free_dims, features_spec)
    key = repr(signature)
    functions = _PREDICTORS.setdefault(classifier, {})
    if key not in functions:
        model = weakref.ref(classifier)
        functions[key] = tf.function(
            lambda f: tf.nn.softmax(tf.cast(model()(f, training=False), tf.float32), axis=-1),
            input_signature=[signature])
    return functions[key]


def predict_probs(classifier, examples, preprocessor, batch_size=64):
    """Class probabilities `[n, num_labels]` (float32) in the order of ``examples``.

    ``examples`` are `Example`s or ``(text_a, text_b)`` pairs; batches are sorted
    by length (less padding) and mapped back.
    """
    ds, order = eval_dataset(examples, preprocessor, batch_size)
    predict = _predictor(classifier, ds.element_spec[0])
    chunks = [predict(features).numpy() for features, _ in ds]
    probs = (np.concatenate(chunks, axis=0) if chunks
             else np.zeros((0, classifier.num_labels), np.float32))
    out = np.empty_like(probs)
    out[order] = probs
    return out


def compute_metrics(probs, labels, names=("accuracy",)):
    """Accuracy, F1 (positive class 1) and ROC-AUC with Keras metrics."""
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
    """Task metrics of ``classifier`` on labelled ``examples``."""
    probs = predict_probs(classifier, examples, preprocessor, batch_size)
    return compute_metrics(probs, [e.label for e in examples], metric_names)


def evaluate_with_loss(classifier, examples, preprocessor, metric_names, probs=None):
    """The task metrics plus ``loss``, the mean cross-entropy: a sensitive fingerprint of
    the weights (two runs that differ anywhere differ in it, unlike in accuracy).
    ``probs`` `[n, num_labels]`: the probabilities when already computed."""
    if probs is None:
        probs = predict_probs(classifier, examples, preprocessor)
    labels = np.array([e.label for e in examples])
    metrics = compute_metrics(probs, labels, metric_names)
    picked = probs[np.arange(len(labels)), labels].astype(np.float64)
    metrics["loss"] = float(-np.mean(np.log(np.maximum(picked, 1e-30))))
    return metrics
