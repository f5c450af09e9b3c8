"""GBP exact propagation P = sum_l w_l T^l X by K mean-aggregation SpMMs (spec §2.1), on numba or torch.

    propagate_numba(indptr, indices, x, weights, r)   K SpMMs, prange over rows (CPU)
    propagate_torch(indptr, indices, x, weights, r)   torch.sparse CSR (CUDA or CPU tensors)
    propagate(x, ...)                                 dispatch: CUDA tensor -> torch, else numba

The dense NumPy reference is `gbp_push.propagate_reference`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from mlkit.kernels import is_cuda
from mlkit.kernels.gbp_push import degree_powers, degrees


# ---------------------------------------------------------------------------------------- exact SpMM
@njit(parallel=True, cache=True)
def _mean_rows(indptr, indices, inv, y, out):  # noqa: ANN001, ANN202
    n, f = y.shape
    for v in prange(n):
        for c in range(f):
            out[v, c] = 0.0
        for p in range(indptr[v], indptr[v + 1]):
            u = indices[p]
            for c in range(f):
                out[v, c] += y[u, c]
        for c in range(f):
            out[v, c] *= inv[v]


@njit(parallel=True, cache=True)
def _axpy_rows(acc, w, y):  # noqa: ANN001, ANN202
    for v in prange(acc.shape[0]):
        for c in range(acc.shape[1]):
            acc[v, c] += w * y[v, c]


def propagate_numba(
    indptr: np.ndarray,
    indices: np.ndarray,
    x: np.ndarray,
    weights: np.ndarray,
    r: float,
    progress: Any = None,
) -> np.ndarray:
    """Exact propagation by K = len(weights)-1 mean-aggregation SpMMs; float64 input stays float64, else float32."""
    dt = np.float64 if np.asarray(x).dtype == np.float64 else np.float32
    deg = degrees(indptr)
    dneg, dpos = degree_powers(deg, r)
    inv = (1.0 / np.where(deg > 0, deg, 1.0)).astype(dt)
    inv[deg == 0] = 0.0
    y = np.asarray(x, dtype=dt) * dneg[:, None].astype(dt)
    acc = (weights[0] * y).astype(dt)
    nxt = np.empty_like(y)
    steps = range(1, len(weights))
    for level in progress(steps) if progress else steps:
        _mean_rows(indptr, indices, inv, y, nxt)
        y, nxt = nxt, y
        if weights[level] != 0.0:
            _axpy_rows(acc, dt(weights[level]), y)
    acc *= dpos[:, None].astype(dt)
    return acc


def propagate_torch(indptr: Any, indices: Any, x: Any, weights: Any, r: float) -> Any:
    """Exact propagation with torch.sparse CSR (x: a torch tensor on any device; float32 on CUDA)."""
    import torch

    dev = x.device
    ip = torch.as_tensor(np.asarray(indptr, dtype=np.int64), device=dev)
    ix = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=dev)
    n = ip.shape[0] - 1
    deg = (ip[1:] - ip[:-1]).to(x.dtype)
    safe = torch.where(deg > 0, deg, torch.ones_like(deg))
    inv = torch.where(deg > 0, 1.0 / safe, torch.zeros_like(deg))
    vals = torch.repeat_interleave(inv, (ip[1:] - ip[:-1]))
    m = torch.sparse_csr_tensor(ip, ix, vals, size=(n, n))
    y = x * safe.pow(-r)[:, None]
    acc = float(weights[0]) * y
    for w in list(weights)[1:]:
        y = torch.sparse.mm(m, y) if dev.type == "cuda" else (m @ y)
        if float(w) != 0.0:
            acc = acc + float(w) * y
    return acc * safe.pow(r)[:, None]


def propagate(x: Any, indptr: Any, indices: Any, weights: Any, r: float) -> Any:
    """Exact propagation; a CUDA tensor goes to the torch path, NumPy or CPU tensors to numba."""
    if is_cuda(x):
        return propagate_torch(indptr, indices, x, weights, r)
    return propagate_numba(np.asarray(indptr), np.asarray(indices), np.asarray(x), np.asarray(weights), r)
