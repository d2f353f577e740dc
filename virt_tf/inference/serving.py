"""Serving modules shared by the export, the state cache and scoring (`virt_tf.inference`).

Two `tf.Module`s with fixed input signatures wrap a trained classifier:

* `ModelServer`: token ids in, probabilities out. No tensorflow-text op enters
  its graph, so a released TF Serving binary (which embeds the ops of one
  tensorflow-text release, not necessarily ours) can load it. For a
  representation model (siamese, virt) it has three functions:

  - ``encode``: one text's ids -> ``states`` `[batch, seq, hidden]` float32
    (the last-layer states) and ``mask`` `[batch, seq]` int32: the offline part;
  - ``score``: ``states_a``/``mask_a`` and ``states_b``/``mask_b`` of the two
    texts -> ``probabilities`` `[batch, num_labels]`: the online part;
  - ``serving_default``: the ids of both texts -> ``probabilities``.

  For the cross-encoder only ``serving_default`` exists (on the ids of the
  packed pair): its texts cannot be encoded apart, so there is no offline part.

* `PreprocessingServer`: strings in, the ids that `ModelServer` takes out
  (tensorflow-text ops; the split of TF Hub's BERT preprocessor and encoder).

`ExportedModel` loads a model SavedModel back (no Keras, no tensorflow-text)
and checks the inputs of its functions, naming the offending input.

This module never imports tensorflow-text nor Keras itself; only
`PreprocessingServer` needs a `BertPairPreprocessor` (which does).
"""
import os

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from virt_tf.errors import MissingFileError, ServingInputError

PACKING_KEYS = ("input_word_ids", "input_mask", "input_type_ids")
SAVED_MODEL_FILE = "saved_model.pb"  # what marks a SavedModel folder


class _Untracked:
    """Holds an object outside the SavedModel's object graph.

    A Keras 3 model tracked by a `tf.Module` brings its own float-input
    ``serving_default`` into the export; the servers keep the classifier here
    and track only the variables their functions read.
    """

    def __init__(self, obj):
        self.obj = obj


class _Server(tf.Module):
    """A `tf.Module` whose serving functions stay out of its SavedModel object graph.

    Saving finds a module's functions by scanning its attributes and traces each once
    more in its save context (seconds of model and tokenizer graph for nothing): the
    export passes the concrete functions as signatures instead, so the functions live
    outside the tracked attributes and are reached as ``server.encode`` all the same.
    """

    def _set_functions(self, **functions):
        self.__dict__.setdefault("_functions", {}).update(functions)

    def __getattr__(self, name):  # only for names that normal lookup does not find
        functions = self.__dict__.get("_functions", {})
        if name in functions:
            return functions[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


def _ids_spec(name):
    return tf.TensorSpec([None, None], tf.int32, name=name)


def _packing(word_ids, mask, type_ids):
    return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}


def _shape_checks(states, mask, hidden, side):
    """In-graph checks of one text's cached states (they also guard TF Serving).

    A session that is fed a tensor does not compare it with the placeholder's
    shape, so a wrong shape would otherwise surface as an obscure error deep
    in the graph. Returns the assert ops.
    """
    shape = tf.shape(states)
    return [
        tf.debugging.assert_equal(
            tf.rank(states), 3,
            message=f"score: states_{side} must be float32 [batch, seq, {hidden}]"),
        tf.debugging.assert_equal(
            shape[-1], hidden,
            message=f"score: states_{side} must have hidden size {hidden} (last dimension)"),
        tf.debugging.assert_equal(
            tf.shape(mask), shape[:2],
            message=f"score: mask_{side} must be int32 [batch, seq] with the batch and seq "
                    f"of states_{side}"),
    ]


