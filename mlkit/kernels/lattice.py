"""The lattice LSTM recurrence of Zhang & Yang (2018), spec §2.3-2.5.

Char cell (gates i, o, ĉ; no forget gate): with no word ending at j, c_j = (1-i)⊙c_{j-1} + i⊙ĉ (coupled
gate); otherwise every word cell c^w_{b,j} ending at j gets l_{b,j} = σ(U_x x_j + U_c c^w_{b,j} + u) and
c_j = (e^i ⊙ ĉ + Σ_b e^{l_b} ⊙ c^w_b) / (e^i + Σ_b e^{l_b}) (element-wise softmax over the sigmoid
outputs; c_{j-1} is not used). h_j = o⊙tanh(c_j). Word cell (gates f, i, ĉ; no output gate) for a word
starting at b, computed right after char b: c^w = f⊙c_b + i⊙ĉ. The backward direction is the same
recurrence on the reversed sentence (words computed at their end, merged at their start).

Parameters of one direction (dict of arrays/tensors): Wx [Dc,3H], Wh [H,3H], b [3H] (order i, o, ĉ);
Ux [Dc,H], Uc [H,H], u [H]; Vx [Dw,3H], Vh [H,3H], v [3H] (order f, i, ĉ). Words are given as flat
arrays start/last (index of the final char, last > start) and their input vectors xw [W, Dw].

The references (`lattice_reference` in NumPy, the per-sentence `lattice_sentence_torch` and the autograd
`_lattice_core_autograd`) live in `mlkit.kernels.lattice_ref` (kept apart to keep this file small).

- `lattice_torch`: torch, batched over sentences and over the words at a position; CPU and CUDA.
- `lattice_bi_torch`: both directions stacked in the same loop (half the per-step launches).
Both run the loop in `_LatticeFn`, a `torch.autograd.Function` with a hand-written batched backward (no autograd
graph per step); `lattice_ref._lattice_core_autograd` is the same loop from autograd ops, its tested reference.
"""

from __future__ import annotations

import functools
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


