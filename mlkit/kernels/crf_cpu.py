"""CRF negative log-likelihood and its gradient in one Numba pass per sentence (the CPU path of `crf_nll_torch`).

The torch path runs the forward and backward algorithms as ~7 batched ops per position; on CPU the op calls,
not the arithmetic (T² per position), are the cost. Here each sentence runs its forward-backward in float64
in one compiled loop, the sentences in parallel (prange): node marginals minus gold one-hots are the gradient of
the emissions, pair marginals minus gold transition counts that of A (START row and STOP column included).
The recursions are scaled, as for HMMs: alpha_j = c_j + log a_j with max a_j = 1 (beta likewise), the matvec runs
on E = exp(A - max A) and the emissions enter as exp(emis_j - max emis_j), so a position costs T exponentials and
one log. E needs the spread of A below ~700 (float64 exp); `crf_nll_torch` keeps the log-space torch loop beyond.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

MAX_SPREAD = 600.0
_FAST = {
    "reassoc",
    "contract",
    "nsz",
}  # vectorised sums; no assumptions about inf (the maxima start at -inf)  # spread of the inner transitions up to which E = exp(A - max A) keeps every entry > 0


@njit(cache=True, parallel=True, fastmath=_FAST)
def crf_nll_grad_numba(emis, tags, lengths, trans, want_grad):  # pragma: no cover - compiled
    """emis [B, m, T], tags [B, m] int64, lengths [B], trans [T+2, T+2] (START = T, STOP = T+1).

    Returns nll [B] float64, d_emis [B, m, T] (d nll_b / d emis_b; zeros when not want_grad or past the
    sentence) and d_trans [B, T+2, T+2] (d nll_b / d A per sentence), both float64.
    """
    b, m, t = emis.shape
    start = t
    stop = t + 1
    n2 = t + 2
    amax = -np.inf
    amin = np.inf
    for x in range(t):
        for y in range(t):
            amax = max(amax, trans[x, y])
            amin = min(amin, trans[x, y])
    ex = np.empty((t, t))
    for x in range(t):
        for y in range(t):
            ex[x, y] = np.exp(trans[x, y] - amax)
    nll = np.zeros(b)
    d_emis = np.zeros((b, m, t)) if want_grad else np.zeros((b, 0, t))
    d_trans = np.zeros((b, n2, n2)) if want_grad else np.zeros((b, 0, 0))
    for s in prange(b):
        n = lengths[s]
        if n <= 0:
            continue
        # forward, scaled: alpha_j(y) = c_j + log a_j(y), max_y a_j = 1; ee_j = exp(emis_j - max emis_j)
        a = np.empty((n, t))
        ee = np.empty((n, t))
        c = np.empty(n)
        em = np.empty(n)
        for j in range(n):
            mx = -np.inf
            for y in range(t):
                mx = max(mx, emis[s, j, y])
            em[j] = mx
            for y in range(t):
                ee[j, y] = np.exp(emis[s, j, y] - mx)
        mx = -np.inf  # position 0 in log space: START scores and emissions may both spread widely
        for y in range(t):
            mx = max(mx, trans[start, y] + emis[s, 0, y])
        for y in range(t):
            a[0, y] = np.exp(trans[start, y] + emis[s, 0, y] - mx)
        c[0] = mx
        for j in range(1, n):
            for y in range(t):
                a[j, y] = 0.0
            for x in range(t):  # a_j = (a_{j-1} @ E) * ee_j, row by row (contiguous inner loop)
                ax = a[j - 1, x]
                for y in range(t):
                    a[j, y] += ax * ex[x, y]
            am = 0.0
            for y in range(t):
                a[j, y] *= ee[j, y]
                am = max(am, a[j, y])
            for y in range(t):
                a[j, y] /= am
            c[j] = c[j - 1] + amax + em[j] + np.log(am)
        # log Z = c_{n-1} + log sum_y a_{n-1}(y) exp(A[y, STOP])
        mx = -np.inf
        for y in range(t):
            mx = max(mx, trans[y, stop])
        stp = np.empty(t)
        acc = 0.0
        for y in range(t):
            stp[y] = np.exp(trans[y, stop] - mx)
            acc += a[n - 1, y] * stp[y]
        logz = c[n - 1] + mx + np.log(acc)
        gold = trans[start, tags[s, 0]] + emis[s, 0, tags[s, 0]] + trans[tags[s, n - 1], stop]
        for j in range(1, n):
            gold += trans[tags[s, j - 1], tags[s, j]] + emis[s, j, tags[s, j]]
        nll[s] = logz - gold
        if not want_grad:
            continue
        # backward, scaled: beta_j(y) = d_j + log bt(y), max_y bt = 1; beta_{n-1}(y) = A[y, STOP]
        bt = stp.copy()
        d = mx
        w = np.empty(t)
        for j in range(n - 1, -1, -1):
            k = np.exp(c[j] + d - logz)  # node marginal at j = a_j(y) bt(y) k
            for y in range(t):
                d_emis[s, j, y] = a[j, y] * bt[y] * k
            if j == 0:
                break
            wm = 0.0
            for y in range(t):
                w[y] = ee[j, y] * bt[y]
                wm = max(wm, w[y])
            for y in range(t):  # max w = 1 keeps the pair factor below exp(MAX_SPREAD)
                w[y] /= wm
            d += np.log(wm)
            # pair marginals (x at j-1, y at j) = a_{j-1}(x) E(x, y) w(y) exp(c_{j-1} + amax + em_j + d - log Z)
            k = np.exp(c[j - 1] + amax + em[j] + d - logz)
            bm = 0.0
            for x in range(t):
                acc = 0.0
                ax = a[j - 1, x] * k
                for y in range(t):
                    v = ex[x, y] * w[y]
                    d_trans[s, x, y] += ax * v
                    acc += v
                bt[x] = acc
                bm = max(bm, acc)
            for x in range(t):
                bt[x] /= bm
            d = d + amax + em[j] + np.log(bm)
        for y in range(t):
            d_trans[s, start, y] = d_emis[s, 0, y]
            d_trans[s, y, stop] = d_emis[s, n - 1, y]
        # minus the gold path
        d_emis[s, 0, tags[s, 0]] -= 1.0
        d_trans[s, start, tags[s, 0]] -= 1.0
        d_trans[s, tags[s, n - 1], stop] -= 1.0
        for j in range(1, n):
            d_emis[s, j, tags[s, j]] -= 1.0
            d_trans[s, tags[s, j - 1], tags[s, j]] -= 1.0
    return nll, d_emis, d_trans


def spread_ok(trans: np.ndarray) -> bool:
    """Whether the scaled recursion of `crf_nll_grad_numba` is exact for these transitions: the spreads of the
    inner block and of the STOP column (whose exponentials are taken relative to their maxima) within MAX_SPREAD."""
    t = trans.shape[0] - 2
    inner, stop = trans[:t, :t], trans[:t, t + 1]
    return bool(np.ptp(inner) <= MAX_SPREAD and np.ptp(stop) <= MAX_SPREAD)


def crf_nll_grad(emis: np.ndarray, tags: np.ndarray, lengths: np.ndarray, trans: np.ndarray, want_grad: bool):
    """NumPy entry: contiguous float64 copies in, (nll [B], d_emis [B, m, T], d_trans [B, T+2, T+2]) out."""
    return crf_nll_grad_numba(
        np.ascontiguousarray(emis, dtype=np.float64),
        np.ascontiguousarray(tags, dtype=np.int64),
        np.ascontiguousarray(lengths, dtype=np.int64),
        np.ascontiguousarray(trans, dtype=np.float64),
        bool(want_grad),
    )
