"""Every module of tools/ and every CLI of virt_tf can be imported together in one process.

A flag defined at import time in two modules (say `--data_dir`) is an absl
DuplicateFlagError that stops pytest at collection; the tools define their flags only
when run as scripts.
"""
import glob
import importlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_all_tools_and_clis_import_side_by_side():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        names = sorted(os.path.splitext(os.path.basename(p))[0]
                       for p in glob.glob(os.path.join(ROOT, "tools", "*.py")))
        assert {"compare_runs", "virt_alignment", "plot_attention", "profile_flops"} <= set(names)
        for name in names:
            importlib.import_module(name)
        for cli in ["evaluate", "export", "encode", "score", "train", "index", "search"]:
            importlib.import_module("virt_tf." + cli)
    finally:
        sys.path.remove(os.path.join(ROOT, "tools"))


def test_commands_import_no_tensorflow_before_their_checks():
    """A command module holds flags and main only: importing it (as ``--help`` and the path
    checks do) loads neither TensorFlow nor the library behind it (for search: neither ScaNN
    nor ir-measures, optional packages that a missing one must be reported before)."""
    code = ("import sys\n"
            "import virt_tf.encode, virt_tf.score, virt_tf.export, virt_tf.evaluate\n"
            "import virt_tf.index, virt_tf.search\n"
            "heavy = sorted(m for m in ('tensorflow', 'keras', 'virt_tf.inference.state_cache',\n"
            "                           'virt_tf.inference.matcher', 'virt_tf.retrieval.index',\n"
            "                           'virt_tf.retrieval.searcher', 'scann', 'ir_measures')\n"
            "               if m in sys.modules)\n"
            "print(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
