"""The run options: one schema for every option of a training run.

`RunOptions` is the schema. Each field is one option, written once: its name, its type (the
annotation), its default, its choices, its help and its check. Everything else derives from
it: the absl flags of ``python -m virt_tf.train`` (`define_flags`), validation (a
`RunOptions` checks itself when it is made), the options a flag may override
(`OVERRIDABLE`), the defaults a resume gives a setting an older ``stage.json`` lacks and the
heads' defaults (`virt_tf.config.defaults`).

A field marked `PAPER` has no default here: its value is the paper's setup (section 4.3.2),
kept as data in ``configs/base.yaml``. Every other default is here, in this file only. So a
new head option is one field below plus the head that reads it (its ``RUN_OPTIONS``,
`virt_tf.heads.base.PairHead`).

A `RunOptions` is frozen; read it as attributes (``options.seed``) or as a read-only mapping
(``options["seed"]``, ``options.get("seed")``, ``dict(options)``), and derive another with
`RunOptions.replace`. It holds the options that decide what a stage computes, no more: the
run's inputs (folders, checkpoints, the distribution strategy...) are `PipelineOptions`, the
testing-only faults `DebugOptions`. Nothing here reads YAML or command-line flags:
`virt_tf.config.load_config` layers the YAML files and the flags given into a `RunOptions`.
"""
import dataclasses
import math
import typing
from collections import abc
from typing import Optional

from absl import flags

from virt_tf.errors import ConfigError
from virt_tf.training.precision import CHOICES as PRECISIONS
from virt_tf.training.safe_writes import parse_write_fault

# Sources of teacher-labelled training pairs (`virt_tf.data.augment`).
AUGMENT_SOURCES = ("pool", "random", "overlap", "edit")

PAPER = "configs/base.yaml"  # the value of a field marked so: the paper's setup, as data


# Run options that do not change what a stage trains: a resume may change them.
RESUME_FREE = frozenset({"checkpoint_steps", "max_eval_examples", "eval_split"})


def changed_settings(saved, now, defaults):
    """``{setting: (saved, now)}`` of every setting of ``now`` whose value differs from the
    ``saved`` one (a ``stage.json``); a setting ``saved`` lacks counts as its value in
    ``defaults``, so adding an option changes nothing that older runs recorded."""
    return {k: (saved.get(k, defaults.get(k)), v) for k, v in now.items()
            if saved.get(k, defaults.get(k)) != v}


