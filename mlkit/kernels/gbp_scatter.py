"""GBP's bidirectional estimator, scatter kernel with memory proportional to the touched nodes (spec §2.2).

    walk_nodes(lptr, lnodes, targets)        the nodes the walks reach (and the targets), the walk entries mapped
                                             onto them (shared, read-only, once per call)
    scatter_blocks(..., out)                 the estimate of the columns `cols` (same result as gbp_pull's gather)

Per block of W columns a worker keeps residues only for the nodes a push reached: an open-addressing hash map
node -> slot, and per slot R^(1..L) (then Z_j), the reserve q and a level flag, all grown by doubling. Level 0
is never stored: R^(0)(u) = x(u) d(u)^-r is read from the features and tested against the column's thresholds
(lo, hi) again where it is needed (a residue moves on when R > hi or R < lo). The combine reads level-0
leftovers from a [|U|, W] array over U = the walks' nodes plus the targets, so a worker's scratch is
O((touched + |U|) W (L + 2)) words, never O(n). Each level is visited in ascending node order (a sort of its
slots), so a column's result does not depend on which columns share its block or on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_EMPTY = -1


def walk_nodes(lptr: np.ndarray, lnodes: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U = the walks' nodes and the targets, sorted; the walk entries as positions in U, -1 as padding)."""
    levels = lptr.shape[0]
    parts = [np.asarray(targets, dtype=np.int64)]
    for j in range(levels):
        parts.append(lnodes[j, : int(lptr[j, -1])])
    uni = np.unique(np.concatenate(parts))
    pos_t = np.int32 if uni.shape[0] < 2**31 else np.int64
    mapped = np.full(lnodes.shape, -1, dtype=pos_t)
    for j in range(levels):
        m = int(lptr[j, -1])
        mapped[j, :m] = np.searchsorted(uni, lnodes[j, :m])
    return uni, mapped


@njit(cache=True, inline="always")
def _hash(u, mask):  # noqa: ANN001, ANN202
    return (np.int64(u) * np.int64(0x9E3779B1)) & mask  # int64 also when the JIT is off (int32 u)


@njit(cache=True)
def _find(hkeys, hvals, mask, u):  # noqa: ANN001, ANN202
    """Slot of node u, or -1."""
    h = _hash(u, mask)
    while True:
        k = hkeys[h]
        if k == u:
            return hvals[h]
        if k == _EMPTY:
            return -1
        h = (h + 1) & mask


@njit(cache=True)
def _rehash(node, count, hcap):  # noqa: ANN001, ANN202
    hkeys = np.full(hcap, _EMPTY, dtype=np.int64)
    hvals = np.empty(hcap, dtype=np.int64)
    mask = hcap - 1
    for s in range(count):
        h = _hash(node[s], mask)
        while hkeys[h] != _EMPTY:
            h = (h + 1) & mask
        hkeys[h] = node[s]
        hvals[h] = s
    return hkeys, hvals


@njit(cache=True)
def _grow(node, res, q, flag, cap):  # noqa: ANN001, ANN202
    n2 = np.empty(cap, dtype=np.int64)
    r2 = np.zeros((cap, res.shape[1], res.shape[2]))
    q2 = np.zeros((cap, q.shape[1]))
    f2 = np.zeros((cap, flag.shape[1]), dtype=np.uint8)
    k = node.shape[0]
    n2[:k] = node
    r2[:k] = res
    q2[:k] = q
    f2[:k] = flag
    return n2, r2, q2, f2


