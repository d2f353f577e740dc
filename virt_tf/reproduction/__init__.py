"""The reproduction grid as a library: plan, run, report, plot.

* `grid`: the profiles of ``configs/grid.yaml`` -> cells (one ``python -m
  virt_tf.train`` run each), their commands, time estimates, the resumable runner;
* `report`: finished cells -> ``results.json`` and ``REPORT.md`` (mean ± sd over
  seeds, gap closed, exact McNemar per seed and pooled, agreement with the
  teacher, train minutes, online cost, the paper's numbers), the README block;
* `plots`: accuracy, cost against accuracy, tune curves, training curves, L_virt
  per layer;
* `alignment`: per-layer L_virt of each student against its teacher
  (`virt_tf.evaluation.alignment`), cached in its cell;
* `screen`: a screen of training levers read back into one table;
* `markdown_blocks`: the generated blocks of Markdown files (the README's results).

``tools/reproduce.py`` is the command line. Only `alignment` imports TensorFlow at
import time (the command imports it only for the alignment): the planner (``--plan``)
never loads it, nor does a report without the alignment whose online costs are cached.
"""
import importlib

_SUBMODULES = ("grid", "report", "plots", "alignment", "screen", "markdown_blocks")


def __getattr__(name):
    """``virt_tf.reproduction.grid`` and its siblings as attributes, imported on first use
    (so that importing the package loads no TensorFlow)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
