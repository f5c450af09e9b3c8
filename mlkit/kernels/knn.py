"""Exact k-nearest-neighbour search by chunked matmul distances (CPU and CUDA), with a cKDTree reference.

Squared distances are ||a||^2 + (||b||^2 - 2 a.b): the bracket comes out of ONE matrix product of the query chunk,
augmented with a column of ones, against the bank augmented with the column ||b||^2 (rows of -2 b; built once per
bank and cached on the tensor), written into a reused buffer, so nothing but the GEMM and one row reduction touches the distance block (no temporaries, no page
faults from fresh allocations). ||a||^2 is added to the k winners only, then clamped at 0 and rooted. This is the
memory-bank scoring hot spot of PatchCore/M3DM (benchmarks/anomaly_kernels.py times it against the bare GEMM).

    knn_reference / knn_brute   scipy cKDTree / cdist + stable argsort: the truth
    knn_torch                   chunked augmented GEMM + top-k per chunk (k = 1 on large CPU blocks: amin, then
                                the Numba first-match search of mlkit.kernels.knn_cpu, ~3x faster than torch.min)
    nn_distance                 k = 1 distances only (no indices): the scoring path, the GEMM plus one row minimum
    knn                         dispatch (tensors stay on their device, NumPy comes back as NumPy)
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


_NUMBA_MIN = 1 << 18  # distance-block elements from which the Numba index search pays for its first-call cost


def _augmented_bank(bank: Any, dtype: Any) -> Any:
    """[-2 b | ||b||^2 | 0 ...] (M, K), K = d + 1 padded to a multiple of 16 (an odd K costs the GEMM ~10%):
    one GEMM with [q | 1 | 0 ...] gives ||b||^2 - 2 q.b. Cached on the bank tensor (scoring reuses one bank)."""
    import torch

    m, d = bank.shape
    width = d + 1 + (-(d + 1)) % 16
    key = (bank.data_ptr(), bank._version, dtype, tuple(bank.shape))
    hit = getattr(bank, "_mlkit_knn_aug", None)
    if hit is not None and hit[0] == key:
        return hit[1]
    b = bank.to(dtype)
    ba = b.new_zeros((m, width))
    torch.mul(b, -2.0, out=ba[:, :d])
    ba[:, d] = torch.linalg.vector_norm(b, dim=1).square_()
    try:
        bank._mlkit_knn_aug = (key, ba)
    except (AttributeError, RuntimeError):  # not every tensor subclass takes attributes
        pass
    return ba


def _chunks(queries: Any, bank: Any, chunk: int, max_block: int) -> Any:
    """Yield (start, stop, block) with block[i, j] = ||b_j||^2 - 2 q_i.b_j for each query chunk (reused buffer)."""
    import torch

    q = queries.reshape(queries.shape[0], bank.shape[-1]) if queries.ndim != 2 else queries
    ba = _augmented_bank(bank, q.dtype)
    m, d = bank.shape[0], q.shape[1]
    rows = max(1, min(chunk, max_block // max(1, m), q.shape[0]))
    buf = q.new_empty((rows, m))
    qa = q.new_zeros((rows, ba.shape[1]))
    qa[:, d] = 1.0
    for s in range(0, q.shape[0], rows):
        e = min(q.shape[0], s + rows)
        qa[: e - s, :d] = q[s:e]
        torch.mm(qa[: e - s], ba.T, out=buf[: e - s])
        yield s, e, buf[: e - s]


def _finish(bracket: Any, q: Any) -> Any:
    """sqrt(max(||q||^2 + bracket, 0)) for a (rows, k) bracket."""
    return (bracket + (q * q).sum(dim=1, keepdim=True)).clamp_(min=0).sqrt_()


def knn_torch(
    queries: Any, bank: Any, k: int = 1, chunk: int = 1024, max_block: int = 1 << 24
) -> tuple[Any, Any]:
    """k-NN by chunked matmul distances on the tensors' device: (distances, indices), each (Q, k), ascending.

    k = 1 returns the first index among equal distances (like a stable argsort)."""
    import torch

    if bank.shape[0] < k:
        raise ValueError(f"knn: bank has {bank.shape[0]} rows, fewer than k={k}")
    with torch.no_grad():
        return _knn(queries, bank, k, chunk, max_block)


def _knn(queries: Any, bank: Any, k: int, chunk: int, max_block: int) -> tuple[Any, Any]:
    import torch

    q = queries.reshape(queries.shape[0], bank.shape[-1]) if queries.ndim != 2 else queries
    vals = q.new_empty((q.shape[0], k))
    idxs = torch.empty((q.shape[0], k), dtype=torch.long, device=q.device)
    for s, e, blk in _chunks(q, bank, chunk, max_block):
        if k > 1:
            v, i = torch.topk(blk, k, dim=1, largest=False, sorted=True)
        elif blk.is_cuda or blk.numel() < _NUMBA_MIN or blk.dtype not in (torch.float32, torch.float64):
            v, i = blk.min(dim=1, keepdim=True)
        else:  # torch's min-with-index is ~3x slower than amin plus a first-match search
            from mlkit.kernels.knn_cpu import first_equal

            v = blk.amin(dim=1, keepdim=True)
            i = torch.from_numpy(first_equal(blk.numpy(), v.numpy().reshape(-1)))[:, None]
            if bool((i < 0).any()):  # rows with NaN: torch decides
                bad = (i[:, 0] < 0).nonzero()[:, 0]
                i[bad] = blk[bad].argmin(dim=1, keepdim=True)
        vals[s:e], idxs[s:e] = v, i
    return _finish(vals, q), idxs


def nn_distance(queries: Any, bank: Any, chunk: int = 1024, max_block: int = 1 << 24) -> Any:
    """Distance of each query row to its nearest bank row, (Q,), without indices (the scoring path)."""
    import torch

    if bank.shape[0] < 1:
        raise ValueError("knn: the bank is empty")
    q = queries.reshape(queries.shape[0], bank.shape[-1]) if queries.ndim != 2 else queries
    with torch.no_grad():
        out = q.new_empty((q.shape[0], 1))
        for s, e, blk in _chunks(q, bank, chunk, max_block):
            out[s:e] = blk.amin(dim=1, keepdim=True)
        return _finish(out, q)[:, 0]


def knn(queries: Any, bank: Any, k: int = 1, chunk: int = 1024) -> tuple[Any, Any]:
    """Dispatch: tensors stay on their device (CUDA or CPU BLAS); NumPy input comes back as NumPy."""
    if hasattr(queries, "detach"):
        return knn_torch(queries, bank, k, chunk)
    import torch

    d, i = knn_torch(torch.from_numpy(np.asarray(queries)), torch.from_numpy(np.asarray(bank)), k, chunk)
    return d.numpy(), i.numpy()