def _lattice_fn_forward(ctx: Any, pg: Any, pl: Any, pw: Any, wh: Any, uc: Any, vh: Any, ix: dict) -> Any:
    """The recurrence without autograd: input projections pg [V·D, 3H], pl [V·D, H], pw [W·D, 3H] -> h [B·m·D, H].

    The projections (valid positions only) are gathered step-major ([m, D, B] rows, longest sentence first, see
    `_core_index`) by x_at and w_at, and the output is gathered back to [B, m, D] rows by the permutation out_at;
    the backward gathers by the inverse maps (x_inv, w_inv, out_inv): no zero-filled scatter. Positions past a
    sentence's end give 0. The loop is dispatch bound: per-step views come from one unbind/split call per buffer
    and a step with every row running slices nothing.
    """
    import torch

    m, n_d, n_b = ix["m"], ix["n_d"], ix["n_b"]
    hid, n = wh.shape[1], n_d * n_b
    xg = pg.index_select(0, ix["x_at"]).view(m, n_d, n_b, 3 * hid)
    xl = pl.index_select(0, ix["x_at"]).view(m, n, hid)
    k_at, n_act, s_len, s_dirs, e_dirs = ix["k_at"], ix["n_act"], ix["s_len"], ix["s_dirs"], ix["e_dirs"]
    e_pos_s, e_row_s, e_rowc_s, sb_s = ix["e_pos_s"], ix["e_row_s"], ix["e_rowc_s"], ix["sb_s"]
    acts, tcs, dcps = (
        [],
        [],
        [],
    )  # per step, running rows only: i, o, ĉ after their nonlinearities; tanh(c_j); ĉ - c_{j-1}
    cs = xg.new_empty(m + 1, n_d, n_b, hid)  # cs[j + 1] = c_j (rows running at j only), cs[0] = c_{-1} = 0
    cs[0] = 0
    out = xg.new_zeros(m, n_d, n_b, hid)  # rows past a sentence's end stay 0
    wgs = pw.index_select(0, ix["w_at"])  # word input projections, start order
    wa = torch.empty_like(wgs)  # word gates f, i, ĉ after their nonlinearities, start order
    cells = xg.new_empty(wgs.shape[0], hid)  # word cells, start order
    lgs = xg.new_empty(len(ix["e_pos"]), hid)  # word gates l (sigmoid), end order
    merges = {}
    h = xg.new_zeros(n_d, n_b, hid)
    # tanh(x) = 2σ(2x) - 1: one sigmoid for all gates (tanh is slow on CPU); the 2x is folded into the inputs
    xg[..., 2 * hid :] *= 2
    wgs[:, 2 * hid :] *= 2
    wh2, vh2 = wh.clone(), vh.clone()
    wh2[..., 2 * hid :] *= 2
    vh2[..., 2 * hid :] *= 2
    ucs, vhs = uc.unbind(0), vh2.unbind(0)
    xgs, xls, css, outs = xg.unbind(0), xl.unbind(0), cs.unbind(0), out.unbind(0)
    csf, outf = cs.view(m + 1, n, hid).unbind(0), out.view(m, n, hid).unbind(0)
    sels = ix["sel"].unbind(0)
    lgs_s, cells_s, wa_s = lgs.split(ix["e_len"]), cells.split(s_len), wa.split(s_len)
    for j in range(m):
        nb = n_act[j]
        if nb == n_b:
            xj, hp, cp, c = xgs[j], h, css[j], css[j + 1]
        else:
            xj, hp, cp, c = xgs[j][:, :nb], h[:, :nb], css[j][:, :nb], css[j + 1][:, :nb]
        g = torch.baddbmm(xj, hp, wh2)
        g.sigmoid_()
        i, o, ch = g.split(hid, 2)
        ch.mul_(2).sub_(1)
        acts.append(g)
        dcp = ch - cp
        dcps.append(dcp)
        torch.addcmul(cp, i, dcp, out=c)  # coupled gate
        if k_at[j]:
            rowc = e_rowc_s[j]
            cw = cells.index_select(0, e_pos_s[j])
            lg = lgs_s[j]
            torch.index_select(xls[j], 0, e_row_s[j], out=lg)
            sizes = e_dirs[j]
            for d, (lg_d, cw_d) in enumerate(zip(lg.split(sizes), cw.split(sizes))):
                if sizes[d]:
                    lg_d.addmm_(cw_d, ucs[d])
            lg.sigmoid_()
            el = lg.exp()  # exp of values in (0, 1): the element-wise softmax needs no max shift
            # exp of the strided gate view is ~5x slower on 2 threads than a contiguous copy's exp
            ei = i.clone(memory_format=torch.contiguous_format).exp_()
            z = ei.view(-1, hid).index_add(0, rowc, el)
            merged = (ei * ch).view(-1, hid).index_add_(0, rowc, el * cw).div_(z)
            torch.where(sels[j] if nb == n_b else sels[j][:, :nb], merged.view(n_d, nb, hid), c, out=c)
            merges[j] = (cw, el, ei, z, merged)
        tc = torch.mul(c, 2).sigmoid_().mul_(2).sub_(1)
        tcs.append(tc)
        h = outs[j]
        if nb == n_b:
            torch.mul(o, tc, out=h)
        else:
            torch.mul(o, tc, out=h[:, :nb])
        if s_len[j]:
            rows = sb_s[j]
            hw = outf[j].index_select(0, rows)
            a = s_dirs[j][0][1]
            for d, lo, hi in s_dirs[j]:
                torch.addmm(wgs[lo:hi], hw[lo - a : hi - a], vhs[d], out=wa[lo:hi])
            ga = wa_s[j]
            ga.sigmoid_()
            f, iw, tw = ga.split(hid, 1)
            tw.mul_(2).sub_(1)
            cell = cells_s[j]
            torch.mul(f, csf[j + 1].index_select(0, rows), out=cell)
            cell.addcmul_(iw, tw)
    ctx.state = (acts, dcps, cs, tcs, wa, lgs, merges, ix)
    ctx.save_for_backward(wh, uc, vh, out)
    return out.view(m * n, hid).index_select(0, ix["out_at"])


