"""GBP's bidirectional estimator for dense levels: level-synchronous pull over the targets' L-hop ball.

    hop_distances(indptr, indices, targets, levels)      BFS along CSR rows: dist(S, u), levels + 1 if farther
    bidir_pull(indptr, indices, deg, xt, cols, ...)      the estimate for the columns `cols` (same result as the
                                                         scatter push of gbp_combine up to rounding)

Same estimator as gbp_combine (spec §2.2): R^(0) = D^-r x, a node's residue at level l moves to level l+1
when it lies outside the column's [lo, hi] (gbp_combine.column_thresholds: the paper's or the original's
rule). When most nodes cross the threshold (a small relative r_max, the original's Friendster rule, or
|S| d^L >= n), scattering every push is a random read-modify-write per edge and column. Here
each level is one row-parallel gather instead, R^(l+1)(v) = 1/d(v) sum_{u in row v} [R^(l)(u) outside [lo, hi]]
R^(l)(u), over the rows that can still reach a target: a residue at level l only matters at nodes within
L - l walk steps of S (S^(j)(s, u) = 0 beyond j hops, and a push from u only lands on u's neighbours), so
level l+1 is computed on B_{L-l-1} = {u : dist(S, u) <= L-l-1} only and pushes outside the ball are skipped
(they cannot change any target's estimate; the result equals the unpruned one). Rows are in [node, column]
layout, one block of columns at a time, so a gather reads a contiguous run of columns per edge; each row is
written by one thread (no atomics) and every column's arithmetic is independent of the block it shares and
of the thread count. Leftover residues are folded in place into C_j = w_j R^(0) + sum_{t>=1} w_{t+j} R^(t)
on the ball, and P(s) = d(s)^r [ q(s) + C_0(s) + sum_{j>=1} sum_u S^(j)(s, u) C_j(u) ]. Stored residues
take the features' precision (float32 features: float32 levels, half the bytes per gathered entry; float64
features: float64 levels); every sum and the reserves are accumulated in float64.
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
    front = np.empty(n, dtype=np.int32)
    nf = 0
    for s in targets:
        if dist[s] != 0:
            dist[s] = 0
            front[nf] = s
            nf += 1
    nxt = np.empty(n, dtype=np.int32)
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
    """Nodes with dist <= levels grouped by distance (ascending ids within a group), prefix counts, slot of each node."""
    n = dist.shape[0]
    cnt = np.zeros(levels + 3, dtype=np.int64)  # dist runs to levels + 1 (outside the ball)
    for u in range(n):
        cnt[dist[u] + 1] += 1
    for k in range(levels + 1):
        cnt[k + 1] += cnt[k]
    pos = cnt[: levels + 1].copy()
    order = np.empty(cnt[levels + 1], dtype=np.int64)
    slot = np.full(n, -1, dtype=np.int32)
    for u in range(n):
        d = dist[u]
        if d <= levels:
            slot[u] = pos[d]
            order[pos[d]] = u
            pos[d] += 1
    return order, cnt[1 : levels + 2], slot  # B_k = order[:upto[k]] (new ids 0..upto[k]-1)


@njit(parallel=True, cache=True)
def _relabel(indptr, indices, order, nrows, slot):  # noqa: ANN001, ANN202
    """The CSR rows order[:nrows] with new ids (their neighbours lie in the ball: slot >= 0)."""
    ptr = np.zeros(nrows + 1, dtype=np.int64)
    for k in range(nrows):
        u = order[k]
        ptr[k + 1] = ptr[k] + indptr[u + 1] - indptr[u]
    idx = np.empty(ptr[nrows], dtype=np.int32)
    nch = (nrows + _CHUNK - 1) // _CHUNK
    for ch in prange(nch):
        for k in range(ch * _CHUNK, min(nrows, (ch + 1) * _CHUNK)):
            u = order[k]
            q = ptr[k]
            for p in range(indptr[u], indptr[u + 1]):
                idx[q] = slot[indices[p]]
                q += 1
    return ptr, idx


@njit(parallel=True, cache=True)
def _map_nodes(lnodes, lptr, slot):  # noqa: ANN001, ANN202
    levels = lptr.shape[0]
    out = np.empty(lnodes.shape, dtype=np.int32)
    for j in range(levels):
        m = lptr[j, lptr.shape[1] - 1]
        nch = (m + _CHUNK - 1) // _CHUNK
        for ch in prange(nch):
            for p in range(ch * _CHUNK, min(m, (ch + 1) * _CHUNK)):
                out[j, p] = slot[lnodes[j, p]]
    return out


@njit(parallel=True, cache=True)
def _init_level0(xt, cols, c0, nb, dneg, order, lo, hi, r0, tlo, thi):  # noqa: ANN001, ANN202
    """R^(0) on the ball (new ids) and the block's thresholds."""
    for jj in prange(nb):
        c = cols[c0 + jj]
        tlo[jj] = lo[c]
        thi[jj] = hi[c]
        for k in range(order.shape[0]):
            u = order[k]
            r0[k, jj] = xt[c, u] * dneg[u]