class ModelServer(_Server):
    """Token ids -> probabilities of a trained classifier (no tensorflow-text op).

    Args:
      classifier: a built classifier; its declared capabilities (``offline``,
        ``signatures``) decide which functions exist.
      model_name: its registry name (recorded only).
    """

    def __init__(self, classifier, model_name=None, name=None):
        super().__init__(name=name)
        self._held = _Untracked(classifier)
        self.model_name = model_name
        self.dual = bool(classifier.offline)
        self.hidden_size = int(classifier.encoder_config.hidden_size)
        hidden = self.hidden_size
        if self.dual:
            self._set_functions(
                encode=tf.function(self._encode, input_signature=[
                    _ids_spec("input_word_ids"), _ids_spec("input_mask"),
                    _ids_spec("input_type_ids")]),
                score=tf.function(self._score, input_signature=[
                    tf.TensorSpec([None, None, hidden], tf.float32, name="states_a"),
                    tf.TensorSpec([None, None], tf.int32, name="mask_a"),
                    tf.TensorSpec([None, None, hidden], tf.float32, name="states_b"),
                    tf.TensorSpec([None, None], tf.int32, name="mask_b")]),
                serving_default=tf.function(self._serve_dual, input_signature=[
                    _ids_spec(k + "_" + side) for side in ("a", "b") for k in PACKING_KEYS]))
        else:
            self._set_functions(serving_default=tf.function(
                self._serve_cross, input_signature=[_ids_spec(k) for k in PACKING_KEYS]))

    @property
    def classifier(self):
        """The wrapped classifier (held outside the SavedModel's object graph)."""
        return self._held.obj

    # -- the functions (shapes in the module docstring) ---------------------------------
    def _encode(self, input_word_ids, input_mask, input_type_ids):
        """Ids `[batch, seq]` of one text -> ``states`` `[batch, seq, H]`, ``mask``
        `[batch, seq]`."""
        out = self.classifier.encode(_packing(input_word_ids, input_mask, input_type_ids),
                                     training=False)
        return {"states": tf.cast(out["sequence_output"], tf.float32),
                "mask": tf.identity(input_mask)}

    def _score(self, states_a, mask_a, states_b, mask_b):
        """Cached states `[batch, m, H]`, `[batch, n, H]` and masks -> ``probabilities``."""
        checks = _shape_checks(states_a, mask_a, self.hidden_size, "a")
        checks += _shape_checks(states_b, mask_b, self.hidden_size, "b")
        checks.append(tf.debugging.assert_equal(
            tf.shape(states_a)[0], tf.shape(states_b)[0],
            message="score: states_a and states_b must have the same batch size"))
        with tf.control_dependencies([c for c in checks if c is not None]):
            states_a = tf.identity(states_a)
        logits = self.classifier.score(states_a, mask_a, states_b, mask_b, training=False)
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    def _serve_dual(self, input_word_ids_a, input_mask_a, input_type_ids_a,
                    input_word_ids_b, input_mask_b, input_type_ids_b):
        """Ids of x and of y, each `[batch, seq_x|seq_y]` -> ``probabilities`` `[batch, C]`."""
        features = {"text_a": _packing(input_word_ids_a, input_mask_a, input_type_ids_a),
                    "text_b": _packing(input_word_ids_b, input_mask_b, input_type_ids_b)}
        logits = self.classifier(features, training=False)
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    def _serve_cross(self, input_word_ids, input_mask, input_type_ids):
        """Ids of the packed pair `[batch, seq]` -> ``probabilities`` `[batch, C]`."""
        logits = self.classifier({"pair": _packing(input_word_ids, input_mask, input_type_ids)},
                                 training=False)
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    def signatures(self):
        """Signature name -> concrete function, for `tf.saved_model.save`.

        Also tracks the variables those functions read (``model_variables``),
        so that the SavedModel saves them.
        """
        functions = {name: getattr(self, name).get_concrete_function()
                     for name in self.classifier.signatures}
        seen, variables = set(), []
        for fn in functions.values():
            for v in fn.variables:
                if id(v) not in seen:
                    seen.add(id(v))
                    variables.append(v)
        self.model_variables = variables
        return functions