def _lattice_fn_backward(ctx: Any, d_out: Any) -> tuple:
    """Reverse-time loop: grads of pg, pl, pw, Wh, Uc, Vh (the plan gets none)."""
    import torch

    acts, dcps, cs, tcs, wa, lgs, merges, ix = ctx.state
    wh, uc, vh, out = ctx.saved_tensors
    m, n_d, n_b, hid = out.shape
    h3, n = 3 * hid, n_d * n_b
    k_at, n_act, s_len, s_dirs, e_dirs = ix["k_at"], ix["n_act"], ix["s_len"], ix["s_dirs"], ix["e_dirs"]
    e_pos_s, e_row_s, e_rowc_s, sb_s = ix["e_pos_s"], ix["e_row_s"], ix["e_rowc_s"], ix["sb_s"]
    d_outs = d_out.index_select(0, ix["out_inv"]).view(m, n_d, n_b, hid).unbind(0)
    dxg = out.new_empty(m, n_d, n_b, h3)  # rows running at j are written at step j; the others are never read
    dxl = out.new_zeros(m, n, hid)
    dwa = torch.empty_like(wa)  # grads of the word pre-activations, start order
    dcells = out.new_empty(wa.shape[0], hid)  # written at the word's end before it is read at its start
    dhw = out.new_empty(wa.shape[0], hid)
    dcw = out.new_empty(lgs.shape)
    duc = torch.zeros_like(uc)
    dwh = torch.zeros_like(wh)
    one = out.new_ones(())
    wh_t, uc_t, vh_t = wh.transpose(1, 2), uc.transpose(1, 2).unbind(0), vh.transpose(1, 2).unbind(0)
    dh_all = out.new_zeros(n_d, n_b, hid)  # carried grads of h_j, c_j; rows not yet running stay 0
    dc_all = out.new_zeros(n_d, n_b, hid)
    dh_flat, dc_flat = dh_all.view(n, hid), dc_all.view(n, hid)
    dxgs, dxls, outs = dxg.unbind(0), dxl.unbind(0), out.unbind(0)
    csf, sels, dus = cs.view(m + 1, n, hid).unbind(0), ix["self"].unbind(0), duc.unbind(0)
    e_len = ix["e_len"]
    lgs_s, dcw_s = lgs.split(e_len), dcw.split(e_len)
    wa_s, dwa_s, dcells_s, dhw_s = wa.split(s_len), dwa.split(s_len), dcells.split(s_len), dhw.split(s_len)
    for j in range(m - 1, -1, -1):
        nb = n_act[j]
        full = nb == n_b
        dh, dcj = (dh_all, dc_all) if full else (dh_all[:, :nb], dc_all[:, :nb])
        dh += d_outs[j] if full else d_outs[j][:, :nb]
        if s_len[j]:  # word cells starting at j: their grads are complete (their ends came later)
            rows = sb_s[j]
            ga, dga, dcell = wa_s[j], dwa_s[j], dcells_s[j]
            f, iw, tw = ga.split(hid, 1)
            dgf, dgi, dgc = dga.split(hid, 1)
            torch.mul(dcell, csf[j + 1].index_select(0, rows), out=dgf)
            torch.mul(dcell, tw, out=dgi)
            sg = ga[:, : 2 * hid]
            dga[:, : 2 * hid] *= torch.addcmul(sg, sg, sg, value=-1)  # σ' = σ - σ²
            torch.mul(dcell * iw, torch.addcmul(one, tw, tw, value=-1), out=dgc)
            dc_flat.index_add_(0, rows, dcell * f)
            for d, lo, hi in s_dirs[j]:
                torch.mm(dwa[lo:hi], vh_t[d], out=dhw[lo:hi])
            dh_flat.index_add_(0, rows, dhw_s[j])
        g, tc, dcp = acts[j], tcs[j], dcps[j]
        dg = dxgs[j] if full else dxgs[j][:, :nb]
        i, o, ch = g.split(hid, 2)
        dgi, dgo, dgc = dg.split(hid, 2)
        sio = g[..., : 2 * hid]
        sd_i, sd_o = torch.addcmul(sio, sio, sio, value=-1).split(hid, 2)  # σ' of i and o
        torch.mul(dh * tc, sd_o, out=dgo)
        dc = torch.addcmul(dcj, dh * o, torch.addcmul(one, tc, tc, value=-1))
        if k_at[j]:
            rowc = e_rowc_s[j]
            cw, el, ei, z, merged = merges[j]
            lg = lgs_s[j]
            self_ = sels[j] if full else sels[j][:, :nb]
            r = dc * self_ / z.view(n_d, nb, hid)
            dcc = torch.addcmul(dc, dc, self_, value=-1)
            mv = merged.view(n_d, nb, hid)
            er0 = ei * r  # grad of the merge's slot 0 (ĉ with weight e^i / Z)
            di = torch.addcmul(dcc * dcp, er0, ch - mv)
            dch = torch.addcmul(er0, dcc, i)
            er = el * r.view(-1, hid).index_select(0, rowc)
            dz = er * (cw - merged.index_select(0, rowc)) * torch.addcmul(lg, lg, lg, value=-1)
            sizes = e_dirs[j]
            for d, (er_d, dz_d, dv_d, cw_d) in enumerate(
                zip(er.split(sizes), dz.split(sizes), dcw_s[j].split(sizes), cw.split(sizes))
            ):
                if sizes[d]:
                    torch.addmm(er_d, dz_d, uc_t[d], out=dv_d)
                    dus[d].addmm_(cw_d.t(), dz_d)
            dcells.index_copy_(0, e_pos_s[j], dcw_s[j])  # each word ends once
            dxls[j].index_add_(0, e_row_s[j], dz)
            torch.addcmul(dcc, dcc, i, value=-1, out=dcj)  # (1 - i) ⊙ dc on the coupled rows
        else:
            di = dc * dcp
            dch = dc * i
            torch.addcmul(dc, dc, i, value=-1, out=dcj)
        torch.mul(di, sd_i, out=dgi)
        torch.mul(dch, torch.addcmul(one, ch, ch, value=-1), out=dgc)
        if full:
            torch.bmm(dg, wh_t, out=dh_all)
        else:
            dh_all[:, :nb] = torch.bmm(dg, wh_t)
        if j:
            dwh.baddbmm_((outs[j - 1] if full else outs[j - 1][:, :nb]).transpose(1, 2), dg)
    dvh = torch.zeros_like(vh)
    hw = out.view(m * n, hid).index_select(0, ix["h_at"])
    dwd = dwa.index_select(0, ix["by_dir"])
    d_ptr = ix["d_ptr"]
    for d in range(n_d):
        torch.mm(hw[d_ptr[d] : d_ptr[d + 1]].t(), dwd[d_ptr[d] : d_ptr[d + 1]], out=dvh[d])
    x_inv = ix["x_inv"]  # the valid steps only (the projections cover the valid positions)
    dpg = dxg.view(m * n, h3).index_select(0, x_inv)
    dpl = dxl.view(m * n, hid).index_select(0, x_inv)
    return dpg, dpl, dwa.index_select(0, ix["w_inv"]), dwh, duc, dvh, None


