"""Contextual subgraphs (spec §2.1-2.2): entity neighbours N(e), relation paths P(r), normalised adjacency Â.

Numba over CSR arrays. Truncation to L is deterministic: entity neighbours by degree (desc), ties by id;
relation paths in enumeration order over the relation's triples sorted by (h, t) and out-edges sorted by
(t, r), length-1 paths of a triple first. PAD = n_ent (entities) or n_rel (relations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np


@dataclass
class Contexts:
    ent_ctx: np.ndarray  # [n_ent, L] int64, PAD = n_ent
    ent_adj: np.ndarray  # [n_ent, L+1, L+1] float32 (Â)
    rel_ctx: np.ndarray  # [n_rel, L, 2] int64, PAD = n_rel
    rel_adj: np.ndarray  # [n_rel, L+1, L+1] float32
    nbr_ptr: np.ndarray  # full neighbour sets (CSR, sorted ids)
    nbr_idx: np.ndarray


def neighbour_csr(train: np.ndarray, n_ent: int) -> tuple[np.ndarray, np.ndarray]:
    """Undirected, deduplicated neighbour sets from (h, r, t) triples; self loops dropped; rows sorted."""
    h, t = train[:, 0], train[:, 2]
    a = np.concatenate([h, t])
    b = np.concatenate([t, h])
    keep = a != b
    key = np.unique(a[keep].astype(np.int64) * n_ent + b[keep])
    src, dst = key // n_ent, key % n_ent
    ptr = np.zeros(n_ent + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n_ent), out=ptr[1:])
    return ptr, dst.astype(np.int64)


@nb.njit(cache=True)
def _contains(idx, a, b, x):
    lo, hi = a, b
    while lo < hi:
        mid = (lo + hi) // 2
        if idx[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < b and idx[lo] == x


@nb.njit(cache=True)
def _entity_ctx(ptr, idx, L, pad):
    n = len(ptr) - 1
    deg = ptr[1:] - ptr[:-1]
    out = np.full((n, L), pad, np.int64)
    for e in range(n):
        row = idx[ptr[e] : ptr[e + 1]]
        key = -deg[row] * (n + 1) + row
        order = np.argsort(key)
        for j in range(min(L, len(row))):
            out[e, j] = row[order[j]]
    return out


@nb.njit(cache=True)
def _normalise(A):
    m = A.shape[0]
    d = np.zeros(m, np.float32)
    for i in range(m):
        d[i] = A[i].sum()
    for i in range(m):
        for j in range(m):
            if A[i, j] != 0:
                A[i, j] = A[i, j] / np.sqrt(d[i] * d[j])


@nb.njit(cache=True)
def _entity_adj(ctx, ptr, idx, pad, truncated, mask_pads):
    n, L = ctx.shape
    out = np.zeros((n, L + 1, L + 1), np.float32)
    for e in range(n):
        A = out[e]
        for i in range(L + 1):
            A[i, i] = 1.0
        for i in range(1, L + 1):
            if mask_pads and ctx[e, i - 1] == pad:
                continue
            A[0, i] = 1.0
            A[i, 0] = 1.0
        for i in range(1, L + 1):
            a = ctx[e, i - 1]
            if a == pad:
                continue
            for j in range(1, L + 1):
                b = ctx[e, j - 1]
                if j == i or b == pad:
                    continue
                if truncated:
                    hit = False
                    for k in range(L):
                        if ctx[a, k] == b:
                            hit = True
                            break
                else:
                    hit = _contains(idx, ptr[a], ptr[a + 1], b)
                if hit:
                    A[i, j] = 1.0
        _normalise(A)
    return out


@nb.njit(cache=True)
def _lower(arr, a, b, x):
    while a < b:
        mid = (a + b) // 2
        if arr[mid] < x:
            a = mid + 1
        else:
            b = mid
    return a


@nb.njit(cache=True)
def _add(out, r, k, p1, p2):
    for z in range(k):
        if out[r, z, 0] == p1 and out[r, z, 1] == p2:
            return k
    out[r, k, 0] = p1
    out[r, k, 1] = p2
    return k + 1


@nb.njit(cache=True)
def _relation_ctx(h_s, t_s, rel_ptr, out_ptr, out_tail, out_rel, n_rel, L, cap):
    """Paths h->t of each relation's triples: (r', PAD) for (h, r', t), (r1, r2) for (h, r1, m), (m, r2, t).

    Out-edges are sorted by (head, tail, relation), so the edges m->t are found by binary search: a triple costs
    out_deg(h) * log(out_deg(m)), with at most `cap` first hops per triple."""
    pad = n_rel
    out = np.full((n_rel, L, 2), pad, np.int64)
    for r in range(n_rel):
        k = 0
        for q in range(rel_ptr[r], rel_ptr[r + 1]):
            if k >= L:
                break
            h, t = h_s[q], t_s[q]
            i = _lower(out_tail, out_ptr[h], out_ptr[h + 1], t)
            while i < out_ptr[h + 1] and out_tail[i] == t and k < L:
                if out_rel[i] != r:
                    k = _add(out, r, k, out_rel[i], pad)
                i += 1
            hops = 0
            for a in range(out_ptr[h], out_ptr[h + 1]):
                if k >= L or hops >= cap:
                    break
                hops += 1
                m = out_tail[a]
                j = _lower(out_tail, out_ptr[m], out_ptr[m + 1], t)
                while j < out_ptr[m + 1] and out_tail[j] == t and k < L:
                    k = _add(out, r, k, out_rel[a], out_rel[j])
                    j += 1
    return out


@nb.njit(cache=True)
def _relation_adj(ctx, pad, mask_pads):
    n, L, _ = ctx.shape
    out = np.zeros((n, L + 1, L + 1), np.float32)
    for r in range(n):
        A = out[r]
        for i in range(L + 1):
            A[i, i] = 1.0
        for i in range(1, L + 1):
            if mask_pads and ctx[r, i - 1, 0] == pad:
                continue
            A[0, i] = 1.0
            A[i, 0] = 1.0
        for i in range(1, L + 1):
            p1, p2 = ctx[r, i - 1, 0], ctx[r, i - 1, 1]
            if p1 == pad or p2 != pad:
                continue
            for j in range(1, L + 1):
                if j == i or ctx[r, j - 1, 0] == pad:
                    continue
                for k in range(L):
                    if ctx[p1, k, 0] == ctx[r, j - 1, 0] and ctx[p1, k, 1] == ctx[r, j - 1, 1]:
                        A[i, j] = 1.0
                        break
        _normalise(A)
    return out


def relation_paths(train: np.ndarray, n_ent: int, n_rel: int, L: int, cap: int = 100_000) -> np.ndarray:
    """P(r) for every relation, [n_rel, L, 2] (second id PAD = n_rel for length-1 paths)."""
    by_rel = train[np.lexsort((train[:, 2], train[:, 0], train[:, 1]))]
    rel_ptr = np.zeros(n_rel + 1, np.int64)
    np.cumsum(np.bincount(by_rel[:, 1], minlength=n_rel), out=rel_ptr[1:])
    by_head = train[np.lexsort((train[:, 1], train[:, 2], train[:, 0]))]  # (h, t, r) order
    out_ptr = np.zeros(n_ent + 1, np.int64)
    np.cumsum(np.bincount(by_head[:, 0], minlength=n_ent), out=out_ptr[1:])
    return _relation_ctx(by_rel[:, 0].copy(), by_rel[:, 2].copy(), rel_ptr, out_ptr, by_head[:, 2].copy(),
                         by_head[:, 1].copy(), n_rel, L, cap)  # fmt: skip


def build(
    train: np.ndarray, n_ent: int, n_rel: int, L: int = 30, adj: str = "full", mask_pads: bool = False
) -> Contexts:
    """Contexts and Â of every entity and relation of one snapshot's training triples."""
    train = np.ascontiguousarray(train, np.int64).reshape(-1, 3)
    ptr, idx = neighbour_csr(train, n_ent)
    ent_ctx = _entity_ctx(ptr, idx, L, n_ent)
    ent_adj = _entity_adj(ent_ctx, ptr, idx, n_ent, adj == "truncated", mask_pads)
    rel_ctx = relation_paths(train, n_ent, n_rel, L)
    rel_adj = _relation_adj(rel_ctx, n_rel, mask_pads)
    return Contexts(ent_ctx, ent_adj, rel_ctx, rel_adj, ptr, idx)


def normalised_reference(A: np.ndarray) -> np.ndarray:
    """D^-1/2 A D^-1/2 with D the row sums (the plain NumPy form, for tests)."""
    d = A.sum(1)
    return A / np.sqrt(np.outer(d, d))
