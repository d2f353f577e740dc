"""Retrieval: a corpus encoded once into a ScaNN index, top-k search, re-ranking, metrics.

A representation model (siamese, virt, ...) encodes each text alone, so a corpus is encoded
offline and a query is matched against all of it by one vector search; the best candidates
are then re-ranked, by the model's own pair head on the cached token states or by a
cross-encoder teacher. Modules, lowest first (each imports only those before it):

* `corpus`: corpus, queries, qrels and TREC run files (no TensorFlow);
* `metrics`: nDCG@10, MRR@10, Recall@100 through ``ir-measures`` (no TensorFlow);
* `searcher`: the ScaNN searcher (exact brute force, or a tree with asymmetric hashing);
* `index`: `Index`, the job of ``python -m virt_tf.index`` and ``python -m virt_tf.search``;
* `qqp`: the duplicate-question retrieval set built from labelled QQP pairs.

The constants below are the values of command-line flags and the check of the optional
packages: they live here so that a command's ``--help`` and its checks import no TensorFlow.
"""
import importlib.util

from virt_tf.errors import MissingDependencyError

RETRIEVAL_INSTALL = ("pip install '.[retrieval]' in the repository (the package extra), or "
                     "pip install -r requirements.txt")
RERANK_MODES = ("none", "model", "teacher")  # the second stage of a search
# the optional packages: import name -> distribution name
PACKAGES = {"scann": "scann", "ir_measures": "ir-measures"}


def require(*modules):
    """Check that the optional packages ``modules`` (import names of `PACKAGES`) are
    installed, without importing them (ScaNN loads TensorFlow): a missing one is a
    `MissingDependencyError` naming the package extra that installs it."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"retrieval needs the optional package {PACKAGES.get(module, module)}, which "
                f"is not installed; install it with: {RETRIEVAL_INSTALL}")
