"""GBP's bidirectional estimator (spec §2.2): level-wise reverse push from the features, combined with the
target-side walk distributions.

    coefficients(walk_levels, weights, targets)          pack the walk levels S^(1..L) for the kernel
    bidirectional_reference(indptr, indices, x, weights, r, rmax, targets, s_levels)   dense NumPy
    bidirectional_numba(indptr, indices, x, weights, r, rmax, targets, coef, deg=None, mode="auto")
    bidirectional(x, ...)                                entry point (CPU)

Two kernels compute the same estimate (equal up to rounding): the scatter push of gbp_scatter (mode "push",
work and memory proportional to the pushes and the touched nodes: right when few nodes cross the threshold)
and the level-synchronous gather of gbp_pull (mode "pull": right when most nodes do, e.g. a small relative
r_max or the original's Friendster thresholds; it works on the targets' L-hop ball only). mode "auto" picks
per column from the share of nodes that cross the threshold at level 0.

Per column, with R^(0) = D^-r x and thresholds (lo, hi) (column_thresholds: the paper's hi = -lo =
rmax ||D^-r x||_1, or the original's raw-sum rule): for l = 0..L-1 every node with R^(l)(u) > hi or
R^(l)(u) < lo moves its residue to level l+1 (R^(l+1)(v) += R^(l)(u) / d(v) for every v with A[v,u] = 1)
and keeps w_l R^(l)(u) as reserve. The invariant M^l D^-r x = Q^(l) + sum_{t<=l} M^(l-t) R^(t) makes
P(s) = d(s)^r [ sum_l w_l Q^(l)(s) + sum_t sum_{j<=L-t} w_{t+j} (S^(j) R^(t))(s) ]
     = d(s)^r [ q(s) + sum_j sum_u S^(j)(s, u) (w_j R^(0)(u) + Z_j(u)) ],  Z_j = sum_{t>=1} w_{t+j} R^(t),
exact when S^(j) = M^j (for any thresholds), and unbiased when S^(j) are walk estimates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from mlkit.kernels.gbp_push import degree_powers, degrees


# ------------------------------------------------------------------------------------- walk levels
def coefficients(
    walk_levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]], weights: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack S^(1..L) for the kernel as (ptr [L, |S|+1], nodes [L, width], probs [L, width])."""
    levels = len(weights) - 1
    t_count = np.asarray(targets).shape[0]
    if len(walk_levels) < levels:
        raise ValueError(f"need walk distributions for {levels} levels, got {len(walk_levels)}")
    width = max([lv[1].shape[0] for lv in walk_levels[:levels]] + [1])
    lptr = np.zeros((max(levels, 1), t_count + 1), dtype=np.int64)
    lnodes = np.zeros((max(levels, 1), width), dtype=np.int64)
    lprobs = np.zeros((max(levels, 1), width))
    for j in range(levels):
        ptr, nodes, probs = walk_levels[j]
        lptr[j] = ptr
        lnodes[j, : nodes.shape[0]] = nodes
        lprobs[j, : probs.shape[0]] = probs
    return lptr, lnodes, lprobs


# ------------------------------------------------------------------------------------ thresholds
THRESHOLDS = ("paper", "original")


@njit(parallel=True, cache=True)
def _thresholds(xt, cols, dneg, rmax, original, lo, hi):  # noqa: ANN001, ANN202
    for k in prange(cols.shape[0]):
        c = cols[k]
        if original:  # BiP.transition: raw feature sums, taken before the d^-r scaling; no zero-mass guard
            pos = 0.0
            neg = 0.0
            for u in range(xt.shape[1]):
                v = xt[c, u]
                if v > 0.0:
                    pos += v
                else:
                    neg += v
            hi[c] = rmax * pos
            lo[c] = rmax * neg / 50.0
        else:
            mass = 0.0
            for u in range(xt.shape[1]):
                mass += abs(xt[c, u] * dneg[u])
            hi[c] = rmax * (mass if mass > 0.0 else 1.0)
            lo[c] = -hi[c]