@njit(cache=True)
def _worker(wk, workers, width, indptr, indices, inv, xt, cols, dneg, dpos, lo, hi, wts, targets,
            lptr, mnodes, lprobs, usz, unodes, out):  # noqa: ANN001, ANN202, E501
    f = cols.shape[0]
    n = xt.shape[1]
    levels = wts.shape[0] - 1
    lv = max(levels, 1)
    nblocks = (f + width - 1) // width
    cap = 1024
    node = np.empty(cap, dtype=np.int64)
    res = np.zeros((cap, lv, width))  # res[s, t-1] = R^(t)(node[s]); after the pushes: Z_(t-1)
    q = np.zeros((cap, width))
    flag = np.zeros((cap, levels + 1), dtype=np.uint8)
    hcap = 2048
    hkeys = np.full(hcap, _EMPTY, dtype=np.int64)
    hvals = np.empty(hcap, dtype=np.int64)
    lcap = 1024
    lst = np.empty(lcap, dtype=np.int64)  # per-level slot lists, level l+1 right after level l
    start = np.zeros(levels + 2, dtype=np.int64)
    left0 = np.empty((usz, width))  # level-0 leftovers on U
    moved = np.empty(width)
    acc = np.empty(width)
    tmp = np.empty(levels + 1)
    for b in range(wk, nblocks, workers):
        c0 = b * width
        nb = min(f, c0 + width) - c0
        count = 0
        nl = 0
        for level in range(levels):
            nxt = level + 1
            start[nxt] = nl
            if level == 0:
                m = n
                slots = lst[:0]
            else:
                seg = lst[start[level] : start[level + 1]].copy()
                slots = seg[np.argsort(node[seg])]  # ascending node ids: a canonical order
                m = slots.shape[0]
            for k in range(m):
                s = -1 if level == 0 else slots[k]
                u = k if level == 0 else node[s]
                hit = False
                for jj in range(nb):
                    c = cols[c0 + jj]
                    ru = xt[c, u] * dneg[u] if level == 0 else res[s, level - 1, jj]
                    if ru > hi[c] or ru < lo[c]:
                        moved[jj] = ru
                        hit = True
                        if level > 0:
                            res[s, level - 1, jj] = 0.0
                            q[s, jj] += wts[level] * ru
                    else:
                        moved[jj] = 0.0
                if not hit:
                    continue
                d = indptr[u + 1] - indptr[u]
                if count + d > cap:
                    while count + d > cap:
                        cap *= 2
                    node, res, q, flag = _grow(node, res, q, flag, cap)
                if 2 * (count + d) > hcap:
                    while 2 * (count + d) > hcap:
                        hcap *= 2
                    hkeys, hvals = _rehash(node, count, hcap)
                if nl + d > lcap:
                    while nl + d > lcap:
                        lcap *= 2
                    l2 = np.empty(lcap, dtype=np.int64)
                    l2[:nl] = lst[:nl]
                    lst = l2
                mask = hcap - 1
                for p in range(indptr[u], indptr[u + 1]):
                    v = indices[p]
                    h = _hash(v, mask)
                    while hkeys[h] != v and hkeys[h] != _EMPTY:
                        h = (h + 1) & mask
                    if hkeys[h] == _EMPTY:
                        hkeys[h] = v
                        hvals[h] = count
                        node[count] = v
                        sv = count
                        count += 1
                    else:
                        sv = hvals[h]
                    if flag[sv, nxt] == 0:
                        flag[sv, nxt] = 1
                        lst[nl] = sv
                        nl += 1
                    iv = inv[v]
                    for jj in range(nb):
                        res[sv, level, jj] += moved[jj] * iv
        start[levels + 1] = nl
        # Z_j = sum_{t=1}^{L-j} w_{t+j} R^(t), j = 0..L-1, stored where R^(j+1) was
        for s in range(count):
            for jj in range(nb):
                for t in range(1, levels + 1):
                    tmp[t] = res[s, t - 1, jj]
                for j in range(levels):
                    z = 0.0
                    for t in range(1, levels - j + 1):
                        z += wts[t + j] * tmp[t]
                    res[s, j, jj] = z
        # level-0 leftovers on U (the nodes the walks reach, and the targets)
        for k in range(usz):
            u = unodes[k]
            for jj in range(nb):
                c = cols[c0 + jj]
                v = xt[c, u] * dneg[u]
                left0[k, jj] = 0.0 if (v > hi[c] or v < lo[c]) else v
        mask = hcap - 1
        for i in range(targets.shape[0]):
            sn = targets[i]
            ss = _find(hkeys, hvals, mask, sn)
            for jj in range(nb):
                c = cols[c0 + jj]
                v = xt[c, sn] * dneg[sn]
                a = wts[0] * v  # pushed at level 0: reserve w_0 R; else leftover credited with w_0 (S^(0) = I)
                if ss >= 0:
                    a += q[ss, jj] + (res[ss, 0, jj] if levels > 0 else 0.0)
                acc[jj] = a
            for j in range(1, levels + 1):
                wj = wts[j]
                for p in range(lptr[j - 1, i], lptr[j - 1, i + 1]):
                    k = mnodes[j - 1, p]
                    pr = lprobs[j - 1, p]
                    if wj != 0.0:
                        for jj in range(nb):
                            acc[jj] += pr * wj * left0[k, jj]
                    if j < levels:
                        sv = _find(hkeys, hvals, mask, unodes[k])
                        if sv >= 0:
                            for jj in range(nb):
                                acc[jj] += pr * res[sv, j, jj]
            for jj in range(nb):
                out[cols[c0 + jj], i] = dpos[sn] * acc[jj]
        # reset what this block touched
        for s in range(count):
            for t in range(lv):
                for jj in range(width):
                    res[s, t, jj] = 0.0
            for jj in range(width):
                q[s, jj] = 0.0
            for t in range(levels + 1):
                flag[s, t] = 0
        hkeys[:] = _EMPTY
    return cap


@njit(parallel=True, cache=True)
def scatter_blocks(indptr, indices, inv, xt, cols, dneg, dpos, lo, hi, wts, targets, lptr, mnodes,
                   lprobs, unodes, width, nworkers, out, caps):  # noqa: ANN001, ANN201, E501
    """Estimate columns `cols` into out[cols]; caps[w] = the slot capacity worker w reached (memory report)."""
    nblocks = (cols.shape[0] + width - 1) // width
    workers = min(nworkers, nblocks)
    for wk in prange(workers):
        caps[wk] = _worker(wk, workers, width, indptr, indices, inv, xt, cols, dneg, dpos, lo, hi, wts,
                           targets, lptr, mnodes, lprobs, unodes.shape[0], unodes, out)  # fmt: skip
