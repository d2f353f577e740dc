"""Console entry points of an installed package (``pyproject.toml``'s ``[project.scripts]``).

``virt-tf-train`` is ``python -m virt_tf.train``, and so on for ``evaluate``,
``export``, ``encode``, ``score``, ``index`` and ``search``: the same absl flags, the same
exit codes.
"""
import importlib
import sys

from absl import flags

from virt_tf.cli.common import run_main


def _run(module_name):
    """Run the command module ``module_name`` as ``python -m`` would: its flags, its main."""
    module = importlib.import_module(module_name)
    if hasattr(module, "define_flags"):  # train.py defines its flags at import
        module.define_flags()
    # --help lists the main module's flags: the script's, here the entry point module's
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    run_main(module.main)


def train():
    """``virt-tf-train``: ``python -m virt_tf.train``."""
    _run("virt_tf.train")


def evaluate():
    """``virt-tf-evaluate``: ``python -m virt_tf.evaluate``."""
    _run("virt_tf.evaluate")


def export():
    """``virt-tf-export``: ``python -m virt_tf.export``."""
    _run("virt_tf.export")


def encode():
    """``virt-tf-encode``: ``python -m virt_tf.encode``."""
    _run("virt_tf.encode")


def score():
    """``virt-tf-score``: ``python -m virt_tf.score``."""
    _run("virt_tf.score")


def index():
    """``virt-tf-index``: ``python -m virt_tf.index``."""
    _run("virt_tf.index")


def search():
    """``virt-tf-search``: ``python -m virt_tf.search``."""
    _run("virt_tf.search")