def column_thresholds(
    xt: np.ndarray, dneg: np.ndarray, rmax: float, rule: str = "paper"
) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per column of xt [F, n]: a residue R moves on when R > hi or R < lo.

    paper:    hi = -lo = rmax ||D^-r x||_1 (a zero mass counts as 1), the paper's relative threshold;
    original: hi = rmax * (sum of the column's positive raw features), lo = rmax * (sum of its negative raw
              features) / 50 -- the original's BiP.transition (Friendster path), sums before the d^-r scaling."""
    if rule not in THRESHOLDS:
        raise ValueError(f"thresholds must be one of {THRESHOLDS}, not {rule!r}")
    f = xt.shape[0]
    lo, hi = np.empty(f), np.empty(f)
    _thresholds(xt, np.arange(f, dtype=np.int64), dneg, float(rmax), rule == "original", lo, hi)
    return lo, hi


@njit(parallel=True, cache=True)
def level0_density(xt, cols, dneg, lo, hi):  # noqa: ANN001, ANN201
    """Fraction of nodes whose level-0 residue x(u) d(u)^-r crosses the column's thresholds, per column."""
    n = xt.shape[1]
    out = np.zeros(cols.shape[0])
    for k in prange(cols.shape[0]):
        c = cols[k]
        m = 0
        for u in range(n):
            v = xt[c, u] * dneg[u]
            if v > hi[c] or v < lo[c]:
                m += 1
        out[k] = m / max(n, 1)
    return out


