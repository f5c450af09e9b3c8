"""The original GBP code's reverse push (`BackwardPush_ppr`), re-stated in numba as the benchmark's baseline.

A LIFO stack with an in-set bit map (its Node_Set), a division by the integer degree per neighbour visit and a
separate residue array, one column and sign at a time: `gbp_push.ppr_push_numba(..., order="original")`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


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
            _push_sign_original(
                indptr, indices, deg, xt[j], dneg, 1.0, alpha, rmax, res, reserve, stack, bits
            )
            for u in range(n):
                acc[u] = reserve[u] + alpha * res[u]
            _push_sign_original(
                indptr, indices, deg, xt[j], dneg, -1.0, alpha, rmax, res, reserve, stack, bits
            )
            for u in range(n):
                out[j, u] = dpos[u] * (acc[u] - (reserve[u] + alpha * res[u]))
