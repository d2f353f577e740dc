"""Named training recipes: a recipe is data, `configs/recipes/<name>.yaml`, a mapping of
the run options it sets (objective weights, distillation form, augmentation...).

``python -m virt_tf.train --recipe=NAME`` applies it after the model's own options
(flags given on the command line still win); from Python, `recipe(NAME)` gives the
same options and the objective terms they make, for `virt_tf.VirtModel`.
"""
import dataclasses

from virt_tf.config import load_config, recipe_names, recipe_options


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


__all__ = ["Recipe", "recipe", "recipe_names"]
