"""Load a trained model directory as one object: classifier, preprocessor and task.

As keras-hub's ``Task.from_preset`` gives a model back with its preprocessor,
`load` gives back a `TextMatcher` that scores raw text pairs::

    import virt_tf
    matcher = virt_tf.load("runs/rte_virt")
    probs = matcher.predict(["A man is playing."], ["Someone plays."])  # [1, num_labels]

Every entry point and tool that reads a trained directory goes through here.
This module sits above `models/`, `data/` and the state cache (it knows all three);
`modeling/`, `models/` and `virt_tf.inference.state_cache` never import it.
`encode_file` is the job of ``python -m virt_tf.encode``: a file of texts -> a state cache
file (it loads a directory, so it sits here rather than in the state cache, which this
module imports).
"""
import os

from virt_tf import rundir
from virt_tf.config import preset
from virt_tf.data import tasks
from virt_tf.data.tokenization import BertPairPreprocessor
from virt_tf.errors import CheckpointError, ConfigError
from virt_tf.evaluation.metrics import evaluate_examples, predict_probs
from virt_tf.inference import openvino as openvino_backend
from virt_tf.inference.state_cache import OFFLINE_MODELS, encode_cache, read_texts, write_cache
from virt_tf.modeling.checkpoints import (PretrainedBert, assign_weights, default_checkpoint_dir,
                                          encoder_variables, read_pretrained)
from virt_tf.modeling.encoder import EncoderConfig
from virt_tf.models.registry import (build_classifier, build_now, get_spec, load_classifier,
                                     read_model_config, save_classifier)


class TextMatcher:
    """A trained text-pair classifier with everything needed to run it on strings.

    Attributes: ``classifier`` (the Keras model), ``preprocessor`` (a
    `BertPairPreprocessor` with the model's vocabulary, casing and
    ``max_seq_length``), ``task`` (labels, metrics and, for ``pairs``, the field
    names it was trained with), ``config`` (the directory's ``model_config.json``),
    ``directory``.
    """

    def __init__(self, classifier, preprocessor, task, config, directory=None):
        self.classifier = classifier
        self.preprocessor = preprocessor
        self.task = task
        self.config = config
        self.directory = directory

    @classmethod
    def from_directory(cls, directory, max_seq_length=None):
        """Load a trained model directory (as `train.py` or `save` wrote it)."""
        classifier, config = load_classifier(directory)
        vocab = rundir.path(directory, config.get("vocab_file", rundir.VOCAB))
        if not os.path.exists(vocab):
            raise CheckpointError(f"{directory}: no {config.get('vocab_file', rundir.VOCAB)} "
                                  "beside the model")
        preprocessor = BertPairPreprocessor(vocab, config.get("lower_case", True),
                                            max_seq_length or config.get("max_seq_length", 128))
        return cls(classifier, preprocessor, task_of(config), config, directory)

    @classmethod
    def from_checkpoint(cls, model, num_labels, checkpoint=None, encoder_preset=None,
                        max_seq_length=128, labels=None, **options):
        """A new, untrained model ``model`` (a registry name) with its preprocessor.

        The encoder starts from ``checkpoint`` (any format `read_init_checkpoint`
        reads; default: the MiniLM-L6 package) or, with ``encoder_preset``
        (``tiny``, ``minilm_l6``, ``bert_base``), from random weights; ``options``
        are run-config keys of the head (``fusion``, ``virt_head``, ``poly_codes``...).
        """
        labels = list(labels) if labels is not None else [str(i) for i in range(num_labels)]
        if len(labels) != num_labels:
            raise ConfigError(f"{len(labels)} labels given for num_labels={num_labels}")
        if encoder_preset:
            pretrained = None
            encoder_config = EncoderConfig.from_dict(preset(encoder_preset))
            vocab, lower_case = os.path.join(checkpoint or default_checkpoint_dir(),
                                             rundir.VOCAB), True
        else:
            pretrained = read_init_checkpoint(checkpoint)
            encoder_config = pretrained.config
            vocab, lower_case = pretrained.vocab_file, pretrained.lower_case
        classifier = build_now(build_classifier(model, encoder_config, num_labels, options))
        if pretrained is not None:
            assign_weights(classifier.encoder, pretrained.weights, pretrained.source)
        preprocessor = BertPairPreprocessor(vocab, lower_case, max_seq_length)
        task = tasks.pairs_task(labels=labels)
        config = {"model": model, "labels": labels, "task": "pairs", "lower_case": lower_case,
                  "max_seq_length": max_seq_length, "task_options": dict(task.options)}
        return cls(classifier, preprocessor, task, config)

    def preprocess(self, dataset):
        """Map a `tf.data` dataset of string batches ``(texts_a, texts_b, labels)`` to the
        ``(features, labels)`` the models train on (`VirtModel.fit`)."""
        prep = self.preprocessor
        return dataset.map(lambda a, b, y: (prep(a, b), y))

    def save(self, directory):
        """Write a model directory (weights, config, vocabulary) that `load` reads back."""
        meta = {k: v for k, v in self.config.items() if k not in ("model", "classifier",
                                                                 "vocab_file")}
        save_classifier(directory, self.model_name, self.classifier, meta,
                        self.preprocessor.vocab_file)
        self.directory = directory

    @property
    def model_name(self):
        """The registry name of the model (``virt``, ``siamese``, ``cross``...)."""
        return self.config["model"]

    @property
    def labels(self):
        """Label names in the order of the probabilities' columns."""
        return tuple(self.config.get("labels") or self.task.labels)

    @property
    def offline(self):
        """True when the texts are encoded apart (their states can be cached)."""
        return self.classifier.offline

    def predict(self, texts_a, texts_b, batch_size=64):
        """Probabilities `[n, num_labels]` (numpy, in ``labels`` order) for n text pairs."""
        texts_a, texts_b = list(texts_a), list(texts_b)
        if len(texts_a) != len(texts_b):
            raise ValueError(f"predict needs as many texts_a as texts_b, got {len(texts_a)} "
                             f"and {len(texts_b)}")
        return predict_probs(self.classifier, list(zip(texts_a, texts_b)), self.preprocessor,
                             batch_size)

    def encode(self, texts, ids=None, batch_size=64, float16=False, backend="tensorflow",
               openvino_model=None, openvino_precision="f32"):
        """The offline part on a list of texts: a `virt_tf.inference.state_cache.StateCache`
        (the format `python -m virt_tf.encode` writes; `state_cache.write_cache` saves it).

        ``backend``: ``tensorflow`` or ``openvino`` (OpenVINO's CPU runtime on the
        converted ``encode`` signature, optional package ``openvino``; ``openvino_model``:
        an IR folder of ``virt_tf.export --format=openvino`` of this directory, else the
        model is converted now). ``ids`` default to ``"1".."n"``.
        """
        texts = list(texts)
        ids = [str(i) for i in (ids if ids is not None else range(1, len(texts) + 1))]
        if len(ids) != len(texts):
            raise ValueError(f"encode needs one id a text, got {len(ids)} ids for "
                             f"{len(texts)} texts")
        return encode_cache(self, ids, texts, float16, batch_size, backend, openvino_model,
                            openvino_precision)

    def evaluate(self, examples, batch_size=64):
        """Task metrics on labelled `Example`s (e.g. from `read_split`)."""
        return evaluate_examples(self.classifier, examples, self.preprocessor,
                                 self.task.metrics, batch_size)

    def read_split(self, data_dir, split=None, skip_bad_rows=False):
        """A split of the model's task from ``data_dir`` (default: its evaluation split)."""
        return tasks.read_split(self.task, data_dir, split or self.config.get("eval_split", "dev"),
                                skip_bad_rows)


