"""GBP propagation P = sum_l w_l T^l X, T = D^(r-1) A D^(-r) = D^r (D^-1 A) D^-r (spec §2.1): push and exact paths.

    propagate_reference(indptr, indices, x, weights, r)      dense NumPy, the truth (small graphs)
    ppr_reference(indptr, indices, x, alpha, r)              dense solve of the infinite PPR series
    ppr_push_numba(indptr, indices, x, alpha, rmax, r, deg)  the original's reverse push (spec §2.3a)
    propagate_numba(indptr, indices, x, weights, r)          exact: K mean-aggregation SpMMs (prange rows)
    propagate_torch(indptr, indices, x, weights, r)          exact on torch (sparse CSR; CUDA or CPU tensors)
    propagate(x, ...)                                        dispatch: CUDA tensor -> torch, else numba

M = D^-1 A averages a node's CSR row ((M y)(v) = mean of y over row v). Reverse push moves residue from u to
every v with A[v, u] = 1, dividing by d(v); on a symmetric graph that is u's own row, otherwise the caller
passes the transposed CSR plus the degrees `deg` of A. Degree-0 nodes skip the d^(+-r) scaling, as the
original. Push works per feature column with float64 residue/reserve arrays (a node's residue and 1/d(v) side
by side: one cache line per neighbour visit), a FIFO ring (or a stack, the original's order) and no in-queue
map (a node is queued when its residue crosses the threshold); `prange` runs over blocks of columns (strided),
each block owning its scratch arrays, so no atomics are needed and every column's result is independent of
the thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from mlkit.kernels import is_cuda


# ------------------------------------------------------------------------------------------ helpers
def degrees(indptr: np.ndarray) -> np.ndarray:
    """Row degrees of a CSR as float64."""
    return np.diff(np.asarray(indptr, dtype=np.int64)).astype(np.float64)


def degree_powers(deg: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    """(d^-r, d^r) with 1 at degree-0 nodes (float64)."""
    safe = np.where(deg > 0, deg, 1.0)
    return safe ** (-r), safe**r


def ppr_weights(alpha: float, levels: int) -> np.ndarray:
    """w_l = alpha (1 - alpha)^l, l = 0..levels."""
    return alpha * (1.0 - alpha) ** np.arange(levels + 1, dtype=np.float64)


def heat_weights(t: float, levels: int) -> np.ndarray:
    """w_l = e^-t t^l / l!, l = 0..levels."""
    from scipy.stats import poisson

    return poisson.pmf(np.arange(levels + 1), t).astype(np.float64)


def sgc_weights(levels: int) -> np.ndarray:
    """w_L = 1, all others 0."""
    w = np.zeros(levels + 1)
    w[levels] = 1.0
    return w


def levels_for_tol(kind: str, tol: float, alpha: float = 0.1, t: float = 5.0, cap: int = 200) -> int:
    """Smallest L whose dropped weight mass sum_{l > L} w_l is at most tol (ppr or heat)."""
    for L in range(cap + 1):
        tail = (1.0 - alpha) ** (L + 1) if kind == "ppr" else 1.0 - float(heat_weights(t, L).sum())
        if tail <= tol:
            return L
    return cap


@njit(cache=True)
def _mix64(x):  # noqa: ANN001, ANN202 - splitmix64 finaliser on uint64
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def _edge_hash_sums(indptr, indices):  # noqa: ANN001, ANN202
    fwd = np.uint64(0)
    bwd = np.uint64(0)
    k1 = np.uint64(0x9E3779B97F4A7C15)
    k2 = np.uint64(0xC2B2AE3D27D4EB4F)
    for u in range(indptr.shape[0] - 1):
        uu = np.uint64(u)
        for p in range(indptr[u], indptr[u + 1]):
            vv = np.uint64(indices[p])
            fwd += _mix64(uu * k1 + vv * k2)
            bwd += _mix64(vv * k1 + uu * k2)
    return fwd, bwd


def is_symmetric(indptr: np.ndarray, indices: np.ndarray) -> bool:
    """Whether the multiset of entries (u, v) equals that of (v, u) (hash-sum test, one O(nnz) pass)."""
    fwd, bwd = _edge_hash_sums(indptr, indices)
    return bool(fwd == bwd)


# ---------------------------------------------------------------------------------------- references
def _dense_m(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    n = indptr.shape[0] - 1
    a = np.zeros((n, n))
    rows = np.repeat(np.arange(n), np.diff(indptr))
    np.add.at(a, (rows, np.asarray(indices)), 1.0)
    deg = a.sum(1)
    return a / np.where(deg > 0, deg, 1.0)[:, None]


def propagate_reference(
    indptr: np.ndarray, indices: np.ndarray, x: np.ndarray, weights: np.ndarray, r: float
) -> np.ndarray:
    """sum_l w_l D^r M^l D^-r x with dense float64 matrices."""
    m = _dense_m(indptr, indices)
    dneg, dpos = degree_powers(degrees(indptr), r)
    y = dneg[:, None] * np.asarray(x, dtype=np.float64)
    acc = weights[0] * y
    for w in weights[1:]:
        y = m @ y
        acc = acc + w * y
    return dpos[:, None] * acc


def ppr_reference(
    indptr: np.ndarray, indices: np.ndarray, x: np.ndarray, alpha: float, r: float
) -> np.ndarray:
    """The infinite PPR series D^r alpha (I - (1-alpha) M)^-1 D^-r x, solved densely."""
    m = _dense_m(indptr, indices)
    dneg, dpos = degree_powers(degrees(indptr), r)
    y = np.linalg.solve(
        np.eye(m.shape[0]) - (1.0 - alpha) * m, dneg[:, None] * np.asarray(x, dtype=np.float64)
    )
    return dpos[:, None] * alpha * y


# ---------------------------------------------------------------------------------------- PPR push
@njit(cache=True)
def _push_sign(indptr, indices, xcol, dneg, sign, alpha, rmax, ri, reserve, queue, lifo):  # noqa: ANN001, ANN202
    """One signed part: push until every residue is <= rmax * mass (res/reserve hold the result).

    ri[v, 0] is v's residue and ri[v, 1] = 1/d(v): one cache line per neighbour visit. No in-queue map: a
    part's residues only grow between pops, so v is queued exactly when its residue crosses theta (a node
    outside the queue always has res <= theta). lifo: a stack (the original's order), else a FIFO ring."""
    n = xcol.shape[0]
    mass = 0.0
    for u in range(n):
        v = sign * xcol[u] * dneg[u]
        if v > 0.0:
            ri[u, 0] = v
            mass += v
        else:
            ri[u, 0] = 0.0
        reserve[u] = 0.0
    if mass == 0.0:
        mass = 1.0
    theta = rmax * mass
    size = 0
    if lifo:
        for u in range(n - 1, -1, -1):  # the stack pops in ascending node order first
            if ri[u, 0] > theta:
                queue[size] = u
                size += 1
    else:
        for u in range(n):
            if ri[u, 0] > theta:
                queue[size] = u
                size += 1
    head = 0
    tail = size % max(n, 1)
    while size > 0:
        if lifo:
            size -= 1
            u = queue[size]
        else:
            u = queue[head]
            head += 1
            if head == n:
                head = 0
            size -= 1
        ru = ri[u, 0]
        ri[u, 0] = 0.0
        reserve[u] += alpha * ru
        share = (1.0 - alpha) * ru
        for p in range(indptr[u], indptr[u + 1]):
            v = indices[p]
            old = ri[v, 0]
            new = old + share * ri[v, 1]
            ri[v, 0] = new
            if new > theta and old <= theta:
                if lifo:
                    queue[size] = v
                else:
                    queue[tail] = v
                    tail += 1
                    if tail == n:
                        tail = 0
                size += 1


@njit(parallel=True, cache=True)
def _ppr_push_cols(indptr, indices, inv, xt, dneg, dpos, alpha, rmax, nblocks, lifo, out):  # noqa: ANN001, ANN202
    f, n = xt.shape
    for b in prange(nblocks):
        ri = np.empty((n, 2))
        ri[:, 1] = inv
        reserve = np.empty(n)
        acc = np.empty(n)
        queue = np.empty(max(n, 1), dtype=np.int64)
        for j in range(b, f, nblocks):
            xcol = xt[j]
            _push_sign(indptr, indices, xcol, dneg, 1.0, alpha, rmax, ri, reserve, queue, lifo)
            for u in range(n):
                acc[u] = reserve[u] + alpha * ri[u, 0]
            _push_sign(indptr, indices, xcol, dneg, -1.0, alpha, rmax, ri, reserve, queue, lifo)
            for u in range(n):
                out[j, u] = dpos[u] * (acc[u] - (reserve[u] + alpha * ri[u, 0]))


@njit(cache=True)
def _push_sign_original(indptr, indices, deg, xcol, dneg, sign, alpha, rmax, res, reserve, stack, bits):  # noqa: ANN001, ANN202
    """The original's BackwardPush_ppr for one signed part, re-stated: a LIFO stack with an in-set bit map
    (Node_Set), division by the integer degree per neighbour visit, a separate residue array."""
    n = xcol.shape[0]
    mass = 0.0
    for u in range(n):
        v = sign * xcol[u] * dneg[u]
        res[u] = v if v > 0.0 else 0.0
        mass += res[u]
        reserve[u] = 0.0
    theta = rmax * (mass if mass > 0.0 else 1.0)
    size = 0
    for u in range(n):
        if res[u] > theta and (bits[u >> 5] >> (u & 31)) & 1 == 0:
            bits[u >> 5] |= np.uint32(1) << np.uint32(u & 31)
            stack[size] = u
            size += 1
    while size > 0:
        size -= 1
        u = stack[size]
        bits[u >> 5] &= ~(np.uint32(1) << np.uint32(u & 31))
        ru = res[u]
        rpush = (1.0 - alpha) * ru
        reserve[u] += alpha * ru
        res[u] = 0.0
        for p in range(indptr[u], indptr[u + 1]):
            v = indices[p]
            res[v] += rpush / deg[v]
            if res[v] > theta and (bits[v >> 5] >> (v & 31)) & 1 == 0:
                bits[v >> 5] |= np.uint32(1) << np.uint32(v & 31)
                stack[size] = v
                size += 1


@njit(parallel=True, cache=True)
def _ppr_push_cols_original(indptr, indices, deg, xt, dneg, dpos, alpha, rmax, nblocks, out):  # noqa: ANN001, ANN202
    f, n = xt.shape
    for b in prange(nblocks):
        res = np.empty(n)
        reserve = np.empty(n)
        acc = np.empty(n)
        stack = np.empty(max(n, 1), dtype=np.int64)
        bits = np.zeros(n // 32 + 1, dtype=np.uint32)
        for j in range(b, f, nblocks):
            _push_sign_original(indptr, indices, deg, xt[j], dneg, 1.0, alpha, rmax, res, reserve, stack, bits)
            for u in range(n):
                acc[u] = reserve[u] + alpha * res[u]
            _push_sign_original(indptr, indices, deg, xt[j], dneg, -1.0, alpha, rmax, res, reserve, stack, bits)
            for u in range(n):
                out[j, u] = dpos[u] * (acc[u] - (reserve[u] + alpha * res[u]))


def ppr_push_numba(
    indptr: np.ndarray,
    indices: np.ndarray,
    x: np.ndarray,
    alpha: float,
    rmax: float,
    r: float,
    deg: np.ndarray | None = None,
    transposed: bool = False,
    out_dtype: Any = np.float32,
    blocks: int | None = None,
    order: str = "fifo",
) -> np.ndarray:
    """The original's PPR reverse push for all nodes: returns [F, n] (transposed=True: x given as [F, n]).

    order: "fifo" (a ring queue, the default) | "lifo" (a stack, the original's order) | "original" (the
    original's BackwardPush_ppr re-stated: stack, bit map, a division per neighbour visit -- the benchmark's
    baseline). The stack re-pushes nodes many times once r_max is small: on the spec's 3,000-node graph at
    r_max 1e-6 it took 14-15 CPU s (the original's way 16-17 s) where the FIFO took 0.3 s, at a lower error;
    on 1e6 nodes at r_max 1e-6, where few nodes are pushed, the three are within 10 %."""
    import numba

    if order not in ("fifo", "lifo", "original"):
        raise ValueError(f"order must be fifo, lifo or original, not {order!r}")
    xt = np.ascontiguousarray(x if transposed else np.asarray(x).T)
    deg = degrees(indptr) if deg is None else np.asarray(deg, dtype=np.float64)
    dneg, dpos = degree_powers(deg, r)
    out = np.empty(xt.shape, dtype=out_dtype)
    nb = blocks or max(1, min(xt.shape[0], 4 * numba.get_num_threads()))
    if order == "original":
        _ppr_push_cols_original(indptr, indices, deg, xt, dneg, dpos, float(alpha), float(rmax), nb, out)
        return out
    inv = np.where(deg > 0, 1.0 / np.where(deg > 0, deg, 1.0), 0.0)
    _ppr_push_cols(indptr, indices, inv, xt, dneg, dpos, float(alpha), float(rmax), nb, order == "lifo", out)
    return out


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