@functools.cache
def _lattice_fn() -> Any:
    """`torch.autograd.Function` of the stacked recurrence (built on first use: torch is imported lazily)."""
    import torch
    from torch.autograd.function import once_differentiable

    from mlkit.kernels import lattice_cpu

    class _LatticeFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, pg, pl, pw, wh, uc, vh, ix):
            with torch.no_grad():
                if lattice_cpu.enabled(pg):
                    return lattice_cpu.fn_forward(ctx, pg, pl, pw, wh, uc, vh, ix)
                return _lattice_fn_forward(ctx, pg, pl, pw, wh, uc, vh, ix)

        @staticmethod
        @once_differentiable
        def backward(ctx, d_out):
            if ctx.state[0] == "cpu":
                return lattice_cpu.fn_backward(ctx, d_out)
            return _lattice_fn_backward(ctx, d_out)

    return _LatticeFn


def _core_ix(plan: dict, n_d: int, flips: tuple[bool, ...], shared: bool, x: Any) -> dict:
    """`_core_index` of a plan, cached in the plan (one build per batch and layout)."""
    key = ("_ix", n_d, flips, shared, x.dtype, str(x.device))
    if key not in plan:
        plan[key] = _core_index(plan, n_d, flips, shared, x.dtype, x.device)
    return plan[key]


