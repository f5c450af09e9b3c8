"""The Graph container every graph loader returns: CSR adjacency plus node features, labels and splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Graph:
    """An undirected or directed graph in CSR form with optional node data.

    indptr/indices: CSR of the adjacency (int32 indices, int64 indices when nnz >= 2**31); no weights:
    edges are 1. features: float32 N×F (may be a np.memmap). labels: int64 N (multiclass) or uint8/float32
    N×C (multilabel). train_idx/val_idx/test_idx: int64 node ids.
    """

    indptr: np.ndarray
    indices: np.ndarray
    num_nodes: int
    features: np.ndarray | None = None
    labels: np.ndarray | None = None
    train_idx: np.ndarray | None = None
    val_idx: np.ndarray | None = None
    test_idx: np.ndarray | None = None
    name: str = "graph"
    source: str = ""  # what the loader read: "<layout> <files> in <folder>" (tasks log it)
    self_loops: bool = False  # the loader gave every node exactly one (u, u) entry (the Friendster layout)

    @property
    def num_edges(self) -> int:
        return int(self.indptr[-1])

    @property
    def multilabel(self) -> bool:
        return self.labels is not None and self.labels.ndim == 2

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        return int(self.labels.shape[1]) if self.multilabel else int(self.labels.max()) + 1

    def degrees(self) -> np.ndarray:
        """Out-degree of every node."""
        return np.diff(self.indptr).astype(np.int64)

    def to_scipy(self):  # noqa: ANN201 - scipy type
        """The adjacency as a scipy.sparse.csr_matrix of float32 ones."""
        import scipy.sparse as sp

        data = np.ones(self.indices.shape[0], dtype=np.float32)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.num_nodes, self.num_nodes))
