"""Console entry points of an installed package (``pyproject.toml``'s ``[project.scripts]``).

``virt-tf-train`` is ``python -m virt_tf.train``, and so on for ``evaluate``,
``export``, ``encode`` and ``score``: the same absl flags, the same exit codes.
"""
import importlib
import sys


def _run(module_name):
    from absl import app, flags  # pylint: disable=import-outside-toplevel
    module = importlib.import_module(module_name)
    if hasattr(module, "define_flags"):  # train.py defines its flags at import
        module.define_flags()
    # --help lists the main module's flags: the script's, here the entry point module's
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(module.main)


def train():
    _run("virt_tf.train")


def evaluate():
    _run("virt_tf.evaluate")


def export():
    _run("virt_tf.export")


def encode():
    _run("virt_tf.encode")


def score():
    _run("virt_tf.score")
