"""Exact k-nearest-neighbour search by chunked matmul distances (CPU and CUDA), with a cKDTree reference.

Distances come from ||a||^2 + ||b||^2 - 2 a.b, clamped at 0 before the square root; queries are processed in chunks
so the distance block stays bounded (chunk x bank rows). This is the memory-bank scoring hot spot of PatchCore/M3DM.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def knn_reference(queries: np.ndarray, bank: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean k-NN of each query row in `bank` with scipy's cKDTree: (distances, indices), each (Q, k)."""
    from scipy.spatial import cKDTree

    q = np.asarray(queries, dtype=np.float64)
    b = np.asarray(bank, dtype=np.float64)
    dist, idx = cKDTree(b).query(q, k=k)
    return dist.reshape(len(q), k), idx.reshape(len(q), k).astype(np.int64)


def knn_brute(queries: np.ndarray, bank: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force reference for high dimensions: full scipy cdist, then a stable argsort."""
    from scipy.spatial.distance import cdist

    d = cdist(np.asarray(queries, np.float64), np.asarray(bank, np.float64))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx.astype(np.int64)


def knn_torch(
    queries: Any, bank: Any, k: int = 1, chunk: int = 1024, max_block: int = 1 << 26
) -> tuple[Any, Any]:
    """k-NN by chunked matmul distances on the tensors' device: (distances, indices), each (Q, k), ascending."""
    import torch

    if bank.shape[0] < k:
        raise ValueError(f"knn: bank has {bank.shape[0]} rows, fewer than k={k}")
    q = queries.reshape(queries.shape[0], bank.shape[-1]) if queries.ndim != 2 else queries
    b = bank.to(q.dtype)
    rows = max(1, min(chunk, max_block // max(1, b.shape[0])))
    bn = (b * b).sum(dim=1)
    dists, idxs = [], []
    for s in range(0, q.shape[0], rows):
        qc = q[s : s + rows]
        d2 = (qc * qc).sum(dim=1, keepdim=True) + bn[None, :] - 2.0 * (qc @ b.T)
        d2.clamp_(min=0)
        if k == 1:
            val, idx = d2.min(dim=1, keepdim=True)
        else:
            val, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        dists.append(val.sqrt())
        idxs.append(idx)
    if not dists:
        empty = q.new_zeros((0, k))
        return empty, empty.long()
    return torch.cat(dists), torch.cat(idxs)


def knn(queries: Any, bank: Any, k: int = 1, chunk: int = 1024) -> tuple[Any, Any]:
    """Dispatch: tensors stay on their device (CUDA or CPU BLAS); NumPy input comes back as NumPy."""
    if hasattr(queries, "detach"):
        return knn_torch(queries, bank, k, chunk)
    import torch

    d, i = knn_torch(torch.from_numpy(np.asarray(queries)), torch.from_numpy(np.asarray(bank)), k, chunk)
    return d.numpy(), i.numpy()