@njit(parallel=True, cache=True)
def _gather(ptr, idx, inv, src, dst, nrows, lo, hi, nb):  # noqa: ANN001, ANN202
    """dst[v] = inv(v) * sum over row v of the src values outside [lo, hi] (per column), v < nrows."""
    nch = (nrows + _CHUNK - 1) // _CHUNK
    for ch in prange(nch):
        acc = np.empty(nb)
        for v in range(ch * _CHUNK, min(nrows, (ch + 1) * _CHUNK)):
            for jj in range(nb):
                acc[jj] = 0.0
            for p in range(ptr[v], ptr[v + 1]):
                u = idx[p]
                for jj in range(nb):
                    ru = src[u, jj]
                    acc[jj] += ru if (ru > hi[jj] or ru < lo[jj]) else 0.0
            iv = inv[v]
            for jj in range(nb):
                dst[v, jj] = acc[jj] * iv


@njit(parallel=True, cache=True)
def _settle(res, nrows, lo, hi, nb):  # noqa: ANN001, ANN202
    """Clear the pushed residues (R > hi or R < lo) of rows < nrows: what stays is the leftover."""
    nch = (nrows + _CHUNK - 1) // _CHUNK
    for ch in prange(nch):
        for u in range(ch * _CHUNK, min(nrows, (ch + 1) * _CHUNK)):
            for jj in range(nb):
                ru = res[u, jj]
                if ru > hi[jj] or ru < lo[jj]:
                    res[u, jj] = 0.0


@njit(parallel=True, cache=True)
def _fold(buf, off, wts, upto, nb):  # noqa: ANN001, ANN202
    """In place: C_j(u) = w_j R^(0)(u) + sum_{t=1}^{L-j} w_{t+j} R^(t)(u) for dist(u) <= j, stored where R^(L-j) was.

    R^(t) lives at buf[off[t] + u] for u < upto[L-t], so node u (dist du) has R^(0..L-du) and C_(du..L): the
    same slots."""
    levels = wts.shape[0] - 1
    nrows = upto[levels]
    nch = (nrows + _CHUNK - 1) // _CHUNK
    for ch in prange(nch):
        tmp = np.empty((levels + 1, nb))
        du = 0
        for u in range(ch * _CHUNK, min(nrows, (ch + 1) * _CHUNK)):
            while u >= upto[du]:
                du += 1
            for t in range(levels - du + 1):
                for jj in range(nb):
                    tmp[t, jj] = buf[off[t] + u, jj]
            for j in range(du, levels + 1):
                for jj in range(nb):
                    z = wts[j] * tmp[0, jj]
                    for t in range(1, levels - j + 1):
                        if wts[t + j] != 0.0:
                            z += wts[t + j] * tmp[t, jj]
                    buf[off[levels - j] + u, jj] = z


@njit(parallel=True, cache=True)
def _combine(buf, off, upto, q, tslot, dpos, targets, lptr, mnodes, lprobs, live, cols, c0, nb, out):  # noqa: ANN001, ANN202
    levels = off.shape[0] - 1
    t_count = targets.shape[0]
    nch = (t_count + _CHUNK - 1) // _CHUNK
    for ch in prange(nch):
        acc = np.empty(nb)
        for i in range(ch * _CHUNK, min(t_count, (ch + 1) * _CHUNK)):
            base = off[levels] + tslot[i]  # C_0 sits where R^(L) was
            for jj in range(nb):
                acc[jj] = q[i, jj] + buf[base, jj]
            for j in range(1, levels + 1):
                if not live[j]:
                    continue
                o = off[levels - j]
                lim = upto[j]
                for p in range(lptr[j - 1, i], lptr[j - 1, i + 1]):
                    u = mnodes[j - 1, p]
                    if u < 0 or u >= lim:  # farther than j steps: S^(j)(s, u) is 0 in expectation
                        continue
                    pr = lprobs[j - 1, p]
                    for jj in range(nb):
                        acc[jj] += pr * buf[o + u, jj]
            for jj in range(nb):
                out[cols[c0 + jj], i] = dpos[targets[i]] * acc[jj]


