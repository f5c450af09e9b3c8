"""CSR construction from edge chunks (streamed, two passes, optionally straight to memory-mapped files).

CSR: indices int32 while n < 2**31, indptr int32 while nnz < 2**31 (int64 beyond). Edge entries are unweighted;
duplicate entries are kept (they count twice in degrees and sums, as in the original GBP).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlkit.core.errors import DataError

if TYPE_CHECKING:
    from mlkit.graph.graph import Graph

INT32_MAX = 2**31 - 1
_CHUNK = 1 << 22


def index_dtypes(num_nodes: int, nnz: int) -> tuple[np.dtype, np.dtype]:
    """(indptr dtype, indices dtype): int32 where it fits, int64 beyond 2**31."""
    ptr = np.int32 if nnz <= INT32_MAX else np.int64
    idx = np.int32 if num_nodes <= INT32_MAX else np.int64
    return np.dtype(ptr), np.dtype(idx)


def _fill_csr_py(src: np.ndarray, dst: np.ndarray, pos: np.ndarray, out: np.ndarray) -> None:
    order = np.argsort(src, kind="stable")
    s = src[order]
    starts = pos[s]
    # rank of each entry inside its source's run
    first = np.searchsorted(s, s, side="left")
    slots = starts + (np.arange(s.shape[0]) - first)
    out[slots] = dst[order]
    np.add.at(pos, s, 1)


def _numba_fill():  # noqa: ANN202 - returns a jitted function
    from numba import njit

    @njit(cache=True)
    def fill(src, dst, pos, out):  # noqa: ANN001, ANN202
        for k in range(src.shape[0]):
            u = src[k]
            out[pos[u]] = dst[k]
            pos[u] += 1

    return fill


_FILL = None


def _fill(src: np.ndarray, dst: np.ndarray, pos: np.ndarray, out: np.ndarray) -> None:
    global _FILL
    if src.shape[0] < 4096:
        _fill_csr_py(src, dst, pos, out)
        return
    if _FILL is None:
        _FILL = _numba_fill()
    _FILL(src, dst, pos, out)


def csr_from_edge_chunks(
    chunks, num_nodes: int, symmetric: bool = False, self_loops: bool = False, out_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Build CSR (row u holds v for every entry u->v) from a re-iterable of (src, dst) chunks, two passes.

    chunks: a callable returning an iterator of (src, dst) int arrays; symmetric adds v->u too; self_loops
    adds u->u once per node. With out_dir the arrays are written as indptr.npy/indices.npy memory maps.
    """
    deg = np.zeros(num_nodes, dtype=np.int64)
    for src, dst in chunks():
        _check_ids(src, dst, num_nodes)
        deg += np.bincount(src, minlength=num_nodes)
        if symmetric:
            deg += np.bincount(dst, minlength=num_nodes)
    if self_loops:
        deg += 1
    nnz = int(deg.sum())
    ptr_t, idx_t = index_dtypes(num_nodes, nnz)
    indptr64 = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(deg, out=indptr64[1:])
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        indices = np.lib.format.open_memmap(out_dir / "indices.npy", mode="w+", dtype=idx_t, shape=(nnz,))
    else:
        indices = np.empty(nnz, dtype=idx_t)
    pos = indptr64[:-1].copy()
    if self_loops:
        nodes = np.arange(num_nodes, dtype=np.int64)
        _fill(nodes, nodes.astype(idx_t), pos, indices)
    for src, dst in chunks():
        _fill(src.astype(np.int64, copy=False), dst.astype(idx_t, copy=False), pos, indices)
        if symmetric:
            _fill(dst.astype(np.int64, copy=False), src.astype(idx_t, copy=False), pos, indices)
    indptr = indptr64.astype(ptr_t)
    if out_dir is not None:
        np.save(out_dir / "indptr.npy", indptr)
        indices.flush()
        del indices
        indices = np.load(out_dir / "indices.npy", mmap_mode="r")
    return indptr, indices


def _check_ids(src: np.ndarray, dst: np.ndarray, n: int) -> None:
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise DataError(
            f"edge list has node ids outside 0..{n - 1}",
            None,
            "Use 0-based node ids below the node count (or fix num_nodes in meta.json).",
        )


def _array_chunks(edges: np.ndarray):  # noqa: ANN202
    def gen():  # noqa: ANN202
        for s in range(0, edges.shape[0], _CHUNK):
            block = np.asarray(edges[s : s + _CHUNK])
            yield block[:, 0].astype(np.int64), block[:, 1].astype(np.int64)

    return gen


def induced_subgraph(g: Graph, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the subgraph induced by `nodes`, reindexed 0..len-1 in the given order."""
    n = g.num_nodes
    remap = np.full(n, -1, dtype=np.int64)
    remap[nodes] = np.arange(nodes.shape[0])
    indptr = np.asarray(g.indptr, dtype=np.int64)
    starts, ends = indptr[nodes], indptr[nodes + 1]
    lens = ends - starts
    rows = np.repeat(np.arange(nodes.shape[0]), lens)
    offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
    cols = remap[np.asarray(g.indices)[offs]]
    keep = cols >= 0
    rows, cols = rows[keep], cols[keep]
    sub_ptr = np.zeros(nodes.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=nodes.shape[0]), out=sub_ptr[1:])
    ptr_t, idx_t = index_dtypes(nodes.shape[0], int(sub_ptr[-1]))
    return sub_ptr.astype(ptr_t), cols.astype(idx_t)
