"""Run configuration: YAML defaults (configs/) overridden by flags, then validated; named
recipes (`configs/recipes/<name>.yaml`: the run options a recipe sets, as data).

``python -m virt_tf.train --recipe=NAME`` applies a recipe after the model's own options
(flags given on the command line still win); from Python, `recipe(NAME)` gives the same
options and the objective terms they make, for `virt_tf.VirtModel`.
"""
import dataclasses
import math
import os

import yaml


def find_config_dir():
    """The folder of the YAML configs: ``virt_tf/configs`` in an installed package (the wheel
    ships the repository's top-level ``configs/`` there), else ``configs/`` beside the
    package in a repository checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "configs")
    if os.path.isfile(os.path.join(installed, "base.yaml")):
        return installed
    return os.path.join(os.path.dirname(here), "configs")


CONFIG_DIR = find_config_dir()


from virt_tf.errors import ConfigError  # noqa: F401 (raised here, defined with the others)
from virt_tf.training.precision import CHOICES as PRECISIONS


def _load_yaml(path):
    if not os.path.exists(path):
        raise ConfigError(f"{path}: config file not found")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return data


def preset(name):
    """Encoder dimensions of a preset in configs/presets (data, not code)."""
    path = os.path.join(CONFIG_DIR, "presets", f"{name}.yaml")
    if not os.path.exists(path):
        known = sorted(f[:-5] for f in os.listdir(os.path.join(CONFIG_DIR, "presets")))
        raise ConfigError(f"unknown encoder preset {name!r}; known: {known}")
    return _load_yaml(path)


def model_names():
    """Models with a defaults file in configs/models (the registry has one row each)."""
    folder = os.path.join(CONFIG_DIR, "models")
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def load_config(task, model=None, extra_file=None, overrides=None, recipe=None):
    """base.yaml <- tasks/<task>.yaml <- models/<model>.yaml <- recipes/<recipe>.yaml
    <- extra_file <- overrides.

    ``overrides`` are the flags given on the command line (None values are skipped).
    """
    cfg = _load_yaml(os.path.join(CONFIG_DIR, "base.yaml"))
    task_file = os.path.join(CONFIG_DIR, "tasks", f"{task}.yaml")
    if os.path.exists(task_file):
        cfg.update(_load_yaml(task_file))
    if model is not None:
        if model not in model_names():
            raise ConfigError(f"unknown model {model!r}; known: {model_names()}")
        cfg.update(_load_yaml(os.path.join(CONFIG_DIR, "models", f"{model}.yaml")))
        cfg["model"] = model
    if recipe:
        cfg.update(recipe_options(recipe))
        cfg["recipe"] = recipe
    if extra_file:
        cfg.update(_load_yaml(extra_file))
    for k, v in (overrides or {}).items():
        if v is not None:
            cfg[k] = v
    cfg["task"] = task
    validate(cfg)
    return cfg


def validate(cfg):
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def positive(name, kind=float):
        v = cfg.get(name)
        if not number(v) or v <= 0:
            raise ConfigError(f"{name} must be a positive number, got {v!r}")
        if kind is int and int(v) != v:
            raise ConfigError(f"{name} must be an integer, got {v!r}")

    for name in ("batch_size", "epochs", "max_seq_length", "checkpoint_steps"):
        positive(name, int)
    positive("learning_rate")
    if cfg.get("teacher_epochs") is not None:
        positive("teacher_epochs", int)
    for name in ("virt_alpha", "logit_beta", "task_weight"):
        v = cfg.get(name, 0.0 if name != "task_weight" else 1.0)
        if not number(v) or v < 0:
            raise ConfigError(f"{name} must be >= 0, got {v!r}")
    if cfg.get("task_weight", 1.0) + cfg.get("virt_alpha", 0) + cfg.get("logit_beta", 0) <= 0:
        raise ConfigError("task_weight, virt_alpha and logit_beta are all 0: nothing to train on")
    for name in ("deformer_joint_layers", "dipair_x_tokens", "dipair_y_tokens", "poly_codes"):
        if cfg.get(name) is not None:
            positive(name, int)
    if cfg.get("poly_first_m") is not None:
        positive("poly_first_m", int)
    seed = cfg.get("seed", 0)
    if not number(seed) or int(seed) != seed or not 0 <= seed < 2 ** 32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    for name in ("warmup_ratio", "tune_fraction", "dropout_rate"):
        if not number(cfg.get(name, 0)):
            raise ConfigError(f"{name} must be a number, got {cfg.get(name)!r}")
    if cfg.get("temperature") is not None:
        positive("temperature")
    if not 0 <= cfg.get("warmup_ratio", 0) < 1:
        raise ConfigError(f"warmup_ratio must be in [0, 1), got {cfg['warmup_ratio']!r}")
    if not 0 <= cfg.get("tune_fraction", 0) < 1:
        raise ConfigError(f"tune_fraction must be in [0, 1), got {cfg['tune_fraction']!r}")
    if not 0 <= cfg.get("dropout_rate", 0) < 1:
        raise ConfigError(f"dropout_rate must be in [0, 1), got {cfg['dropout_rate']!r}")
    if cfg["max_seq_length"] < 5 or cfg["max_seq_length"] > 512:
        raise ConfigError(f"max_seq_length must be in [5, 512], got {cfg['max_seq_length']}")
    choices = {"virt_head": ("adapted", "simple"), "fusion": ("paper", "code", "concat"),
               "virt_norm": ("squared", "frobenius", "kl"), "distill_loss": ("kl", "mse"),
               "virt_alpha_schedule": ("constant", "linear"),
               "virt_pairs": ("all", "augmented", "gold"),
               "precision": PRECISIONS, "select_epoch": ("last", "best_tune")}
    for name, allowed in choices.items():
        if cfg.get(name) not in allowed:
            raise ConfigError(f"{name} must be one of {allowed}, got {cfg.get(name)!r}")
    for name in ("max_train_examples", "max_eval_examples", "max_tune_examples"):
        if cfg.get(name) is not None:
            positive(name, int)
    augment = cfg.get("augment") or []
    if isinstance(augment, str):
        augment = [a for a in augment.split(",") if a]
    unknown = [a for a in augment if a not in AUGMENT_SOURCES]
    if unknown:
        raise ConfigError(f"augment: unknown sources {unknown}; known: {list(AUGMENT_SOURCES)}")
    cfg["augment"] = list(augment)
    if augment:
        positive("augment_multiple")
    return cfg


# Sources of teacher-labelled training pairs (virt_tf.data.augment).
AUGMENT_SOURCES = ("pool", "random", "overlap", "edit")


def recipe_names():
    """Named training recipes: configs/recipes/<name>.yaml (flags as data)."""
    folder = os.path.join(CONFIG_DIR, "recipes")
    if not os.path.isdir(folder):
        return []
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def recipe_options(name):
    """The options recipe ``name`` sets (a mapping of option: value)."""
    if name not in recipe_names():
        raise ConfigError(f"unknown recipe {name!r}; known: {recipe_names()}")
    options = _load_yaml(os.path.join(CONFIG_DIR, "recipes", f"{name}.yaml"))
    if "model" in options or "task" in options:
        raise ConfigError(f"recipe {name!r} may not set the model or the task "
                          "(a recipe works with every representation model)")
    return options


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named recipe: ``options`` as its YAML file sets them."""
    name: str
    options: dict

    def config(self, task="pairs", model="siamese", **overrides):
        """The whole run configuration of ``model`` on ``task`` under this recipe."""
        return load_config(task, model, overrides=overrides, recipe=self.name)

    def terms(self, model="siamese"):
        """The objective terms (`virt_tf.losses`) the recipe trains ``model`` with."""
        from virt_tf.losses import objective_from_config  # pylint: disable=import-outside-toplevel
        return objective_from_config(self.config(model=model))

    @property
    def augment(self):
        """``(sources, multiple)`` of its teacher-labelled augmentation (sources may be [])."""
        cfg = self.config()
        return list(cfg["augment"]), float(cfg["augment_multiple"])


def recipe(name):
    """The recipe ``name`` of configs/recipes (`ConfigError` naming the known ones)."""
    return Recipe(name, dict(recipe_options(name)))

