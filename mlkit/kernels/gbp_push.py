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
original. The default push takes both signed parts of a group of columns together (float64 residues side by
side per node, one FIFO ring); the per-column orders keep a node's residue and 1/d(v) side by side and need
no in-queue map. `prange` runs over column groups (or strided column blocks), each owning its scratch, so no
atomics are needed and no result depends on the thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange


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
def _push_group(indptr, indices, inv, xt, cols, signs, dneg, alpha, rmax, res, reserve, queue, inq, theta):  # noqa: ANN001, ANN202
    """Push k (column, sign) parts together: res[v] holds v's k residues side by side, so one pop reads u's
    row once and one neighbour visit touches one short run of memory for all k parts. A popped node pushes
    all its residues (the invariant of each part -- estimate + residue propagated = truth -- holds for any
    push); a node is queued (FIFO ring, in-queue flags) when any part's residue exceeds that part's theta,
    and the run ends when every part's residues are <= its theta, the per-column stopping rule."""
    n = inv.shape[0]
    k = cols.shape[0]
    for c in range(k):
        theta[c] = 0.0
    for u in range(n):
        for c in range(k):
            v = signs[c] * xt[cols[c], u] * dneg[u]
            r = v if v > 0.0 else 0.0
            res[u, c] = r
            theta[c] += r
            reserve[u, c] = 0.0
    for c in range(k):
        theta[c] = rmax * (theta[c] if theta[c] > 0.0 else 1.0)
    size = 0
    for u in range(n):
        q = False
        for c in range(k):
            q |= res[u, c] > theta[c]
        inq[u] = q
        if q:
            queue[size] = u
            size += 1
    head = 0
    tail = size % max(n, 1)
    share = np.empty(k)
    while size > 0:
        u = queue[head]
        head += 1
        if head == n:
            head = 0
        size -= 1
        inq[u] = False
        for c in range(k):
            ru = res[u, c]
            res[u, c] = 0.0
            reserve[u, c] += alpha * ru
            share[c] = (1.0 - alpha) * ru
        for p in range(indptr[u], indptr[u + 1]):
            v = indices[p]
            iv = inv[v]
            cross = False
            for c in range(k):
                new = res[v, c] + share[c] * iv
                res[v, c] = new
                cross |= new > theta[c]
            if cross and not inq[v]:
                inq[v] = True
                queue[tail] = v
                tail += 1
                if tail == n:
                    tail = 0
                size += 1


@njit(parallel=True, cache=True)
def _ppr_push_groups(indptr, indices, inv, xt, dneg, dpos, alpha, rmax, group, offset, out):  # noqa: ANN001, ANN202
    """Columns j of xt (global index offset + j) in groups of `group` global columns; both signs of a group's
    columns are pushed together (2 x group parts). prange over groups: no shared writes."""
    f, n = xt.shape
    first = offset // group
    ngroups = (offset + f - 1) // group - first + 1 if f > 0 else 0
    for gi in prange(ngroups):
        j0 = max((first + gi) * group - offset, 0)
        j1 = min((first + gi + 1) * group - offset, f)
        m = j1 - j0
        cols = np.empty(2 * m, dtype=np.int64)
        signs = np.empty(2 * m)
        for i in range(m):
            cols[i] = j0 + i
            signs[i] = 1.0
            cols[m + i] = j0 + i
            signs[m + i] = -1.0
        res = np.empty((n, 2 * m))
        reserve = np.empty((n, 2 * m))
        queue = np.empty(max(n, 1), dtype=np.int64)
        inq = np.zeros(n, dtype=np.bool_)
        theta = np.empty(2 * m)
        _push_group(indptr, indices, inv, xt, cols, signs, dneg, alpha, rmax, res, reserve, queue, inq, theta)
        for u in range(n):
            for i in range(m):
                pos = reserve[u, i] + alpha * res[u, i]
                neg = reserve[u, m + i] + alpha * res[u, m + i]
                out[j0 + i, u] = dpos[u] * (pos - neg)


PUSH_GROUP = 8  # columns pushed together by the default order (16 signed parts: 256 B of scratch per node)


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
    group: int = PUSH_GROUP,
    offset: int = 0,
) -> np.ndarray:
    """The original's PPR reverse push for all nodes: returns [F, n] (transposed=True: x given as [F, n]).

    order: "fifo" (the default): both signs of `group` columns pushed together from one FIFO ring, the
    groups fixed by global column index (`offset` = the global index of x's first column, so a shard whose
    bounds are multiples of `group` gives the unsharded bits); "column": one column and sign at a time from
    a FIFO ring; "lifo": the same with a stack (the original's order); "original": the original's
    BackwardPush_ppr re-stated (stack, bit map, a division per neighbour visit -- the benchmark's baseline).
    Every order stops with each part's residues <= r_max x its l1 mass. On 1e6 nodes (2.2e7 entries) at r_max
    1e-6 "fifo" took a third of the CPU time of "column" and "original" at a lower error; the stack re-pushes
    nodes many times once r_max is small (50x slower on the spec's 3,000-node graph). `blocks` (prange
    blocks of the per-column orders) never changes a result; `group` does (by rounding and push order)."""
    import numba

    if order not in ("fifo", "column", "lifo", "original"):
        raise ValueError(f"order must be fifo, column, lifo or original, not {order!r}")
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    xt = np.ascontiguousarray(x if transposed else np.asarray(x).T)
    deg = degrees(indptr) if deg is None else np.asarray(deg, dtype=np.float64)
    dneg, dpos = degree_powers(deg, r)
    out = np.empty(xt.shape, dtype=out_dtype)
    nb = blocks or max(1, min(xt.shape[0], 4 * numba.get_num_threads()))
    if order == "original":
        from mlkit.kernels.gbp_push_original import _ppr_push_cols_original

        _ppr_push_cols_original(indptr, indices, deg, xt, dneg, dpos, float(alpha), float(rmax), nb, out)
        return out
    inv = np.where(deg > 0, 1.0 / np.where(deg > 0, deg, 1.0), 0.0)
    if order == "fifo":
        _ppr_push_groups(
            indptr, indices, inv, xt, dneg, dpos, float(alpha), float(rmax), int(group), int(offset), out
        )
        return out
    _ppr_push_cols(indptr, indices, inv, xt, dneg, dpos, float(alpha), float(rmax), nb, order == "lifo", out)
    return out


from mlkit.kernels.gbp_exact import propagate, propagate_numba, propagate_torch  # noqa: E402,F401 (re-exported)