def block_width(num_cols: int, threads: int) -> int:
    """Columns per block of the scatter kernel: enough blocks for the threads, at most 16 (its scratch grows
    with the touched nodes times the width, not with n)."""
    return int(max(1, min(16, -(-num_cols // max(threads, 1)))))


def bidirectional_numba(
    indptr: np.ndarray,
    indices: np.ndarray,
    x: np.ndarray,
    weights: np.ndarray,
    r: float,
    rmax: float,
    targets: np.ndarray,
    coef: tuple[np.ndarray, np.ndarray, np.ndarray],
    deg: np.ndarray | None = None,
    transposed: bool = False,
    out_dtype: Any = np.float32,
    width: int | None = None,
    mode: str = "auto",
    rows: tuple[np.ndarray, np.ndarray] | None = None,
    dense_at: float = 0.2,
    thresholds: str = "paper",
    report: dict[str, Any] | None = None,
    pull_budget: int = 1 << 30,
) -> np.ndarray:
    """Bidirectional estimate of the target rows: returns [F, |S|] (x as [n, F], or [F, n] if transposed).

    indptr/indices are the push CSR (A itself when symmetric, else A^T with `deg` the row degrees of A);
    `rows` = A's CSR for the pull kernel (default: the push CSR when deg is None or it is symmetric).
    mode: "push" scatters pushes into per-worker hash maps of the touched nodes (gbp_scatter: cheap when few
    nodes cross the threshold), "pull" gathers level by level on the targets' ball (gbp_pull), "auto" picks
    per column: pull when at least `dense_at` of the nodes cross the threshold at level 0. thresholds: "paper"
    or "original" (column_thresholds). Each column's result depends only on that column. `report` (a dict)
    receives the scratch sizes (scatter slots per worker, pull buffer bytes) for the memory model; pull_budget
    bounds the pull kernel's level buffer (bytes): more columns per pass over the graph for more memory.
    """
    import numba

    from mlkit.kernels import gbp_pull, gbp_scatter

    if mode not in ("auto", "push", "pull"):
        raise ValueError(f"mode must be auto, push or pull, not {mode!r}")
    xt = x if transposed else np.asarray(x).T
    if not (xt.flags.c_contiguous and xt.dtype in (np.float32, np.float64)):
        xt = np.ascontiguousarray(xt, dtype=np.float64 if xt.dtype == np.float64 else np.float32)
    sym_deg = deg is None
    deg = degrees(indptr) if deg is None else np.asarray(deg, dtype=np.float64)
    dneg, dpos = degree_powers(deg, r)
    targets = np.asarray(targets, dtype=np.int64)
    f, n = xt.shape
    out = np.empty((f, targets.shape[0]), dtype=out_dtype)
    lptr, lnodes, lprobs = coef
    w = np.asarray(weights, dtype=np.float64)
    lo, hi = column_thresholds(xt, dneg, float(rmax), thresholds)
    allc = np.arange(f, dtype=np.int64)
    if mode == "auto":
        dense = level0_density(xt, allc, dneg, lo, hi) >= dense_at if f else np.zeros(0, bool)
    else:
        dense = np.full(f, mode == "pull")
    pull_cols, push_cols = allc[dense], allc[~dense]
    rep = report if report is not None else {}
    if push_cols.size:
        threads = numba.get_num_threads()
        wd = int(width) if width else block_width(push_cols.size, threads)
        unodes, mnodes = gbp_scatter.walk_nodes(lptr, lnodes, targets)
        inv = np.where(deg > 0, 1.0 / np.where(deg > 0, deg, 1.0), 0.0)
        caps = np.zeros(threads, dtype=np.int64)
        gbp_scatter.scatter_blocks(indptr, indices, inv, xt, push_cols, dneg, dpos, lo, hi, w, targets, lptr,
                                   mnodes, lprobs, unodes, wd, threads, out, caps)  # fmt: skip
        rep.update(scatter_slots=caps.tolist(), scatter_width=wd, walk_nodes=int(unodes.shape[0]))
    if pull_cols.size:
        if rows is None:
            rows = (indptr, indices)
            if not sym_deg:
                from mlkit.kernels.gbp_push import is_symmetric

                if not is_symmetric(indptr, indices):
                    import scipy.sparse as sp

                    at = sp.csr_matrix((np.ones(indices.shape[0], np.float32), indices, indptr), shape=(n, n))
                    a = at.T.tocsr()
                    a.sort_indices()
                    rows = (a.indptr, a.indices)
        gbp_pull.bidir_pull(
            np.asarray(rows[0]),
            np.asarray(rows[1]),
            deg,
            xt,
            pull_cols,
            dneg,
            dpos,
            w,
            (lo, hi),
            targets,
            (lptr, lnodes, lprobs),
            out,
            width=width,
            budget=int(pull_budget),
            report=rep,
        )
    return out


def bidirectional(
    x: Any,
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    r: float,
    rmax: float,
    targets: np.ndarray,
    coef: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Entry point: the bidirectional estimator runs on the CPU (push queues are a poor fit for GPUs)."""
    return bidirectional_numba(
        np.asarray(indptr), np.asarray(indices), np.asarray(x), weights, r, rmax, targets, coef
    )


def bidirectional_reference(
    indptr: np.ndarray,
    indices: np.ndarray,
    x: np.ndarray,
    weights: np.ndarray,
    r: float,
    rmax: float,
    targets: np.ndarray,
    s_levels: list[np.ndarray],
    thresholds: str = "paper",
) -> np.ndarray:
    """Dense NumPy version of the same estimator ([|S|, F]); s_levels[j-1] = S^(j) as dense [|S|, n]."""
    n = indptr.shape[0] - 1
    deg = degrees(indptr)
    dneg, dpos = degree_powers(deg, r)
    levels = len(weights) - 1
    targets = np.asarray(targets)
    out = np.zeros((targets.shape[0], x.shape[1]))
    rows = np.repeat(np.arange(n), np.diff(indptr))
    for c in range(x.shape[1]):
        res = np.zeros((levels + 1, n))
        res[0] = dneg * x[:, c]
        if thresholds == "original":
            hi, lo = rmax * x[:, c][x[:, c] > 0].sum(), rmax * x[:, c][x[:, c] <= 0].sum() / 50.0
        else:
            hi = rmax * (np.abs(res[0]).sum() or 1.0)
            lo = -hi
        q = np.zeros(n)
        for level in range(levels):
            push = (res[level] > hi) | (res[level] < lo)
            moved = np.where(push, res[level], 0.0)
            q += weights[level] * moved
            res[level] -= moved
            # R^(l+1)(v) += moved(u) / d(v) for entries (u -> v) of the CSR rows
            np.add.at(res[level + 1], np.asarray(indices), moved[rows] / deg[np.asarray(indices)])
        est = q[targets].copy()
        for t in range(levels + 1):
            cmat = weights[t] * np.eye(n)[targets]
            for j in range(1, levels - t + 1):
                cmat = cmat + weights[t + j] * s_levels[j - 1]
            est += cmat @ res[t]
        out[:, c] = dpos[targets] * est
    return out