def _lattice_apply(x: Any, xw: Any, plan: dict, p: dict[str, Any], flips: tuple[bool, ...]) -> Any:
    """Hidden states [B, m, D, H] of D stacked directions; x [B, m, Dc] (shared) or [D, B, m, Dc].

    The input projections are one product each over the unreversed inputs; the Function gathers them
    step-major, longest sentence first and reversed where flips[d] (see `_core_index`), and returns its output
    already in [B, m, D] order; the index tensors are built once per plan (batch) and cached in it.
    """
    import torch

    n_d = p["Wx"].shape[0]
    hid = p["Wh"].shape[1]
    shared = x.dim() == 3
    n_b, m, n_x = x.shape[-3:]
    ix = _core_ix(plan, n_d, flips, shared, x)
    if shared:  # [V, Dc] @ [Dc, D·kH] products over the V valid positions: rows (v, d)
        flat = x.reshape(n_b * m, n_x).index_select(0, ix["v_rows"])
        pg = torch.addmm(p["b"].reshape(-1), flat, p["Wx"].transpose(0, 1).reshape(n_x, -1))
        pl = torch.addmm(p["u"].reshape(-1), flat, p["Ux"].transpose(0, 1).reshape(n_x, -1))
    else:  # rows (d, v)
        flat = x.reshape(n_d, n_b * m, n_x).index_select(1, ix["v_rows"])
        pg = torch.baddbmm(p["b"][:, None], flat, p["Wx"])
        pl = torch.baddbmm(p["u"][:, None], flat, p["Ux"])
    pw = torch.addmm(p["v"].reshape(-1), xw, p["Vx"].transpose(0, 1).reshape(xw.shape[1], -1))  # rows (k, d)
    hs = _lattice_fn().apply(
        pg.reshape(-1, 3 * hid), pl.reshape(-1, hid), pw.reshape(-1, 3 * hid), p["Wh"], p["Uc"], p["Vh"], ix
    )
    return hs.view(n_b, m, n_d, hid)


def _lattice_core(xs: Any, xw: Any, plan: dict, p: dict[str, Any]) -> Any:
    """Recurrence over D stacked directions (the I/O of `_lattice_core_autograd`) with a hand-written backward.

    The input projections are ordinary autograd ops; the sequential part is one autograd node whose forward
    records no graph and whose backward is a batched reverse-time loop. Sentences are processed longest first
    and a step only touches the sentences still running, so positions past a sentence's end are 0 here (the
    reference runs the recurrence on through the padding; nothing downstream reads those positions).
    """
    return _lattice_apply(xs, xw, plan, p, (False,) * xs.shape[0]).permute(2, 0, 1, 3)


KEYS = ("Wx", "Wh", "b", "Ux", "Uc", "u", "Vx", "Vh", "v")


def lattice_torch(x: Any, lengths: Any, xw: Any, plan: dict, p: dict[str, Any], reverse: bool = False) -> Any:
    """Batched hidden states [B, m, H] of one direction.

    x [B, m, Dc] (padding at the end), lengths [B] (tensor on x's device), xw [W, Dw] word inputs, plan from
    `lattice_schedule` (built with the same `reverse`). Sequential over positions, parallel over sentences and
    over the words at a position; the word cells ending at j are gathered from the cells of the recent starts.
    """
    return _lattice_apply(x, xw, plan, {k: p[k].unsqueeze(0) for k in KEYS}, (reverse,))[:, :, 0]


def lattice_bi_torch(
    x: Any, lengths: Any, xw: Any, plan: dict, pf: dict[str, Any], pb: dict[str, Any]
) -> Any:
    """Both directions in one loop on stacked tensors: [B, m, 2H] = [forward ; backward] (plan: lattice_bi_schedule)."""
    import torch

    hs = _lattice_apply(x, xw, plan, {k: torch.stack([pf[k], pb[k]]) for k in KEYS}, (False, True))
    return hs.reshape(x.shape[0], x.shape[1], -1)


def lattice(x: Any, lengths: Any, xw: Any, plan: dict, pf: dict[str, Any], pb: dict[str, Any]) -> Any:
    """Dispatch: the batched bidirectional torch path serves CPU and CUDA tensors alike (training needs autograd)."""
    return lattice_bi_torch(x, lengths, xw, plan, pf, pb)
