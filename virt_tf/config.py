"""Run configuration as data: the YAML files of ``configs/`` layered into a `RunOptions`,
and named recipes (``configs/recipes/<name>.yaml``: the run options a recipe sets).

The options themselves (names, types, defaults, choices, checks) are the schema of
`virt_tf.options`; here they get their values: the schema's defaults <- ``base.yaml`` (the
paper's setup) <- ``tasks/<task>.yaml`` <- ``models/<model>.yaml`` <- a recipe <- an extra
file <- the flags given (`load_config`). ``python -m virt_tf.train --recipe=NAME`` applies a
recipe after the model's own options (flags given on the command line still win); from
Python, `recipe(NAME)` gives the same options and the objective terms they make, for
`virt_tf.VirtModel`, and `pipeline_options` a whole training run for
`virt_tf.train_pipeline`.
"""
import dataclasses
import os

import yaml

from virt_tf.errors import ConfigError
from virt_tf.options import (NAMES, PIPELINE_FIELDS, PipelineOptions, RunOptions,
                             paper_options, schema_defaults)


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


def _load_yaml(path):
    if not os.path.exists(path):
        raise ConfigError(f"{path}: config file not found")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return data


def _options_file(path):
    """The options of a YAML file; a name that is no option is a `ConfigError`."""
    data = _load_yaml(path)
    unknown = sorted(set(data) - set(NAMES))
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {unknown}")
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


def defaults():
    """``{option: value}`` before any task, model or flag: the schema's defaults with
    configs/base.yaml (the paper's setup) over them, in the schema's order. A setting that a
    ``stage.json`` written before the option existed lacks counts as this, and a head built
    from a partial mapping gets these."""
    path = os.path.join(CONFIG_DIR, "base.yaml")
    base = _options_file(path)
    missing = [n for n in paper_options() if n not in base]
    if missing:
        raise ConfigError(f"{path}: no value for {missing}")
    values = dict(schema_defaults(), **base)
    return {n: values[n] for n in NAMES if n in values}


def load_config(task, model=None, extra_file=None, overrides=None, recipe=None):
    """`RunOptions` of ``defaults()`` <- tasks/<task>.yaml <- models/<model>.yaml <-
    recipes/<recipe>.yaml <- ``extra_file`` <- ``overrides``, checked.

    ``overrides`` are the flags given on the command line (None values are skipped).
    """
    values = defaults()
    task_file = os.path.join(CONFIG_DIR, "tasks", f"{task}.yaml")
    if os.path.exists(task_file):
        values.update(_options_file(task_file))
    if model is not None:
        if model not in model_names():
            raise ConfigError(f"unknown model {model!r}; known: {model_names()}")
        values.update(_options_file(os.path.join(CONFIG_DIR, "models", f"{model}.yaml")))
        values["model"] = model
    if recipe:
        values.update(recipe_options(recipe))
        values["recipe"] = recipe
    if extra_file:
        values.update(_options_file(extra_file))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values["task"] = task
    return RunOptions.from_values(values, source="the options given")


def pipeline_options(task="rte", model="virt", *, model_dir, config=None, recipe=None,
                     **kwargs):
    """A `PipelineOptions`: ``python -m virt_tf.train`` as keyword arguments.

    ``config`` is an extra YAML file (``--config``), ``recipe`` a recipe's name; ``kwargs``
    are run options (`RunOptions` names: ``epochs=1``, ``virt_alpha=0.5``...), which override
    the YAML files as flags do, and the run's inputs (`PipelineOptions` fields:
    ``data_dir``, ``encoder_preset``, ``debug``...). A ``dropout_rate`` given here is the
    encoder's too, as ``--dropout_rate`` is.
    """
    inputs = {k: kwargs.pop(k) for k in list(kwargs) if k in PIPELINE_FIELDS}
    options = load_config(task, model, config, kwargs, recipe=recipe)
    inputs.setdefault("encoder_dropout_rate", kwargs.get("dropout_rate"))
    return PipelineOptions(options=options, model_dir=model_dir, **inputs)


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
    options = _options_file(os.path.join(CONFIG_DIR, "recipes", f"{name}.yaml"))
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
        """The whole run configuration (`RunOptions`) of ``model`` on ``task`` under this
        recipe."""
        return load_config(task, model, overrides=overrides, recipe=self.name)

    def terms(self, model="siamese"):
        """The objective terms (`virt_tf.losses`) the recipe trains ``model`` with."""
        # losses loads TensorFlow; the commands read configs before it (fast flag errors)
        from virt_tf.losses import objective_from_config  # pylint: disable=import-outside-toplevel  (loads tensorflow)
        return objective_from_config(self.config(model=model))

    @property
    def augment(self):
        """``(sources, multiple)`` of its teacher-labelled augmentation (sources may be [])."""
        cfg = self.config()
        return list(cfg["augment"]), float(cfg["augment_multiple"])


def recipe(name):
    """The recipe ``name`` of configs/recipes (`ConfigError` naming the known ones)."""
    return Recipe(name, dict(recipe_options(name)))