def task_of(config):
    """The `Task` a model directory was trained on, with its labels, metrics and fields."""
    name = config.get("task")
    options = dict(config.get("task_options") or {})
    if name == "pairs":
        options.setdefault("labels", config.get("labels") or [])
        options.setdefault("metrics", config.get("metrics") or ["accuracy"])
        return tasks.get_task("pairs", **options)
    return tasks.get_task(name)


def load(directory, max_seq_length=None):
    """`TextMatcher.from_directory`: a trained model directory, ready to score strings."""
    return TextMatcher.from_directory(directory, max_seq_length)


def read_init_checkpoint(path=None, lower_case=None):
    """Pretrained encoder weights for a new run: any format `read_pretrained` reads, or a
    model directory trained by this package (its encoder without the task head:
    intermediate fine-tuning, e.g. MNLI before RTE). Returns a `PretrainedBert`."""
    if path and os.path.isdir(path) and os.path.exists(rundir.path(path, rundir.MODEL_CONFIG)):
        classifier, model_config = load_classifier(path)
        vocab = rundir.path(path, model_config.get("vocab_file", rundir.VOCAB))
        if not os.path.exists(vocab):
            raise CheckpointError(f"{path}: no vocab.txt beside the model")
        encoder = classifier.encoder
        weights = {name: var.numpy() for name, var in encoder_variables(encoder).items()}
        return PretrainedBert(config=encoder.config, weights=weights, vocab_file=vocab,
                              lower_case=(model_config.get("lower_case", True)
                                          if lower_case is None else lower_case),
                              source=path, fmt="virt_tf")
    return read_pretrained(path, lower_case)


def encode_file(model_dir, input_path, output_path, float16=False, batch_size=64,
                max_seq_length=None, show_progress=True, backend="tensorflow",
                openvino_model=None, openvino_precision="f32"):
    """Encode the texts of ``input_path`` with the model of ``model_dir`` into a state cache
    at ``output_path`` (`virt_tf.inference.state_cache`).

    Cheap checks (the model kind, the openvino package, the texts, the length) come before
    the model is loaded. Returns a summary dict (texts, pieces, dtype, bytes, path, backend).
    """
    if batch_size <= 0:
        raise ConfigError(f"--batch_size must be positive, got {batch_size}")
    config = read_model_config(model_dir)
    if not get_spec(config["model"]).cls.offline:
        raise ConfigError(f"{model_dir} holds a {config['model']} model, which has no offline "
                          "part: it reads both texts together; encode needs a model that "
                          f"encodes its texts apart ({OFFLINE_MODELS})")
    if backend == "openvino":  # before reading anything: a missing package is one line
        openvino_backend.require_openvino()
    ids, texts = read_texts(input_path)
    length = max_seq_length or config.get("max_seq_length", 128)
    positions = config["classifier"]["encoder_config"]["max_position_embeddings"]
    if not 5 <= length <= positions:
        raise ConfigError(f"--max_seq_length must be in [5, {positions}], got {length}")
    matcher = load(model_dir, max_seq_length=length)
    cache = encode_cache(matcher, ids, texts, float16, batch_size, backend, openvino_model,
                         openvino_precision, show_progress)
    size = write_cache(output_path, cache)
    return {"texts": len(ids), "pieces": int(cache.offsets[-1]), "dtype": cache.meta["dtype"],
            "bytes": size, "path": output_path, "backend": backend}
