"""Index plans of the batched lattice (NumPy on CPU, then device tensors): which words start and end at each
position, per sentence and direction, and the gathers that put the rows in step-major, longest-first order.

Used by `mlkit.kernels.lattice` (the torch loop) and `mlkit.kernels.lattice_cpu` (the compiled loops).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def lattice_schedule(
    lengths: np.ndarray, wb: np.ndarray, ws: np.ndarray, wl: np.ndarray, reverse: bool = False
) -> dict:
    """Index plan of a batch (NumPy, on CPU): word order by start, padded per-(position, sentence) word lists.

    lengths [B]; words given by sentence wb, start ws, last wl (all [W]). Returns arrays used by lattice_torch.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    wb = np.asarray(wb, dtype=np.int64)
    ws = np.asarray(ws, dtype=np.int64)
    wl = np.asarray(wl, dtype=np.int64)
    n_b = lengths.shape[0]
    m = int(lengths.max()) if n_b else 0
    if reverse:
        ln = lengths[wb]
        ws, wl = ln - 1 - wl, ln - 1 - ws
    n_w = wb.shape[0]
    by_start = np.argsort(ws, kind="stable")
    start_ptr = np.searchsorted(ws[by_start], np.arange(m + 1))
    # words ending at j, padded to K_j per sentence; index n_w = an all-zero dummy cell
    order = np.lexsort((wb, wl))
    key = wl[order] * (n_b + 1) + wb[order]
    first = np.searchsorted(key, key)
    rank = np.arange(n_w) - first
    kmax = int(rank.max()) + 1 if n_w else 0
    end_idx = np.full((m, n_b, max(kmax, 1)), n_w, dtype=np.int64)
    end_idx[wl[order], wb[order], rank] = order
    k_at = np.zeros(m, dtype=np.int64)
    if n_w:
        np.maximum.at(k_at, wl[order], rank + 1)
    # the same lists as rows of a window: the cells of words starting in [j - span + 1, j), in start order,
    # plus one zero row (index = window size) for padding
    span = int((wl - ws).max()) + 1 if n_w else 1
    win_lo = np.maximum(np.arange(m) - span + 1, 0)
    pos = np.empty(n_w + 1, dtype=np.int64)
    pos[by_start] = np.arange(n_w)
    pos[n_w] = -1
    base = start_ptr[win_lo][:, None, None]
    win_size = (start_ptr[np.arange(m)] - start_ptr[win_lo])[:, None, None]
    end_local = np.where(end_idx < n_w, pos[end_idx] - base, win_size)
    return {
        "by_start": by_start,
        "start_ptr": start_ptr,
        "wb": wb,
        "end_idx": end_idx,
        "end_local": end_local,
        "win_lo": win_lo,
        "k_at": k_at,
        "m": m,
        "lengths": lengths,
    }


def _reverse_index(lengths: Any, m: int) -> Any:
    """Flat row index that reverses each sentence of a [B, m, ...] tensor viewed as [B·m, ...] (padding stays)."""
    import torch

    pos = torch.arange(m, device=lengths.device).unsqueeze(0)
    ln = lengths.unsqueeze(1)
    rows = torch.arange(lengths.shape[0], device=lengths.device).unsqueeze(1) * m
    return (rows + torch.where(pos < ln, ln - 1 - pos, pos)).reshape(-1)


def _reverse(x: Any, rev: Any) -> Any:
    n_b, m = x.shape[:2]
    return x.reshape(n_b * m, -1)[rev].view(x.shape)


def lattice_bi_schedule(lengths: np.ndarray, wb: np.ndarray, ws: np.ndarray, wl: np.ndarray) -> dict:
    """Plan for both directions in one loop: rows B..2B-1 are the reversed sentences with reversed words."""
    lengths = np.asarray(lengths, dtype=np.int64)
    wb = np.asarray(wb, dtype=np.int64)
    ws = np.asarray(ws, dtype=np.int64)
    wl = np.asarray(wl, dtype=np.int64)
    ln = lengths[wb]
    return lattice_schedule(
        np.concatenate([lengths, lengths]),
        np.concatenate([wb, wb + len(lengths)]),
        np.concatenate([ws, ln - 1 - wl]),
        np.concatenate([wl, ln - 1 - ws]),
    )


