"""Every module of tools/ and every CLI of virt_tf can be imported together in one process.

A flag defined at import time in two modules (say `--data_dir`) is an absl
DuplicateFlagError that stops pytest at collection; the tools define their flags only
when run as scripts.
"""
import glob
import importlib
import os
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
        for cli in ["evaluate", "export", "encode", "score", "train"]:
            importlib.import_module("virt_tf." + cli)
    finally:
        sys.path.remove(os.path.join(ROOT, "tools"))
