"""GBP's bidirectional estimator for dense levels: level-synchronous pull over the targets' L-hop ball.

    hop_distances(indptr, indices, targets, levels)      BFS along CSR rows: dist(S, u), levels + 1 if farther
    level0_density(xt, cols, dneg, rmax)                 per column: fraction of nodes above the level-0 threshold
    bidir_pull(indptr, indices, deg, xt, cols, ...)      the estimate for the columns `cols` (same result as the
                                                         scatter push of gbp_combine up to rounding)

Same estimator as gbp_combine (spec §2.2): R^(0) = D^-r x, theta = rmax ||D^-r x||_1, a node's residue at
level l moves to level l+1 when |R^(l)(u)| > theta. When most nodes cross the threshold (a small relative
r_max, or |S| d^L >= n), scattering every push is a random read-modify-write per edge and column. Here
each level is one row-parallel gather instead, R^(l+1)(v) = 1/d(v) sum_{u in row v} [|R^(l)(u)| > theta]
R^(l)(u), over the rows that can still reach a target: a residue at level l only matters at nodes within
L - l walk steps of S (S^(j)(s, u) = 0 beyond j hops, and a push from u only lands on u's neighbours), so
level l+1 is computed on B_{L-l-1} = {u : dist(S, u) <= L-l-1} only and pushes outside the ball are skipped
(they cannot change any target's estimate; the result equals the unpruned one). Rows are in [node, column]
layout, one block of columns at a time, so a gather reads a contiguous run of columns per edge; each row is
written by one thread (no atomics) and every column's arithmetic is independent of the block it shares and
of the thread count. Leftover residues are folded in place into C_j = w_j R^(0) + sum_{t>=1} w_{t+j} R^(t)
on the ball, and P(s) = d(s)^r [ q(s) + C_0(s) + sum_{j>=1} sum_u S^(j)(s, u) C_j(u) ].
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_CHUNK = 2048


@njit(cache=True)
def hop_distances(indptr, indices, targets, levels):  # noqa: ANN001, ANN201
    """dist(S, u) along CSR rows (the walk direction), capped at levels + 1 (int16)."""
    n = indptr.shape[0] - 1
    far = levels + 1
    dist = np.full(n, far, dtype=np.int16)
    front = np.empty(n, dtype=np.int64)
    nf = 0
    for s in targets:
        if dist[s] != 0:
            dist[s] = 0
            front[nf] = s
            nf += 1
    nxt = np.empty(n, dtype=np.int64)
    for k in range(1, levels + 1):
        nn = 0
        for i in range(nf):
            u = front[i]
            for p in range(indptr[u], indptr[u + 1]):
                v = indices[p]
                if dist[v] == far:
                    dist[v] = k
                    nxt[nn] = v
                    nn += 1
        front, nxt = nxt, front
        nf = nn
        if nf == 0:
            break
    return dist


@njit(cache=True)
def _ball_order(dist, levels):  # noqa: ANN001, ANN202
    """Nodes with dist <= levels grouped by distance (ascending ids within a group); prefix counts per distance."""
    n = dist.shape[0]
    cnt = np.zeros(levels + 2, dtype=np.int64)
    for u in range(n):
        cnt[dist[u] + 1] += 1
    for k in range(levels + 1):
        cnt[k + 1] += cnt[k]
    pos = cnt[:-1].copy()
    order = np.empty(cnt[levels + 1], dtype=np.int64)
    for u in range(n):
        d = dist[u]
        if d <= levels:
            order[pos[d]] = u
            pos[d] += 1
    return order, cnt[1:]  # B_k = order[:upto[k]]


@njit(parallel=True, cache=True)
def level0_density(xt, cols, dneg, rmax):  # noqa: ANN001, ANN201
    """Fraction of nodes with |x(u) d(u)^-r| > rmax ||D^-r x||_1, per column."""
    n = xt.shape[1]
    out = np.zeros(cols.shape[0])
    for k in prange(cols.shape[0]):
        c = cols[k]
        mass = 0.0
        for u in range(n):
            mass += abs(xt[c, u] * dneg[u])
        theta = rmax * (mass if mass > 0.0 else 1.0)
        m = 0
        for u in range(n):
            if abs(xt[c, u] * dneg[u]) > theta:
                m += 1
        out[k] = m / max(n, 1)
    return out


@njit(parallel=True, cache=True)
def _init_level0(xt, cols, c0, nb, dneg, rmax, r0, theta):  # noqa: ANN001, ANN202
    n = xt.shape[1]
    for jj in prange(nb):
        c = cols[c0 + jj]
        mass = 0.0
        for u in range(n):
            v = xt[c, u] * dneg[u]
            r0[u, jj] = v
            mass += abs(v)
        theta[jj] = rmax * (mass if mass > 0.0 else 1.0)


@njit(parallel=True, cache=True)
def _gather(indptr, indices, inv, src, dst, rows, nrows, theta, nb):  # noqa: ANN001, ANN202
    """dst[v] = inv(v) * sum over row v of the src values above theta (per column), for v in rows[:nrows]."""
    nch = (nrows + _CHUNK - 1) // _CHUNK
    for ch in prange(nch):
        acc = np.empty(nb)
        for k in range(ch * _CHUNK, min(nrows, (ch + 1) * _CHUNK)):
            v = rows[k]
            for jj in range(nb):
                acc[jj] = 0.0
            for p in range(indptr[v], indptr[v + 1]):
                u = indices[p]
                for jj in range(nb):
                    ru = src[u, jj]
                    acc[jj] += ru if abs(ru) > theta[jj] else 0.0
            iv = inv[v]
            for jj in range(nb):
                dst[v, jj] = acc[jj] * iv


@njit(parallel=True, cache=True)
def _settle(res, rows, nrows, theta, nb):  # noqa: ANN001, ANN202
    """Clear the pushed residues (|R| > theta) of rows[:nrows]: what stays is the leftover."""
    nch = (nrows + _CHUNK - 1) // _CHUNK
    for ch in prange(nch):
        for k in range(ch * _CHUNK, min(nrows, (ch + 1) * _CHUNK)):
            u = rows[k]
            for jj in range(nb):
                if abs(res[u, jj]) > theta[jj]:
                    res[u, jj] = 0.0


@njit(parallel=True, cache=True)
def _fold(res, wts, dist, rows, nrows, nb):  # noqa: ANN001, ANN202
    """In place: res[j, u] = C_j(u) = w_j R^(0)(u) + sum_{t=1}^{L-j} w_{t+j} R^(t)(u) for dist(u) <= j <= L."""
    levels = wts.shape[0] - 1
    nch = (nrows + _CHUNK - 1) // _CHUNK
    for ch in prange(nch):
        tmp = np.empty((levels + 1, nb))
        for k in range(ch * _CHUNK, min(nrows, (ch + 1) * _CHUNK)):
            u = rows[k]
            du = dist[u]
            for t in range(levels - du + 1):  # R^(t)(u) is defined for t <= L - dist(u)
                for jj in range(nb):
                    tmp[t, jj] = res[t, u, jj]
            for j in range(du, levels + 1):
                for jj in range(nb):
                    z = wts[j] * tmp[0, jj]
                    for t in range(1, levels - j + 1):
                        if wts[t + j] != 0.0:
                            z += wts[t + j] * tmp[t, jj]
                    res[j, u, jj] = z


@njit(parallel=True, cache=True)
def _combine(res, q, dist, dpos, targets, lptr, lnodes, lprobs, live, cols, c0, nb, out):  # noqa: ANN001, ANN202
    levels = res.shape[0] - 1
    t_count = targets.shape[0]
    nch = (t_count + _CHUNK - 1) // _CHUNK
    for ch in prange(nch):
        acc = np.empty(nb)
        for i in range(ch * _CHUNK, min(t_count, (ch + 1) * _CHUNK)):
            s = targets[i]
            for jj in range(nb):
                acc[jj] = q[i, jj] + res[0, s, jj]
            for j in range(1, levels + 1):
                if not live[j]:
                    continue
                for p in range(lptr[j - 1, i], lptr[j - 1, i + 1]):
                    u = lnodes[j - 1, p]
                    if dist[u] > j:  # unreachable in j steps: S^(j)(s, u) is 0 in expectation
                        continue
                    pr = lprobs[j - 1, p]
                    for jj in range(nb):
                        acc[jj] += pr * res[j, u, jj]
            for jj in range(nb):
                out[cols[c0 + jj], i] = dpos[s] * acc[jj]


@njit(cache=True)
def _reserve(res_t, q, targets, theta, w, nb):  # noqa: ANN001, ANN202
    for i in range(targets.shape[0]):
        s = targets[i]
        for jj in range(nb):
            ru = res_t[s, jj]
            if abs(ru) > theta[jj]:
                q[i, jj] += w * ru


def bidir_pull(
    indptr: np.ndarray, indices: np.ndarray, deg: np.ndarray, xt: np.ndarray, cols: np.ndarray, dneg: np.ndarray,
    dpos: np.ndarray, wts: np.ndarray, rmax: float, targets: np.ndarray,
    coef: tuple[np.ndarray, np.ndarray, np.ndarray], width: int, out: np.ndarray,
) -> None:
    """Write the estimate of columns `cols` of xt [F, n] into out[cols] ([F, |S|]); indptr/indices = rows of A."""
    n = xt.shape[1]
    levels = wts.shape[0] - 1
    lptr, lnodes, lprobs = coef
    dist = hop_distances(indptr, indices, targets, levels)
    order, upto = _ball_order(dist, levels)
    inv = np.where(deg > 0, 1.0 / np.where(deg > 0, deg, 1.0), 0.0)
    live = np.array([bool(np.any(wts[j:] != 0.0)) for j in range(levels + 1)])
    width = max(1, min(int(width), cols.shape[0]))
    res = np.empty((levels + 1, n, width))
    q = np.empty((targets.shape[0], width))
    theta = np.empty(width)
    for c0 in range(0, cols.shape[0], width):
        nb = min(width, cols.shape[0] - c0)
        q[:] = 0.0
        _init_level0(xt, cols, c0, nb, dneg, float(rmax), res[0], theta)
        for t in range(levels):
            # level t lives on B_{L-t}; level t+1 is gathered on B_{L-t-1}
            _gather(indptr, indices, inv, res[t], res[t + 1], order, upto[levels - t - 1], theta, nb)
            _reserve(res[t], q, targets, theta, float(wts[t]), nb)
            _settle(res[t], order, upto[levels - t], theta, nb)
        _fold(res, wts, dist, order, upto[levels], nb)
        _combine(res, q, dist, dpos, targets, lptr, lnodes, lprobs, live, cols, c0, nb, out)
