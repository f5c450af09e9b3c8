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
Both run `_LatticeFn`, a `torch.autograd.Function` with a hand-written batched backward (no autograd graph per
step); `lattice_ref._lattice_core_autograd` is the same loop from autograd ops, its tested reference. On CPU the
Function's passes are the compiled loops of `mlkit.kernels.lattice_cpu`; the index plans (`lattice_schedule`,
`lattice_bi_schedule`) are built in `mlkit.kernels.lattice_plan` and re-exported here.
"""

from __future__ import annotations

import functools
from typing import Any

from mlkit.kernels.lattice_plan import (  # noqa: F401 - the plan builders are part of this module's API
    _core_index,
    _reverse,
    _reverse_index,
    lattice_bi_schedule,
    lattice_schedule,
)


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
    if xw.dim() == 3:  # [D, W, Dw]: one word table per direction (the original's per-direction embeddings)
        pw = torch.baddbmm(p["v"][:, None], xw, p["Vx"]).transpose(0, 1)  # rows (k, d)
    else:
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
    """Both directions in one loop on stacked tensors: [B, m, 2H] = [forward ; backward] (plan: lattice_bi_schedule).

    xw: [W, Dw] word inputs shared by both directions, or [2, W, Dw] = [forward ; backward] inputs."""
    import torch

    hs = _lattice_apply(x, xw, plan, {k: torch.stack([pf[k], pb[k]]) for k in KEYS}, (False, True))
    return hs.reshape(x.shape[0], x.shape[1], -1)


def lattice(x: Any, lengths: Any, xw: Any, plan: dict, pf: dict[str, Any], pb: dict[str, Any]) -> Any:
    """Dispatch: the batched bidirectional torch path serves CPU and CUDA tensors alike (training needs autograd)."""
    return lattice_bi_torch(x, lengths, xw, plan, pf, pb)
