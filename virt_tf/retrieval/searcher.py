"""The first stage of a search: maximum inner product over the corpus vectors with ScaNN.

Vectors are L2-normalised, so the inner product is the cosine. Below
``SearcherOptions.brute_force_below`` documents the searcher is exact (ScaNN's brute force
in float32); from there on it is a k-means tree over the vectors (``num_leaves``, of which
``leaves_to_search`` are scored a query) with anisotropic asymmetric hashing
(``dims_per_block`` dimensions a 4-bit code, ``anisotropic_threshold``), the best
``reorder`` candidates re-scored exactly. `exact_top_k` is the numpy reference.

A searcher is stored in a folder of ScaNN's own files (``serialize`` with relative paths,
so the folder can move); no pickle is written or read.
"""
import dataclasses
import math
import os

import numpy as np

from virt_tf.errors import ConfigError, DataError


@dataclasses.dataclass
class SearcherOptions:
    """How the ScaNN searcher is built (the ``--scann_*`` flags of ``virt_tf.index``).

    Attributes:
      brute_force_below: corpora with fewer documents are searched exactly.
      num_leaves: leaves of the tree (0: about the square root of the corpus size).
      leaves_to_search: leaves scored a query (0: a tenth of ``num_leaves``, at least 1).
      dims_per_block: dimensions per asymmetric-hashing code (2 is ScaNN's usual choice).
      anisotropic_threshold: ScaNN's anisotropic quantization threshold (0.2 for
        normalised vectors).
      reorder: candidates re-scored exactly after hashing (0: no re-ordering).
      training_sample_size: vectors the tree and the codebooks are trained on.
    """
    brute_force_below: int = 20000
    num_leaves: int = 0
    leaves_to_search: int = 0
    dims_per_block: int = 2
    anisotropic_threshold: float = 0.2
    reorder: int = 250
    training_sample_size: int = 100000

    def check(self):
        """A `ConfigError` for an option out of range."""
        for name in ("brute_force_below", "num_leaves", "leaves_to_search", "reorder"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.dims_per_block < 1:
            raise ConfigError(f"dims_per_block must be >= 1, got {self.dims_per_block}")
        if self.training_sample_size < 1:
            raise ConfigError("training_sample_size must be >= 1")
        return self

    def plan(self, count):
        """The settings used for ``count`` documents: a dict with ``kind`` (``brute_force``
        or ``tree_ah``) and, for a tree, the resolved leaf counts."""
        if count < self.brute_force_below:
            return {"kind": "brute_force"}
        leaves = self.num_leaves or max(2, int(round(math.sqrt(count))))
        leaves = min(leaves, count)
        search = min(self.leaves_to_search or max(1, leaves // 10), leaves)
        return {"kind": "tree_ah", "num_leaves": leaves, "leaves_to_search": search,
                "dims_per_block": self.dims_per_block,
                "anisotropic_threshold": self.anisotropic_threshold,
                "reorder": self.reorder,
                "training_sample_size": min(self.training_sample_size, count)}


def normalize(vectors):
    """Rows scaled to unit L2 norm (a zero row stays zero): float32 `[n, d]`."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _scann():
    """ScaNN's numpy API (an optional package that loads TensorFlow: imported when a
    searcher is built or read)."""
    # pylint: disable-next=import-outside-toplevel
    from scann.scann_ops.py import scann_ops_pybind  # optional package
    return scann_ops_pybind


def build_searcher(vectors, plan, num_neighbors=100):
    """A ScaNN searcher over ``vectors`` (float32 `[n, d]`, normalised) built as ``plan``
    (`SearcherOptions.plan`) says."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    builder = _scann().builder(vectors, max(1, min(num_neighbors, len(vectors))),
                               "dot_product")
    if plan["kind"] == "brute_force":
        return builder.score_brute_force().build()
    builder = builder.tree(num_leaves=plan["num_leaves"],
                           num_leaves_to_search=plan["leaves_to_search"],
                           training_sample_size=plan["training_sample_size"])
    builder = builder.score_ah(plan["dims_per_block"],
                               anisotropic_quantization_threshold=plan["anisotropic_threshold"],
                               training_sample_size=plan["training_sample_size"])
    if plan["reorder"]:
        builder = builder.reorder(plan["reorder"])
    return builder.build()


def save_searcher(searcher, folder):
    """Write ``searcher`` into ``folder`` (created; ScaNN's files, relative paths)."""
    os.makedirs(folder, exist_ok=True)
    searcher.serialize(folder, relative_path=True)


def load_searcher(folder):
    """A searcher written by `save_searcher`; a `DataError` if ``folder`` holds none."""
    if not os.path.isfile(os.path.join(folder, "scann_assets.pbtxt")):
        raise DataError(f"{folder}: no ScaNN searcher (scann_assets.pbtxt is missing)")
    return _scann().load_searcher(folder)


def search(searcher, queries, k, plan=None):
    """Top ``k`` of each query: ``(rows, scores)``, int64 and float32 `[q, k']` with
    ``k' = min(k, corpus size)``, best first (scores are inner products).

    ``plan`` (of a tree searcher) lets the number of candidates re-ordered grow with ``k``.
    """
    queries = np.ascontiguousarray(queries, np.float32)
    k = min(k, searcher.size()) if hasattr(searcher, "size") else k
    pre = None
    if plan and plan.get("kind") == "tree_ah" and plan.get("reorder"):
        pre = max(plan["reorder"], k)
    rows, scores = searcher.search_batched(queries, final_num_neighbors=k,
                                           pre_reorder_num_neighbors=pre)
    return np.asarray(rows, np.int64), np.asarray(scores, np.float32)


def exact_top_k(vectors, queries, k):
    """The exact top ``k`` by inner product (numpy; ties to the lower row): ``(rows,
    scores)`` as `search` returns them."""
    scores = np.asarray(queries, np.float32) @ np.asarray(vectors, np.float32).T
    k = min(k, scores.shape[1])
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return rows.astype(np.int64), np.take_along_axis(scores, rows, axis=1)