@njit(cache=True)
def _reserve(res_t, q, tslot, lo, hi, w, nb):  # noqa: ANN001, ANN202
    for i in range(tslot.shape[0]):
        s = tslot[i]
        for jj in range(nb):
            ru = res_t[s, jj]
            if ru > hi[jj] or ru < lo[jj]:
                q[i, jj] += w * ru


def ball_rows(levels: int, n: int, upto: np.ndarray) -> int:
    """Rows of all level arrays together: sum_t |B_(L-t)|."""
    return int(sum(int(upto[levels - t]) for t in range(levels + 1)))


def bidir_pull(
    indptr: np.ndarray,
    indices: np.ndarray,
    deg: np.ndarray,
    xt: np.ndarray,
    cols: np.ndarray,
    dneg: np.ndarray,
    dpos: np.ndarray,
    wts: np.ndarray,
    thresholds: tuple[np.ndarray, np.ndarray],
    targets: np.ndarray,
    coef: tuple[np.ndarray, np.ndarray, np.ndarray],
    out: np.ndarray,
    width: int | None = None,
    budget: int = 1 << 30,
    report: dict | None = None,
) -> None:
    """Write the estimate of columns `cols` of xt [F, n] into out[cols] ([F, |S|]); indptr/indices = rows of A.

    Nodes are renumbered by distance to S (the ball B_L only), so level l is a dense [|B_(L-l)|, W] array
    and the gathers run over a compact CSR: memory and work follow the ball, not n."""
    levels = wts.shape[0] - 1
    lptr, lnodes, lprobs = coef
    dist = hop_distances(indptr, indices, targets, levels)
    order, upto, slot = _ball_order(dist, levels)
    del dist
    inner = int(upto[levels - 1]) if levels > 0 else 0  # rows that are ever gathered: dist <= L-1
    ptr, idx = _relabel(indptr, indices, order, inner, slot)
    mnodes = _map_nodes(lnodes, lptr, slot)
    tslot = slot[targets]
    del slot
    dg = deg[order[:inner]]
    inv = np.where(dg > 0, 1.0 / np.where(dg > 0, dg, 1.0), 0.0)
    live = np.array([bool(np.any(wts[j:] != 0.0)) for j in range(levels + 1)])
    rows = ball_rows(levels, xt.shape[1], upto)
    off = np.zeros(levels + 1, dtype=np.int64)
    for t in range(1, levels + 1):
        off[t] = off[t - 1] + upto[levels - t + 1]
    f = cols.shape[0]
    # stored residues in the features' precision (float32 features: float32 levels, half the gathered bytes);
    # every sum is accumulated in float64 and float64 features keep float64 levels (the exactness tests)
    rdt = np.float32 if xt.dtype == np.float32 else np.float64
    item = np.dtype(rdt).itemsize
    w = int(width) if width else max(1, min(64, f, budget // max(rows * item, 1)))
    w = max(1, min(w, f))
    w = -(-f // -(-f // w))  # even blocks
    buf = np.empty((rows, w), dtype=rdt)
    q = np.empty((targets.shape[0], w))
    lo, hi = thresholds
    tlo, thi = np.empty(w), np.empty(w)
    if report is not None:
        report.update(pull_ball=int(upto[levels]), pull_rows=rows, pull_width=w, pull_entries=int(ptr[-1]))
    for c0 in range(0, f, w):
        nb = min(w, f - c0)
        q[:] = 0.0
        _init_level0(xt, cols, c0, nb, dneg, order, lo, hi, buf[: upto[levels]], tlo, thi)
        for t in range(levels):
            src = buf[off[t] : off[t] + upto[levels - t]]
            dst = buf[off[t + 1] : off[t + 1] + upto[levels - t - 1]]
            _gather(ptr, idx, inv, src, dst, int(upto[levels - t - 1]), tlo, thi, nb)
            _reserve(src, q, tslot, tlo, thi, float(wts[t]), nb)
            _settle(src, int(upto[levels - t]), tlo, thi, nb)
        _fold(buf, off, wts, upto, nb)
        _combine(buf, off, upto, q, tslot, dpos, targets, lptr, mnodes, lprobs, live, cols, c0, nb, out)
