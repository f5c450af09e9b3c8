"""Random walks from the target nodes (GBP spec §2.2 step 2): level-j visit distributions S^(j), E[S^(j)] = M^j.

    walks_reference(indptr, indices, targets, levels)        exact M^j rows (dense NumPy, the truth of E[S])
    walks_numba(indptr, indices, targets, n_walks, levels, seed)
    walks(...)                                                  entry point (NumPy/CPU only: walks are a CPU job)

Every target runs `n_walks` walks of `levels` uniform steps along its CSR row (M = D^-1 A). A walk that
reaches a degree-0 node stops and is counted nowhere afterwards (that row of M is zero). The RNG
(xorshift64*) is seeded from (seed, target id), not from the thread, so the result does not depend on the
thread count, the batch size or the target order. Output per level j = 1..levels: CSR over targets
(ptr[j-1] [|S|+1], node ids, probabilities = visits / n_walks), node ids sorted within a target.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _seed(seed, node):  # noqa: ANN001, ANN202
    x = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(node) + np.uint64(0x632BE59BD9B4E019)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    if x == np.uint64(0):
        x = np.uint64(0x2545F4914F6CDD1D)
    return x


@njit(cache=True)
def _next(x):  # noqa: ANN001, ANN202 - xorshift64*: returns (state, output)
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    return x, x * np.uint64(0x2545F4914F6CDD1D)


@njit(parallel=True, cache=True)
def _walk_batch(indptr, indices, targets, n_walks, levels, seed, ends, counts):  # noqa: ANN001, ANN202
    """ends[i, j, :] = sorted end nodes of level j+1 (-1 = stopped walk); counts[i, j] = distinct nodes."""
    b = targets.shape[0]
    for i in prange(b):
        s = targets[i]
        state = _seed(seed, s)
        for w in range(n_walks):
            u = s
            for j in range(levels):
                if u >= 0:
                    lo = indptr[u]
                    d = indptr[u + 1] - lo
                    if d == 0:
                        u = -1
                    else:
                        state, z = _next(state)
                        u = indices[lo + np.int64((z >> np.uint64(11)) % np.uint64(d))]
                ends[i, j, w] = u
        for j in range(levels):
            row = ends[i, j]
            row.sort()
            c = 0
            prev = -1
            for w in range(n_walks):
                if row[w] >= 0 and row[w] != prev:
                    c += 1
                    prev = row[w]
            counts[i, j] = c


@njit(parallel=True, cache=True)
def _compress(ends, counts, offs, n_walks, nodes, probs):  # noqa: ANN001, ANN202
    b, levels, _ = ends.shape
    for i in prange(b):
        for j in range(levels):
            pos = offs[j, i] - 1
            prev = -1
            for w in range(n_walks):
                v = ends[i, j, w]
                if v < 0:
                    continue
                if v != prev:
                    pos += 1
                    nodes[j, pos] = v
                    probs[j, pos] = 0.0
                    prev = v
                probs[j, pos] += 1.0
            for k in range(offs[j, i], pos + 1):
                probs[j, k] /= n_walks


def walks_numba(
    indptr: np.ndarray,
    indices: np.ndarray,
    targets: np.ndarray,
    n_walks: int,
    levels: int,
    seed: int = 0,
    batch: int = 2048,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Monte-Carlo S^(1..levels) for every target: a list of (ptr, nodes int64, probs float64) per level."""
    targets = np.asarray(targets, dtype=np.int64)
    t = targets.shape[0]
    per_level: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(levels)]
    idx_t = np.int64 if indices.dtype == np.int64 else np.int32
    for s in range(0, max(t, 1), batch):
        tb = targets[s : s + batch]
        if tb.shape[0] == 0:
            break
        ends = np.empty((tb.shape[0], levels, n_walks), dtype=idx_t)
        counts = np.zeros((tb.shape[0], levels), dtype=np.int64)
        _walk_batch(indptr, indices, tb, int(n_walks), int(levels), int(seed), ends, counts)
        # offsets per level within this batch, laid out as [levels, nnz_max]
        offs = np.zeros((levels, tb.shape[0] + 1), dtype=np.int64)
        np.cumsum(counts.T, axis=1, out=offs[:, 1:])
        width = int(offs[:, -1].max()) if levels else 0
        nodes = np.zeros((levels, width), dtype=np.int64)
        probs = np.zeros((levels, width), dtype=np.float64)
        _compress(ends, counts, offs, int(n_walks), nodes, probs)
        for j in range(levels):
            k = int(offs[j, -1])
            per_level[j].append((offs[j], nodes[j, :k].copy(), probs[j, :k].copy()))
    out = []
    for j in range(levels):
        parts = per_level[j]
        ptr = np.zeros(t + 1, dtype=np.int64)
        lens = np.concatenate([np.diff(p[0]) for p in parts]) if parts else np.zeros(0, np.int64)
        np.cumsum(lens, out=ptr[1:])
        nodes = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        probs = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
        out.append((ptr, nodes, probs))
    return out


def walks(
    indptr: np.ndarray, indices: np.ndarray, targets: np.ndarray, n_walks: int, levels: int, seed: int = 0
):  # noqa: ANN201
    """Entry point (walks run on the CPU; a torch tensor of targets is converted)."""
    return walks_numba(np.asarray(indptr), np.asarray(indices), np.asarray(targets), n_walks, levels, seed)


def walks_reference(
    indptr: np.ndarray, indices: np.ndarray, targets: np.ndarray, levels: int
) -> list[np.ndarray]:
    """The exact expectation: rows `targets` of M^j for j = 1..levels (dense [|S|, n] each)."""
    n = indptr.shape[0] - 1
    a = np.zeros((n, n))
    rows = np.repeat(np.arange(n), np.diff(indptr))
    np.add.at(a, (rows, np.asarray(indices)), 1.0)
    deg = a.sum(1)
    m = a / np.where(deg > 0, deg, 1.0)[:, None]
    out = []
    cur = np.eye(n)[np.asarray(targets)]
    for _ in range(levels):
        cur = cur @ m
        out.append(cur)
    return out


def to_dense(level: tuple[np.ndarray, np.ndarray, np.ndarray], n: int) -> np.ndarray:
    """One level's CSR (ptr, nodes, probs) as a dense [|S|, n] array (tests)."""
    ptr, nodes, probs = level
    t = ptr.shape[0] - 1
    out = np.zeros((t, n))
    rows = np.repeat(np.arange(t), np.diff(ptr))
    np.add.at(out, (rows, nodes), probs)
    return out
