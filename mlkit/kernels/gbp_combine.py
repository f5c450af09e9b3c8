"""GBP's bidirectional estimator (spec §2.2): level-wise reverse push from the features, combined with the
target-side walk distributions.

    coefficients(walk_levels, weights, targets)          pack the walk levels S^(1..L) for the kernel
    bidirectional_reference(indptr, indices, x, weights, r, rmax, targets, s_levels)   dense NumPy
    bidirectional_numba(indptr, indices, x, weights, r, rmax, targets, coef, deg=None, mode="auto")
    bidirectional(x, ...)                                entry point (CPU)

Two kernels compute the same estimate (equal up to rounding): the scatter push below (mode "push", work
proportional to the pushes: right when few nodes cross the threshold) and the level-synchronous gather of
gbp_pull (mode "pull": right when most nodes do, e.g. a small relative r_max; it works on the targets' L-hop
ball only). mode "auto" picks per column from the share of nodes above the threshold at level 0.

Per column, with R^(0) = D^-r x, threshold theta = rmax * ||D^-r x||_1: for l = 0..L-1 every node with
|R^(l)(u)| > theta moves its residue to level l+1 (R^(l+1)(v) += R^(l)(u) / d(v) for every v with A[v,u] = 1)
and keeps w_l R^(l)(u) as reserve. The invariant M^l D^-r x = Q^(l) + sum_{t<=l} M^(l-t) R^(t) makes
P(s) = d(s)^r [ sum_l w_l Q^(l)(s) + sum_t sum_{j<=L-t} w_{t+j} (S^(j) R^(t))(s) ]
     = d(s)^r [ q(s) + sum_j sum_u S^(j)(s, u) (w_j R^(0)(u) + Z_j(u)) ],  Z_j = sum_{t>=1} w_{t+j} R^(t),
exact when S^(j) = M^j, and unbiased when S^(j) are walk estimates. The work per column is one streaming
pass over x (level 0) plus the pushes and the combine: nodes touched at levels >= 1 are kept in lists and
reset individually; a level is visited in ascending node order (a sort of its touched list, or one byte
scan when it is dense), so each column's result does not depend on which columns share its block.
Columns are processed in blocks with node-major residues [level, node, column], so the combine reads a
contiguous run of columns per walk entry, and the combine costs sum_j nnz(S^(j)) per target and column;
each worker thread allocates its scratch once.
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


# ------------------------------------------------------------------------------------ push + combine
@njit(cache=True)
def _level_nodes(level, n, touched, ntouch, flag):  # noqa: ANN001, ANN202
    """Nodes to visit at a level, ascending (a canonical order: column results do not depend on the block)."""
    if level == 0:
        return np.arange(n)
    k = ntouch[level]
    if k * 8 < n:
        return np.sort(touched[level, :k])
    out = np.empty(k, dtype=np.int64)
    m = 0
    for u in range(n):  # dense level: one byte scan is cheaper than a sort
        if flag[level, u] != 0:
            out[m] = u
            m += 1
    return out


@njit(parallel=True, cache=True)
def _bidir_blocks(
    indptr, indices, deg, xt, cols, dneg, dpos, wts, rmax, targets, lptr, lnodes, lprobs, width, nworkers, out
):  # noqa: ANN001, ANN202, E501
    f = cols.shape[0]
    n = xt.shape[1]
    levels = wts.shape[0] - 1
    nblocks = (f + width - 1) // width
    workers = min(nworkers, nblocks)
    for wk in prange(workers):
        # scratch owned by one worker, reused across its blocks (only touched entries are reset)
        res = np.zeros((levels + 1, n, width))  # node-major: the combine reads contiguous values per entry
        flag = np.zeros((levels + 1, n), dtype=np.uint8)
        touched = np.empty((levels + 1, n), dtype=np.int64)
        ntouch = np.zeros(levels + 1, dtype=np.int64)
        q = np.zeros((n, width))
        zz = np.zeros((levels + 1, n, width))  # Z_j = sum_{t>=1} w_{t+j} R^(t) on touched nodes
        ulist = np.empty(n, dtype=np.int64)
        uflag = np.zeros(n, dtype=np.uint8)
        qlist = np.empty(n, dtype=np.int64)
        qflag = np.zeros(n, dtype=np.uint8)
        theta = np.empty(width)
        moved = np.empty(width)
        acc = np.empty(width)
        for b in range(wk, nblocks, workers):
            c0 = b * width
            nb = min(f, c0 + width) - c0
            _one_block(
                indptr,
                indices,
                deg,
                xt,
                cols,
                dneg,
                dpos,
                wts,
                rmax,
                targets,
                lptr,
                lnodes,
                lprobs,
                c0,
                nb,
                res,
                flag,
                touched,
                ntouch,
                q,
                zz,
                ulist,
                uflag,
                qlist,
                qflag,
                theta,
                moved,
                acc,
                out,
            )


@njit(cache=True)
def _one_block(
    indptr,
    indices,
    deg,
    xt,
    cols,
    dneg,
    dpos,
    wts,
    rmax,
    targets,
    lptr,
    lnodes,
    lprobs,
    c0,
    nb,  # noqa: ANN001, ANN202
    res,
    flag,
    touched,
    ntouch,
    q,
    zz,
    ulist,
    uflag,
    qlist,
    qflag,
    theta,
    moved,
    acc,
    out,
):
    n = xt.shape[1]
    levels = wts.shape[0] - 1
    t_count = targets.shape[0]
    for jj in range(nb):
        mass = 0.0
        for u in range(n):
            v = xt[cols[c0 + jj], u] * dneg[u]
            res[0, u, jj] = v
            mass += abs(v)
        theta[jj] = rmax * (mass if mass > 0.0 else 1.0)
    nq = 0
    for level in range(levels):
        nxt = level + 1
        for u in _level_nodes(level, n, touched, ntouch, flag):
            hit = False
            for jj in range(nb):
                ru = res[level, u, jj]
                if abs(ru) > theta[jj]:
                    moved[jj] = ru
                    res[level, u, jj] = 0.0
                    q[u, jj] += wts[level] * ru
                    hit = True
                else:
                    moved[jj] = 0.0
            if not hit:
                continue
            if qflag[u] == 0:
                qflag[u] = 1
                qlist[nq] = u
                nq += 1
            for p in range(indptr[u], indptr[u + 1]):
                v = indices[p]
                if flag[nxt, v] == 0:
                    flag[nxt, v] = 1
                    touched[nxt, ntouch[nxt]] = v
                    ntouch[nxt] += 1
                inv = 1.0 / deg[v]
                for jj in range(nb):
                    res[nxt, v, jj] += moved[jj] * inv
    # Z_j(u) = sum_{t=1}^{L-j} w_{t+j} R^(t)(u) on the nodes touched at levels >= 1 (zero elsewhere)
    nu = 0
    for level in range(1, levels + 1):
        for k in range(ntouch[level]):
            u = touched[level, k]
            if uflag[u] == 0:
                uflag[u] = 1
                ulist[nu] = u
                nu += 1
    for k in range(nu):
        u = ulist[k]
        for j in range(levels):
            for jj in range(nb):
                z = 0.0
                for t in range(1, levels - j + 1):
                    z += wts[t + j] * res[t, u, jj]
                zz[j, u, jj] = z
    # P(s) = q(s) + sum_j sum_u S^(j)(s, u) (w_j R^(0)(u) + Z_j(u)),  S^(0) = identity
    for i in range(t_count):
        s = targets[i]
        for jj in range(nb):
            acc[jj] = q[s, jj] + wts[0] * res[0, s, jj] + zz[0, s, jj]
        for j in range(1, levels + 1):
            wj = wts[j]
            if wj != 0.0:
                for p in range(lptr[j - 1, i], lptr[j - 1, i + 1]):
                    pr = lprobs[j - 1, p]
                    u = lnodes[j - 1, p]
                    for jj in range(nb):
                        acc[jj] += pr * (wj * res[0, u, jj] + zz[j, u, jj])
            elif j < levels:  # Z_L = 0; with w_j = 0 only the pushed residues (Z_j) can reach s
                for p in range(lptr[j - 1, i], lptr[j - 1, i + 1]):
                    pr = lprobs[j - 1, p]
                    u = lnodes[j - 1, p]
                    for jj in range(nb):
                        acc[jj] += pr * zz[j, u, jj]
        for jj in range(nb):
            out[cols[c0 + jj], i] = dpos[s] * acc[jj]
    # reset what this block touched
    for level in range(1, levels + 1):
        for k in range(ntouch[level]):
            u = touched[level, k]
            flag[level, u] = 0
            for jj in range(nb):
                res[level, u, jj] = 0.0
        ntouch[level] = 0
    for k in range(nu):
        u = ulist[k]
        uflag[u] = 0
        for j in range(levels):
            for jj in range(nb):
                zz[j, u, jj] = 0.0
    for k in range(nq):
        u = qlist[k]
        qflag[u] = 0
        for jj in range(nb):
            q[u, jj] = 0.0


def block_width(num_cols: int, n: int, levels: int, threads: int, budget: int = 256 << 20) -> int:
    """Columns per block: enough blocks for the threads, at most 16, within `budget` bytes of residues each."""
    by_threads = -(-num_cols // max(threads, 1))
    by_memory = max(1, budget // max((2 * levels + 3) * n * 8, 1))
    return int(max(1, min(16, by_threads, by_memory)))


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
) -> np.ndarray:
    """Bidirectional estimate of the target rows: returns [F, |S|] (x as [n, F], or [F, n] if transposed).

    indptr/indices are the push CSR (A itself when symmetric, else A^T with `deg` the row degrees of A);
    `rows` = A's CSR for the pull kernel (default: the push CSR when deg is None or it is symmetric).
    mode: "push" scatters pushes from touched-node lists (cheap when few nodes cross the threshold), "pull"
    gathers level by level on the targets' ball (gbp_pull), "auto" picks per column: pull when at least
    `dense_at` of the nodes cross the threshold at level 0. Each column's result depends only on that column.
    """
    import numba

    from mlkit.kernels import gbp_pull

    if mode not in ("auto", "push", "pull"):
        raise ValueError(f"mode must be auto, push or pull, not {mode!r}")
    xt = np.ascontiguousarray(x if transposed else np.asarray(x).T)
    sym_deg = deg is None
    deg = degrees(indptr) if deg is None else np.asarray(deg, dtype=np.float64)
    dneg, dpos = degree_powers(deg, r)
    targets = np.asarray(targets, dtype=np.int64)
    f, n = xt.shape
    out = np.empty((f, targets.shape[0]), dtype=out_dtype)
    lptr, lnodes, lprobs = coef
    w = np.asarray(weights, dtype=np.float64)
    levels = w.shape[0] - 1
    allc = np.arange(f, dtype=np.int64)
    if mode == "auto":
        dense = gbp_pull.level0_density(xt, allc, dneg, float(rmax)) >= dense_at if f else np.zeros(0, bool)
    else:
        dense = np.full(f, mode == "pull")
    pull_cols, push_cols = allc[dense], allc[~dense]
    if push_cols.size:
        wd = int(width) if width else block_width(push_cols.size, n, levels, numba.get_num_threads())
        _bidir_blocks(
            indptr,
            indices,
            deg,
            xt,
            push_cols,
            dneg,
            dpos,
            w,
            float(rmax),
            targets,
            lptr,
            lnodes,
            lprobs,
            wd,
            numba.get_num_threads(),
            out,
        )
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
            float(rmax),
            targets,
            (lptr, lnodes, lprobs),
            out,
            width=width,
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
        theta = rmax * (np.abs(res[0]).sum() or 1.0)
        q = np.zeros(n)
        for level in range(levels):
            push = np.abs(res[level]) > theta
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
