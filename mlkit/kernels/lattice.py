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

- `lattice_reference`: NumPy, one sentence, dict of word-cell lists (the truth).
- `lattice_sentence_torch`: torch, one sentence at a time (the original's loop; autograd).
- `lattice_torch`: torch, batched over sentences and over the words at a position; CPU and CUDA.
- `lattice_bi_torch`: both directions stacked in the same loop (half the per-step launches).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def lattice_reference(
    x: np.ndarray,
    start: np.ndarray,
    last: np.ndarray,
    xw: np.ndarray,
    p: dict[str, np.ndarray],
    reverse: bool = False,
) -> np.ndarray:
    """Hidden states [m, H] of one direction for one sentence (x [m, Dc])."""
    m = x.shape[0]
    start = np.asarray(start, dtype=np.int64)
    last = np.asarray(last, dtype=np.int64)
    if reverse:
        x = x[::-1]
        start, last = m - 1 - last, m - 1 - start
    hid = p["Wh"].shape[0]
    h = np.zeros(hid, dtype=x.dtype)
    c = np.zeros(hid, dtype=x.dtype)
    pending: dict[int, list[np.ndarray]] = {j: [] for j in range(m)}
    out = []
    for j in range(m):
        g = x[j] @ p["Wx"] + h @ p["Wh"] + p["b"]
        i, o, ch = _sig(g[:hid]), _sig(g[hid : 2 * hid]), np.tanh(g[2 * hid :])
        cells = pending[j]
        if not cells:
            c = (1 - i) * c + i * ch
        else:
            num = np.exp(i) * ch
            den = np.exp(i)
            for cw in cells:
                el = np.exp(_sig(x[j] @ p["Ux"] + cw @ p["Uc"] + p["u"]))
                num = num + el * cw
                den = den + el
            c = num / den
        h = o * np.tanh(c)
        out.append(h)
        for k in np.nonzero(start == j)[0]:
            gw = xw[k] @ p["Vx"] + h @ p["Vh"] + p["v"]
            f, iw, cwh = _sig(gw[:hid]), _sig(gw[hid : 2 * hid]), np.tanh(gw[2 * hid :])
            pending[int(last[k])].append(f * c + iw * cwh)
    hs = np.stack(out) if out else np.zeros((0, hid), dtype=x.dtype)
    return hs[::-1].copy() if reverse else hs


def lattice_sentence_torch(
    x: Any, start: Any, last: Any, xw: Any, p: dict[str, Any], reverse: bool = False
) -> Any:
    """Hidden states [m, H] for one sentence, one position and one word at a time (original-style loop)."""
    import torch

    m = x.shape[0]
    start = [int(s) for s in start]
    last = [int(e) for e in last]
    if reverse:
        x = x.flip(0)
        start, last = [m - 1 - e for e in last], [m - 1 - s for s in start]
    hid = p["Wh"].shape[0]
    h = x.new_zeros(1, hid)
    c = x.new_zeros(1, hid)
    xg = x @ p["Wx"] + p["b"]
    xl = x @ p["Ux"] + p["u"]
    by_start: dict[int, list[int]] = {}
    for k, s in enumerate(start):
        by_start.setdefault(s, []).append(k)
    pending: dict[int, list[Any]] = {}
    out = []
    for j in range(m):
        g = xg[j : j + 1] + h @ p["Wh"]
        i, o, ch = torch.sigmoid(g[:, :hid]), torch.sigmoid(g[:, hid : 2 * hid]), torch.tanh(g[:, 2 * hid :])
        cells = pending.get(j)
        if not cells:
            c = (1 - i) * c + i * ch
        else:
            cw = torch.cat(cells, 0)
            gates = torch.cat([i, torch.sigmoid(xl[j : j + 1] + cw @ p["Uc"])], 0)
            w = torch.softmax(gates, dim=0)
            c = (w * torch.cat([ch, cw], 0)).sum(0, keepdim=True)
        h = o * torch.tanh(c)
        out.append(h)
        for k in by_start.get(j, ()):
            gw = xw[k : k + 1] @ p["Vx"] + h @ p["Vh"] + p["v"]
            f, iw = torch.sigmoid(gw[:, :hid]), torch.sigmoid(gw[:, hid : 2 * hid])
            pending.setdefault(last[k], []).append(f * c + iw * torch.tanh(gw[:, 2 * hid :]))
    hs = torch.cat(out, 0) if out else x.new_zeros(0, hid)
    return hs.flip(0) if reverse else hs


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


def _lattice_core(xs: Any, xw: Any, plan: dict, p: dict[str, Any]) -> Any:
    """Recurrence over D stacked directions: xs [D, B, m, Dc] (already oriented), params stacked [D, ...].

    Word ids in `plan` index D·W virtual words (direction d's word k = d·W + k); rows are D·B virtual sentences.
    """
    import torch

    n_d, n_b, m, _ = xs.shape
    hid = p["Wh"].shape[1]
    dev = xs.device
    n_w = xw.shape[0]
    steps = xs.permute(2, 0, 1, 3)  # [m, D, B, Dc]: step-major, so each step's slice is contiguous
    xg = (torch.matmul(steps, p["Wx"]) + p["b"][:, None]).contiguous()  # [m, D, B, 3H]
    xl = (torch.matmul(steps, p["Ux"]) + p["u"][:, None]).contiguous()  # [m, D, B, H]
    wg = (torch.matmul(xw.unsqueeze(0), p["Vx"]) + p["v"][:, None]).reshape(n_d * n_w, 3 * hid)
    by_start = torch.as_tensor(plan["by_start"], device=dev)
    start_ptr = plan["start_ptr"].tolist()
    win_lo = plan["win_lo"].tolist()
    wb = torch.as_tensor(plan["wb"], device=dev)
    end_local = torch.as_tensor(plan["end_local"], device=dev)
    end_mask = torch.as_tensor(plan["end_idx"] < n_d * n_w, device=dev)
    k_at = plan["k_at"].tolist()
    zero_row = xs.new_zeros(1, hid)
    blocks: list[Any] = []  # blocks[b] = cells of the words starting at b (word cells never share storage)
    xg_steps = xg.unbind(0)  # per-step views: their gradients are stacked once, not zero-filled per step
    xl_steps = xl.unbind(0)
    h = xs.new_zeros(n_d, n_b, hid)
    c = xs.new_zeros(n_d * n_b, hid)
    outs = []
    for j in range(m):
        g = torch.baddbmm(xg_steps[j], h, p["Wh"]).reshape(n_d * n_b, 3 * hid)
        i = torch.sigmoid(g[:, :hid])
        o = torch.sigmoid(g[:, hid : 2 * hid])
        ch = torch.tanh(g[:, 2 * hid :])
        coupled = c + i * (ch - c)
        k = k_at[j]
        if k:
            msk = end_mask[j, :, :k]
            window = torch.cat(blocks[win_lo[j] : j] + [zero_row])
            cw = window[end_local[j, :, :k]]  # [D·B, K, H]
            lg = torch.matmul(cw.view(n_d, n_b * k, hid), p["Uc"]).view(n_d * n_b, k, hid)
            lg = torch.sigmoid(lg + xl_steps[j].reshape(n_d * n_b, 1, hid))
            gates = torch.cat([i.unsqueeze(1), lg.masked_fill(~msk.unsqueeze(2), float("-inf"))], 1)
            w = torch.softmax(gates, dim=1)
            merged = w[:, 0] * ch + (w[:, 1:] * cw).sum(1)
            c = torch.where(msk[:, :1], merged, coupled)
        else:
            c = coupled
        hf = o * torch.tanh(c)
        outs.append(hf)
        h = hf.view(n_d, n_b, hid)
        a, z = start_ptr[j], start_ptr[j + 1]
        if z > a:
            ids = by_start[a:z]
            sb = wb[ids]
            hv = torch.bmm(h, p["Vh"]).reshape(n_d * n_b, 3 * hid)
            gw = wg[ids] + hv[sb]
            f = torch.sigmoid(gw[:, :hid])
            iw = torch.sigmoid(gw[:, hid : 2 * hid])
            blocks.append(f * c[sb] + iw * torch.tanh(gw[:, 2 * hid :]))
        else:
            blocks.append(xs.new_zeros(0, hid))
    hs = torch.stack(outs, 1) if outs else xs.new_zeros(n_d * n_b, 0, hid)
    return hs.view(n_d, n_b, m, hid)


KEYS = ("Wx", "Wh", "b", "Ux", "Uc", "u", "Vx", "Vh", "v")


def lattice_torch(x: Any, lengths: Any, xw: Any, plan: dict, p: dict[str, Any], reverse: bool = False) -> Any:
    """Batched hidden states [B, m, H] of one direction.

    x [B, m, Dc] (padding at the end), lengths [B] (tensor on x's device), xw [W, Dw] word inputs, plan from
    `lattice_schedule` (built with the same `reverse`). Sequential over positions, parallel over sentences and
    over the words at a position; the word cells ending at j are gathered from the cells of the recent starts.
    """
    m = x.shape[1]
    if reverse:
        rev = _reverse_index(lengths, m)
        x = _reverse(x, rev)
    hs = _lattice_core(x.unsqueeze(0), xw, plan, {k: p[k].unsqueeze(0) for k in KEYS})[0]
    return _reverse(hs, rev) if reverse else hs


def lattice_bi_torch(
    x: Any, lengths: Any, xw: Any, plan: dict, pf: dict[str, Any], pb: dict[str, Any]
) -> Any:
    """Both directions in one loop on stacked tensors: [B, m, 2H] = [forward ; backward] (plan: lattice_bi_schedule)."""
    import torch

    rev = _reverse_index(lengths, x.shape[1])
    xs = torch.stack([x, _reverse(x, rev)])
    hs = _lattice_core(xs, xw, plan, {k: torch.stack([pf[k], pb[k]]) for k in KEYS})
    return torch.cat([hs[0], _reverse(hs[1], rev)], -1)


def lattice(x: Any, lengths: Any, xw: Any, plan: dict, pf: dict[str, Any], pb: dict[str, Any]) -> Any:
    """Dispatch: the batched bidirectional torch path serves CPU and CUDA tensors alike (training needs autograd)."""
    return lattice_bi_torch(x, lengths, xw, plan, pf, pb)