def _core_index(plan: dict, n_d: int, flips: tuple[bool, ...], shared: bool, dtype: Any, device: Any) -> dict:
    """Device index tensors of a plan for `_LatticeFn` and for the gathers around it.

    Rows are reordered by length (longest first) so that the sentences still running at step j are a prefix
    of each direction's rows; words are kept in start order and listed per step and direction. Direction d reads
    its sentences reversed when flips[d]: the reversal and the reordering are folded into `x_at` (rows of the
    input projections -> step-major [m, D, B] rows) and `out_at` (rows of the Function's output -> [B, m, D]).
    The input projections cover the valid positions only (`v_rows` of [B·m]); their rows are (v, d) when the
    directions share the input (`shared`), else (d, v).
    """
    import torch

    by_start, k_at = plan["by_start"], plan["k_at"]
    n_w, m = len(by_start), len(k_at)
    end_idx = plan["end_idx"]
    n = end_idx.shape[1]
    n_b = n // n_d
    lens = np.asarray(plan["lengths"], dtype=np.int64).reshape(n_d, n_b).max(0)
    order = np.argsort(-lens, kind="stable")  # new row -> old row (within a direction)
    rank = np.empty(n_b, dtype=np.int64)
    rank[order] = np.arange(n_b)
    full = np.arange(n)
    remap = full - full % n_b + rank[full % n_b]  # old row of D·B -> new row
    n_act = (lens[None, :] > np.arange(m)[:, None]).sum(1)  # rows still running at each step
    pos = np.empty(n_w, dtype=np.int64)  # word id -> row of the start-ordered cell store
    pos[by_start] = np.arange(n_w)
    sb = remap[np.asarray(plan["wb"], dtype=np.int64)[by_start]]
    st = np.repeat(np.arange(m), np.diff(plan["start_ptr"]))  # start step of each start-ordered word
    # words starting at j, split by direction (stable order: direction d's words are the ids d·W..)
    s_ptr = np.searchsorted(st * n_d + sb // n_b, np.arange(m * n_d + 1)).tolist()
    # words ending at j: (step, row, rank) in row-major order, so direction blocks are contiguous too
    jj, rr, kk = np.nonzero(end_idx < n_w)
    e_ptr = np.searchsorted(jj * n_d + rr // n_b, np.arange(m * n_d + 1)).tolist()
    e_pos = pos[end_idx[jj, rr, kk]]
    rr = remap[rr]
    by_dir = np.argsort(sb // n_b, kind="stable")  # start-ordered words grouped by direction (for dVh)
    d_ptr = np.searchsorted((sb // n_b)[by_dir], np.arange(n_d + 1)).tolist()
    anyend = np.zeros((m, n_d, n_b, 1), dtype=bool)
    anyend[jj, rr // n_b, rr % n_b] = True

    def dev(a: np.ndarray) -> Any:
        return torch.as_tensor(a, device=device)

    # the input projections cover the valid positions only: v_rows = rows (b, t), t < length, of [B·m]
    valid = np.arange(m)[None, :] < lens[:, None]
    v_rows = np.flatnonzero(valid)
    n_v = len(v_rows)
    v_of = np.cumsum(valid.reshape(-1)) - 1  # [B·m] row -> valid row (where valid)
    # input gather: step j, direction d, (sorted) row r reads position t of sentence order[r]; rows past the
    # sentence's end read row 0 (never used)
    jm, dm, rm = np.meshgrid(np.arange(m), np.arange(n_d), np.arange(n_b), indexing="ij")
    bm = order[rm]
    ln = lens[bm]
    run = jm < ln
    fl = np.asarray(flips, dtype=bool)[dm]
    vm = v_of[bm * m + np.where(fl & run, ln - 1 - jm, jm)]
    x_at = np.where(run, vm * n_d + dm if shared else dm * n_v + vm, 0).reshape(-1)
    x_inv = np.empty(n_v * n_d, dtype=np.int64)  # projection row -> its step-major row
    x_inv[x_at[run.reshape(-1)]] = np.flatnonzero(run)
    # output gather: sentence b, position t, direction d reads step j of row rank[b] (0 past the end)
    bo, to, do = np.meshgrid(np.arange(n_b), np.arange(m), np.arange(n_d), indexing="ij")
    lo_ = lens[bo]
    jo = np.where(np.asarray(flips, dtype=bool)[do] & (to < lo_), lo_ - 1 - to, to)
    out_at = (jo * n_d + do) * n_b + rank[bo]
    n_wd = n_w // n_d  # start-ordered word ids d·W + k -> rows k·D + d of the shared word projections
    w_at = by_start % n_wd * n_d + by_start // n_wd if n_wd else by_start
    out_at = out_at.reshape(-1)  # a permutation (padding maps to padding)
    e_rowc = rr // n_b * n_act[jj] + rr % n_b  # row among the D·n_act[j] running rows
    # per-step views and Python ranges, built once per plan (one split call each instead of slicing in the loops)
    e_len = np.diff(np.asarray(e_ptr)[::n_d]).tolist()  # words ending at step j (both directions)
    s_len = np.diff(np.asarray(s_ptr)[::n_d]).tolist()  # words starting at step j
    e_dirs = np.diff(e_ptr).reshape(m, n_d).tolist()  # words ending at step j, per direction
    s_lo = np.asarray(s_ptr[:-1]).reshape(m, n_d).tolist()
    s_hi = np.asarray(s_ptr[1:]).reshape(m, n_d).tolist()
    s_dirs = [
        [(d, lo, hi) for d, (lo, hi) in enumerate(zip(los, his)) if hi > lo] for los, his in zip(s_lo, s_hi)
    ]

    def inv(a: np.ndarray) -> np.ndarray:
        r = np.empty_like(a)
        r[a] = np.arange(len(a))
        return r

    return {
        "m": m,
        "n_d": n_d,
        "n_b": n_b,
        "v_rows": dev(v_rows),
        "x_at": dev(x_at),
        "x_inv": dev(x_inv),
        "out_at": dev(out_at),
        "out_inv": dev(inv(out_at)),
        "w_at": dev(w_at),
        "w_inv": dev(inv(w_at)),
        "n_act": n_act.tolist(),
        "sb": dev(sb),
        "s_ptr": s_ptr,
        "e_pos": dev(e_pos),
        "e_row": dev(rr),  # row among all D·B rows
        "e_rowc": dev(e_rowc),
        "e_len": e_len,
        "s_len": s_len,
        "e_dirs": e_dirs,
        "s_dirs": s_dirs,
        "e_pos_s": dev(e_pos).split(e_len),
        "e_row_s": dev(rr).split(e_len),
        "e_rowc_s": dev(e_rowc).split(e_len),
        "sb_s": dev(sb).split(s_len),
        "e_ptr": e_ptr,
        "sel": dev(anyend),
        "self": dev(anyend).to(dtype),
        "by_dir": dev(by_dir),
        "h_at": dev(st[by_dir] * n + sb[by_dir]),  # row of h (flat [m·D·B]) that feeds each word's cell
        "d_ptr": d_ptr,
        "k_at": k_at.tolist(),
    }