# ------------------------------------------------------------------------------ checks
def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive(name, value):
    """A finite number > 0."""
    if not _number(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def positive_int(name, value):
    """A whole number > 0 (``3.0`` passes, as YAML may write it)."""
    positive(name, value)
    if int(value) != value:
        raise ConfigError(f"{name} must be an integer, got {value!r}")


def non_negative(name, value):
    """A finite number >= 0."""
    if not _number(value) or value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


def fraction(name, value):
    """A number in [0, 1)."""
    if not _number(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not 0 <= value < 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")


def seed_range(name, value):
    """A whole number in [0, 2**32) (numpy's seeds)."""
    if not _number(value) or int(value) != value or not 0 <= value < 2 ** 32:
        raise ConfigError(f"{name} must be an integer in [0, 2**32), got {value!r}")


def sequence_length(name, value):
    """Word pieces of a packed pair: a whole number in [5, 512]."""
    positive_int(name, value)
    if not 5 <= value <= 512:
        raise ConfigError(f"{name} must be in [5, 512], got {value}")


def file_name(name, value):
    """A non-empty string (a path; whether the file exists is checked when it is read)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a file name, got {value!r}")


def augment_sources(name, value):
    """A list of `AUGMENT_SOURCES` (a comma-separated string is split); returns the list."""
    sources = value or []
    if isinstance(sources, str):
        sources = [s for s in sources.split(",") if s]
    unknown = [s for s in sources if s not in AUGMENT_SOURCES]
    if unknown:
        raise ConfigError(f"{name}: unknown sources {unknown}; known: {list(AUGMENT_SOURCES)}")
    return list(sources)


def option(default=PAPER, text="", *, check=None, choices=(), flag=True, override=True):
    """One field of `RunOptions`: its default (`PAPER`: set by configs/base.yaml), its help
    ``text`` (that of its flag), the ``check`` its value passes (a function ``(name, value)``
    that raises `ConfigError`, or returns the normalised value), its ``choices``, and whether
    ``python -m virt_tf.train`` has a flag for it (``flag``) that overrides the YAML files
    (``override``; ``--recipe`` names a file instead)."""
    metadata = {"help": text, "check": check, "choices": tuple(choices), "flag": flag,
                "override": override, "paper": default is PAPER}
    if default is PAPER:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# ------------------------------------------------------------------------------ the schema
@dataclasses.dataclass(frozen=True, kw_only=True)
class RunOptions(abc.Mapping):  # pylint: disable=too-many-instance-attributes
    """Every option of a training run (see the module docstring). The field order is the
    order ``model_config.json`` records them in (``train_config``)."""
    # The paper's setup (section 4.3.2); values in configs/base.yaml.
    learning_rate: float = option(text="Peak learning rate (paper: 5e-5).", check=positive)
    batch_size: int = option(text="Batch size (paper: 28).", check=positive_int)
    warmup_ratio: float = option(text="Share of steps of linear warmup (paper: 0.1).",
                                 check=fraction)
    adam_epsilon: float = option(text="Adam's epsilon.", flag=False)
    adam_beta_1: float = option(text="Adam's beta_1.", flag=False)
    adam_beta_2: float = option(text="Adam's beta_2.", flag=False)
    clipnorm: Optional[float] = option(None, "Clip each gradient to this norm (null: no "
                                       "clipping).", flag=False)
    max_seq_length: int = option(text="Pair length budget in word pieces.",
                                 check=sequence_length)
    epochs: int = option(text="Training epochs (paper: MNLI 5, RTE 30, QQP 5, BoolQ 30).",
                         check=positive_int)
    teacher_epochs: Optional[int] = option(None, "Teacher epochs in the pipeline (default: "
                                           "--epochs).", check=positive_int)
    dropout_rate: float = option(text="Dropout of the head, and of the encoder when given "
                                 "(default: the checkpoint's own).", check=fraction)
    tune_fraction: float = option(text="Share of train held out for tuning (paper: 0.1).",
                                  check=fraction)
    eval_split: str = option("dev", "dev (default), dev_matched, dev_mismatched, or tune (the "
                             "held-out share of train, for hyper-parameter sweeps).")
    seed: int = option(0, "Seed of data order, initialisation and dropout.", check=seed_range)
    # VIRT (Eq. 5-10)
    virt_alpha: float = option(text="Weight of L_virt (Eq. 10); 0 = w/o VIRT.",
                               check=non_negative)
    virt_norm: str = option("squared", "Distance of Eq. 7: squared Frobenius (default), "
                            "Frobenius, or per-row KL(teacher || student).",
                            choices=("squared", "frobenius", "kl"))
    virt_layers: Optional[list] = option(None, "Student layers to distil (default all).")
    virt_head: str = option("adapted", "Head of --model=virt; simple = w/o VIRT-A.",
                            choices=("adapted", "simple"))
    fusion: str = option("paper", "Eq. 9 features: paper, released code, or concat (the "
                         "paper's literal [u; v] Siamese head).",
                         choices=("paper", "code", "concat"))
    pool_padding: bool = option(False, "Mean over the padded length in Eq. 8 (released code).")
    logit_beta: float = option(0.0, "Weight of DSE-style logit distillation.",
                               check=non_negative)
    temperature: Optional[float] = option(1.0, "Temperature of the logit distillation.",
                                          check=positive)
    distill_loss: str = option("kl", "Logit distillation: tempered KL (DSE) or the mean "
                               "squared difference of the logits.", choices=("kl", "mse"))
    cache_teacher_logits: bool = option(True, "Compute the frozen teacher's logits of the "
                                        "training pairs once a stage (when no term needs its "
                                        "attention scores).")
    virt_alpha_schedule: str = option("constant", "alpha over training: constant, or "
                                      "decaying linearly to 0.",
                                      choices=("constant", "linear"))
    virt_pairs: str = option("all", "Pairs L_virt applies to: all, the teacher-labelled "
                             "augmented ones only, or the gold ones only.",
                             choices=("all", "augmented", "gold"))
    # Teacher-labelled augmentation (virt_tf.data.augment); needs a teacher
    augment: list = option([], "Teacher-labelled extra pairs from the training texts: pool "
                           "(training pairs past --max_train_examples, gold labels dropped), "
                           "random, overlap (re-paired), edit (edited second text).",
                           check=augment_sources)
    augment_multiple: float = option(1.0, "Extra pairs per gold training pair.")
    unlabelled: Optional[str] = option(None, "A file of unlabelled in-domain pairs (TSV with "
                                       "a header, or JSON lines; the fields of "
                                       "--text_a_field/--text_b_field, labels ignored): the "
                                       "teacher labels them and the student learns from its "
                                       "soft labels. Needs a teacher term.", check=file_name)
    recipe: Optional[str] = option(None, "A named training recipe, configs/recipes/NAME.yaml "
                                   "(its options; flags given on the command line override "
                                   "them).", override=False)
    task_weight: float = option(1.0, "Weight of the cross-entropy (DSE: 0.5).",
                                check=non_negative)
    # Model options (configs/models/<name>.yaml sets what a model implies)
    deformer_joint_layers: Optional[int] = option(1, "DeFormer: upper layers run jointly "
                                                  "(paper: 1).", check=positive_int)
    dipair_x_tokens: Optional[int] = option(8, "DiPair: first states of x read online (8).",
                                            check=positive_int)
    dipair_y_tokens: Optional[int] = option(16, "DiPair: first states of y read online (16).",
                                            check=positive_int)
    poly_codes: Optional[int] = option(360, "Poly-encoder: learned codes (paper: 360).",
                                       check=positive_int)
    poly_first_m: Optional[int] = option(None, "Poly-encoder: use x's first m states instead "
                                         "of learned codes (released code: 64).",
                                         check=positive_int)
    # Speed
    precision: str = option("float32", "Compute precision of training (weights and losses "
                            "stay float32; mixed_float16 with dynamic loss scaling; auto: from "
                            "the hardware, docs/precision.md).", choices=PRECISIONS)
    length_buckets: bool = option(True, "Batches of similar length (seeded, deterministic).")
    jit_compile: bool = option(False, "Compile the train step with XLA.")
    select_epoch: str = option("last", "Keep the last epoch's weights or those of the epoch "
                               "with the best tune-split accuracy.",
                               choices=("last", "best_tune"))
    checkpoint_steps: int = option(200, "Save a resumable checkpoint every N steps.",
                                   check=positive_int)
    max_train_examples: Optional[int] = option(None, "Use the first N training examples "
                                               "(after the tuning hold-out).",
                                               check=positive_int)
    max_eval_examples: Optional[int] = option(None, "Score the first N evaluation examples.",
                                              check=positive_int)
    max_tune_examples: Optional[int] = option(None, "Use the first N pairs of the tune split "
                                              "(per-epoch validation and epoch choice; quick "
                                              "runs).", check=positive_int)
    freeze_word_embeddings: bool = option(False, "Leave the word-embedding table out of the "
                                          "trained variables (students only: the "
                                          "pipeline's teacher stage trains it).")
    embedding_updates: str = option("dense", "Adam on embedding tables: dense (every row, "
                                    "every step) or lazy (moments and update only for the "
                                    "rows in the batch; students only).",
                                    choices=("dense", "lazy"))
    # The run's task and model (their flags, with defaults, are `virt_tf.train`'s own)
    task: str = option(None, "rte | mrpc | qqp | mnli | boolq | pairs", flag=False)
    model: Optional[str] = option(None, "The registry name of the model trained.", flag=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            normalised = _check(f, value)
            if normalised is not None and normalised is not value:
                object.__setattr__(self, f.name, normalised)
        if self.task_weight + self.virt_alpha + self.logit_beta <= 0:
            raise ConfigError("task_weight, virt_alpha and logit_beta are all 0: nothing to "
                              "train on")
        if self.augment:
            positive("augment_multiple", self.augment_multiple)

    @classmethod
    def from_values(cls, values, source="the run options"):
        """A checked `RunOptions` of ``values`` (a mapping: every `PAPER` option and
        ``task`` must be there); an unknown name is a `ConfigError` naming ``source``."""
        unknown = sorted(set(values) - set(NAMES))
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {unknown}")
        missing = [n for n in NAMES if n not in values and _required(FIELDS[n])]
        if missing:
            raise ConfigError(f"{source}: no value for {missing}")
        return cls(**values)

    def replace(self, **changes):
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def __getitem__(self, name):
        if name not in FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self):
        return iter(NAMES)

    def __len__(self):
        return len(NAMES)


FIELDS = {f.name: f for f in dataclasses.fields(RunOptions)}
NAMES = tuple(FIELDS)
# Options a flag of `virt_tf.train` overrides (``--recipe`` instead names a file to layer).
OVERRIDABLE = tuple(n for n, f in FIELDS.items() if f.metadata["flag"] and f.metadata["override"])


def _required(field):
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _allows_none(field):
    """Whether the annotation is ``Optional[...]``."""
    return type(None) in typing.get_args(field.type)


def _value_type(field):
    """The annotation without ``Optional``: int, float, str, bool or list."""
    args = [a for a in typing.get_args(field.type) if a is not type(None)]
    return args[0] if args else field.type


def _check(field, value):
    """Check ``value`` of ``field``; returns it normalised (or None: unchanged)."""
    name, meta = field.name, field.metadata
    if value is None and (_allows_none(field) or not (meta["check"] or meta["choices"])):
        return None
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(f"{name} must be one of {meta['choices']}, got {value!r}")
    return meta["check"](name, value) if meta["check"] else None


def paper_options():
    """The names of the options whose value is the paper's, in configs/base.yaml."""
    return tuple(n for n, f in FIELDS.items() if f.metadata["paper"])


def schema_defaults():
    """``{name: default}`` of every option with a default here (not the `PAPER` ones)."""
    out = {}
    for name, f in FIELDS.items():
        if f.default is not dataclasses.MISSING:
            out[name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[name] = f.default_factory()
    return out


# ------------------------------------------------------------------------------ flags
def define_flags(flag_values):
    """Define one absl flag per option that has one, on ``flag_values`` (an absl
    `FlagValues`): the option's name, type, choices and help, default None so that the YAML
    files layer under a flag not given."""
    for name, f in FIELDS.items():
        if not f.metadata["flag"]:
            continue
        kind, meta = _value_type(f), f.metadata
        common = dict(name=name, default=None, help=meta["help"], flag_values=flag_values)
        if meta["choices"]:
            flags.DEFINE_enum(enum_values=list(meta["choices"]), **common)
        elif kind is bool:
            flags.DEFINE_bool(**common)
        elif kind is int:
            flags.DEFINE_integer(**common)
        elif kind is float:
            flags.DEFINE_float(**common)
        elif kind is list:
            flags.DEFINE_list(**common)
        else:
            flags.DEFINE_string(**common)


def flag_overrides(values):
    """The overrides of the flags given: ``values`` maps each `OVERRIDABLE` name to its flag's
    value (None: not given, left out). ``--virt_layers`` lists layer numbers."""
    out = {name: values[name] for name in OVERRIDABLE if values.get(name) is not None}
    if "virt_layers" in out:
        out["virt_layers"] = [int(x) for x in out["virt_layers"]]
    return out


def parse_overrides(args):
    """The run-option overrides among command-line ``args`` (``--name=value``, ``--flag`` /
    ``--noflag``), typed as ``python -m virt_tf.train`` types them; other arguments (paths,
    inputs) are left out. Later arguments win, as on a command line."""
    kept = []
    for arg in args:
        name = arg.lstrip("-").split("=", 1)[0]
        if name in OVERRIDABLE or (name.startswith("no") and name[2:] in OVERRIDABLE):
            kept.append(arg)
    values = flags.FlagValues()
    define_flags(values)
    try:
        values(["parse_overrides"] + kept)
    except flags.Error as e:
        raise ConfigError(f"{' '.join(kept)}: {e}") from e
    return flag_overrides({name: getattr(values, name) for name in OVERRIDABLE})


# ------------------------------------------------------------------------------ the run
@dataclasses.dataclass(frozen=True)
class DebugOptions:
    """Testing only: faults a run injects into itself (each None: none).

    ``nan_at_step``: the loss of that optimizer step is NaN (every stage);
    ``overflow_at_step``: the scaled float16 gradients of that step overflow (every stage;
    needs ``mixed_float16``); ``write_fault``: one write of the last stage fails
    (`virt_tf.training.safe_writes.parse_write_fault`); ``worker_weights``: a folder every
    worker writes its final weights to."""
    nan_at_step: Optional[int] = None
    overflow_at_step: Optional[int] = None
    write_fault: Optional[str] = None
    worker_weights: Optional[str] = None

    def __post_init__(self):
        if self.nan_at_step is not None and self.nan_at_step < 1:
            raise ConfigError(f"--debug_nan_at_step must be >= 1, got {self.nan_at_step}")
        try:
            parse_write_fault(self.write_fault)
        except ValueError as e:
            raise ConfigError(f"--debug_write_fault: {e}") from e

    def check_overflow(self, policy):
        """`ConfigError` unless ``overflow_at_step`` is unset, or >= 1 under ``policy``
        ``mixed_float16`` (the resolved precision)."""
        step = self.overflow_at_step
        if step is not None and (step < 1 or policy != "mixed_float16"):
            raise ConfigError("--debug_overflow_at_step needs a step >= 1 and "
                              f"--precision=mixed_float16 (got {step}, {policy})")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineOptions:  # pylint: disable=too-many-instance-attributes
    """A whole ``python -m virt_tf.train`` run: its `RunOptions` and its inputs.

    ``model_dir``: the output folder; ``data_dir``: the task's files (None: tensorflow-
    datasets); ``teacher_dir``: a trained cross-encoder to reuse; ``init_checkpoint``: the
    pretrained BERT (None: the default checkpoint) unless ``encoder_preset`` names a random
    encoder of configs/presets (with ``vocab_file``); ``encoder_dropout_rate``: the dropout of
    the encoder too (None: the checkpoint's own); ``distribution_strategy``, ``tpu``,
    ``cpu_devices``: `virt_tf.training.distribute.get_strategy`; ``label_names``,
    ``text_a_field``, ``text_b_field``, ``label_field``, ``metrics``: the ``pairs`` task's
    layout; ``verbose``: Keras' verbosity (None: a progress bar on a terminal, else a line an
    epoch); ``skip_bad_rows``: skip and count malformed rows; ``debug``: `DebugOptions`.
    `virt_tf.config.pipeline_options` builds one from keyword arguments.
    """
    options: RunOptions
    model_dir: str
    data_dir: Optional[str] = None
    teacher_dir: Optional[str] = None
    init_checkpoint: Optional[str] = None
    encoder_preset: Optional[str] = None
    vocab_file: Optional[str] = None
    encoder_dropout_rate: Optional[float] = None
    distribution_strategy: str = "default"
    tpu: Optional[str] = None
    cpu_devices: Optional[int] = None
    label_names: Optional[tuple] = None
    text_a_field: str = "text_a"
    text_b_field: str = "text_b"
    label_field: str = "label"
    metrics: Optional[tuple] = None
    verbose: Optional[int] = None
    skip_bad_rows: bool = False
    debug: DebugOptions = DebugOptions()

    def __post_init__(self):
        if not self.model_dir:
            raise ConfigError("--model_dir is required")


PIPELINE_FIELDS = tuple(f.name for f in dataclasses.fields(PipelineOptions)
                        if f.name != "options")