class PreprocessingServer(_Server):
    """Strings -> the ids `ModelServer` takes, with the model's own tokenizer settings.

    ``serving_default(text_a, text_b)`` (`[batch]` strings) gives the inputs of
    the model's ``serving_default``: for a representation model the ``text_a``
    and ``text_b`` packings of `BertPairPreprocessor` (the same truncated pieces
    the Keras pipeline feeds), keys suffixed ``_a``/``_b``; for the
    cross-encoder the ``pair`` packing. ``encode(text)`` (representation models
    only) packs single texts, truncated to ``max_seq_length - 2`` pieces.
    """

    def __init__(self, preprocessor, offline, name=None):
        super().__init__(name=name)
        # untracked, as the classifier in `ModelServer` (its own tf.functions would be
        # saved and traced again); only the lookup table its graphs read is tracked
        self._held = _Untracked(preprocessor)
        self.vocab_table = preprocessor.vocab_table
        self.dual = bool(offline)
        texts = tf.TensorSpec([None], tf.string, name="text_a"), tf.TensorSpec(
            [None], tf.string, name="text_b")
        self._set_functions(serving_default=tf.function(self._pair,
                                                        input_signature=list(texts)))
        if self.dual:
            self._set_functions(encode=tf.function(self._single, input_signature=[
                tf.TensorSpec([None], tf.string, name="text")]))

    @property
    def preprocessor(self):
        """The wrapped `BertPairPreprocessor` (held outside the object graph)."""
        return self._held.obj

    def _pair(self, text_a, text_b):
        packed = self.preprocessor(text_a, text_b)
        if not self.dual:
            return dict(packed["pair"])
        out = {}
        for side, key in (("a", "text_a"), ("b", "text_b")):
            for k, v in packed[key].items():
                out[f"{k}_{side}"] = v
        return out

    def _single(self, text):
        return dict(self.preprocessor.single(text))

    def signatures(self):
        """Signature name -> concrete function, for `tf.saved_model.save`."""
        names = ("encode", "serving_default") if self.dual else ("serving_default",)
        return {name: getattr(self, name).get_concrete_function() for name in names}


# ---------------------------------------------------------------------- checks of inputs
def check_score_inputs(states_a, mask_a, states_b, mask_b, hidden_size):
    """Python-side check of ``score`` inputs with one clear message (numpy or tensors).

    Raises `ServingInputError` naming the input, its dtype and shape, and what
    was expected: float32 states `[batch, seq, hidden_size]`, int32 masks
    `[batch, seq]`, one batch size for both texts.
    """
    def describe(x):
        return f"{tf.as_dtype(x.dtype).name} {list(x.shape)}"

    for side, states, mask in (("a", states_a, mask_a), ("b", states_b, mask_b)):
        if tf.as_dtype(states.dtype) != tf.float32 or len(states.shape) != 3 \
                or states.shape[-1] != hidden_size:
            raise ServingInputError(f"score: states_{side} must be float32 [batch, seq, "
                                    f"{hidden_size}], got {describe(states)}")
        if tf.as_dtype(mask.dtype) != tf.int32 or tuple(mask.shape) != tuple(states.shape[:2]):
            raise ServingInputError(f"score: mask_{side} must be int32 {list(states.shape[:2])} "
                                    f"(the batch and seq of states_{side}), got {describe(mask)}")
    if states_a.shape[0] != states_b.shape[0]:
        raise ServingInputError(f"score: states_a has batch {states_a.shape[0]} but states_b has "
                                f"{states_b.shape[0]}")


# ------------------------------------------------------------------- SavedModel contents
def saved_model_op_types(saved_model_dir):
    """Every op type used in a SavedModel's graphs and function library (a set of str)."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, SAVED_MODEL_FILE), "rb") as f:
        proto.ParseFromString(f.read())
    ops, functions = set(), set()
    for meta in proto.meta_graphs:
        ops.update(n.op for n in meta.graph_def.node)
        for fn in meta.graph_def.library.function:
            functions.add(fn.signature.name)
            ops.update(n.op for n in fn.node_def)
    return ops - functions


def non_core_ops(saved_model_dir):
    """Op types of a SavedModel that core TensorFlow does not define (e.g. tensorflow-text's).

    `tf.raw_ops` lists the ops built into TensorFlow, whatever libraries were
    loaded since, so this is independent of having imported tensorflow-text.
    """
    return sorted(op for op in saved_model_op_types(saved_model_dir)
                  if not hasattr(tf.raw_ops, op))


# ------------------------------------------------------------------------ loading back
class ExportedModel:
    """A model SavedModel written by `virt_tf.export`, loaded with plain TensorFlow.

    Needs neither Keras nor tensorflow-text. Every method checks its inputs
    (dtype, rank, sizes) and raises `ServingInputError` naming the input
    before anything runs; results are numpy arrays.
    """

    def __init__(self, path):
        if not os.path.exists(os.path.join(path, SAVED_MODEL_FILE)):
            raise MissingFileError(f"{path}: no saved_model.pb (give a version folder, "
                                    "e.g. EXPORT_DIR/virt/1)")
        self.path = path
        self._loaded = tf.saved_model.load(path)
        self.signatures = dict(self._loaded.signatures)
        self.dual = "score" in self.signatures
        self.hidden_size = None
        if self.dual:
            spec = self.signatures["score"].structured_input_signature[1]["states_a"]
            self.hidden_size = int(spec.shape[-1])

    def _need_dual(self, what):
        if not self.dual:
            raise ServingInputError(
                f"{what}: this export is a cross-encoder, which has no offline part: its two "
                "texts are encoded together, so only serving_default (ids of the packed pair) "
                "exists")

    @staticmethod
    def _ids(name, x, batch_seq=None):
        x = tf.convert_to_tensor(x)
        if x.dtype != tf.int32 or x.shape.rank != 2:
            raise ServingInputError(f"{name} must be int32 [batch, seq], got "
                                    f"{x.dtype.name} {x.shape.as_list()}")
        if batch_seq is not None and tuple(x.shape) != tuple(batch_seq):
            raise ServingInputError(f"{name} must have shape {list(batch_seq)} like "
                                    f"input_word_ids, got {x.shape.as_list()}")
        return x

    def _packing(self, word_ids, mask, type_ids, suffix=""):
        word_ids = self._ids("input_word_ids" + suffix, word_ids)
        mask = self._ids("input_mask" + suffix, mask, word_ids.shape)
        type_ids = (tf.zeros_like(word_ids) if type_ids is None
                    else self._ids("input_type_ids" + suffix, type_ids, word_ids.shape))
        return {"input_word_ids" + suffix: word_ids, "input_mask" + suffix: mask,
                "input_type_ids" + suffix: type_ids}

    def encode(self, input_word_ids, input_mask, input_type_ids=None):
        """Ids `[batch, seq]` of one text (type ids default to 0) -> ``states``
        `[batch, seq, H]` and ``mask`` `[batch, seq]` (numpy)."""
        self._need_dual("encode")
        out = self.signatures["encode"](**self._packing(input_word_ids, input_mask,
                                                        input_type_ids))
        return {k: v.numpy() for k, v in out.items()}

    def score(self, states_a, mask_a, states_b, mask_b):
        """Cached states `[batch, m, H]`, `[batch, n, H]` (float32) and int32 masks ->
        probabilities `[batch, num_labels]`."""
        self._need_dual("score")
        check_score_inputs(states_a, mask_a, states_b, mask_b, self.hidden_size)
        out = self.signatures["score"](states_a=tf.convert_to_tensor(states_a),
                                       mask_a=tf.convert_to_tensor(mask_a),
                                       states_b=tf.convert_to_tensor(states_b),
                                       mask_b=tf.convert_to_tensor(mask_b))
        return out["probabilities"].numpy()

    def predict(self, **ids):
        """``serving_default``: the keyword ids it takes -> probabilities `[batch, num_labels]`.

        Representation models: ``input_word_ids_a``, ``input_mask_a``,
        ``input_type_ids_a`` and the same with ``_b``; cross-encoder:
        ``input_word_ids``, ``input_mask``, ``input_type_ids`` of the pair.
        """
        fn = self.signatures["serving_default"]
        expected = set(fn.structured_input_signature[1])
        if set(ids) != expected:
            raise ServingInputError(f"serving_default takes {sorted(expected)}, got "
                                    f"{sorted(ids)}")
        feeds = {k: self._ids(k, v) for k, v in ids.items()}
        return fn(**feeds)["probabilities"].numpy()
