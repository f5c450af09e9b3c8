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
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def lattice_reference(
    x: np.ndarray, start: np.ndarray, last: np.ndarray, xw: np.ndarray, p: dict[str, np.ndarray],
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


def lattice_sentence_torch(x: Any, start: Any, last: Any, xw: Any, p: dict[str, Any], reverse: bool = False) -> Any:
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


def lattice_schedule(lengths: np.ndarray, wb: np.ndarray, ws: np.ndarray, wl: np.ndarray, reverse: bool = False) -> dict:
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
    return {"by_start": by_start, "start_ptr": start_ptr, "wb": wb, "end_idx": end_idx, "k_at": k_at, "m": m}


def _reverse_index(lengths: Any, m: int) -> Any:
    import torch

    pos = torch.arange(m, device=lengths.device).unsqueeze(0)
    ln = lengths.unsqueeze(1)
    return torch.where(pos < ln, ln - 1 - pos, pos)


def lattice_torch(x: Any, lengths: Any, xw: Any, plan: dict, p: dict[str, Any], reverse: bool = False) -> Any:
    """Batched hidden states [B, m, H] of one direction.

    x [B, m, Dc] (padding at the end), lengths [B] (tensor on x's device), xw [W, Dw] word inputs, plan from
    `lattice_schedule` (built with the same `reverse`). Sequential over positions, parallel over sentences and
    over the words at a position; word cells live in one flat buffer indexed by word id.
    """
    import torch

    n_b, m, _ = x.shape
    hid = p["Wh"].shape[0]
    dev = x.device
    if reverse:
        rev = _reverse_index(lengths, m)
        x = x.gather(1, rev.unsqueeze(2).expand_as(x))
    xg = x @ p["Wx"] + p["b"]
    xl = x @ p["Ux"] + p["u"]
    n_w = xw.shape[0]
    wg = xw @ p["Vx"] + p["v"] if n_w else None
    by_start = torch.as_tensor(plan["by_start"], device=dev)
    start_ptr = plan["start_ptr"].tolist()
    wb = torch.as_tensor(plan["wb"], device=dev)
    end_idx = torch.as_tensor(plan["end_idx"], device=dev)
    end_mask = end_idx < n_w
    k_at = plan["k_at"].tolist()
    buf = x.new_zeros(n_w + 1, hid)
    h = x.new_zeros(n_b, hid)
    c = x.new_zeros(n_b, hid)
    outs = []
    for j in range(m):
        g = xg[:, j] + h @ p["Wh"]
        i = torch.sigmoid(g[:, :hid])
        o = torch.sigmoid(g[:, hid : 2 * hid])
        ch = torch.tanh(g[:, 2 * hid :])
        coupled = (1 - i) * c + i * ch
        k = k_at[j]
        if k:
            idx = end_idx[j, :, :k]
            msk = end_mask[j, :, :k]
            cw = buf[idx]  # [B, K, H]
            lg = torch.sigmoid(xl[:, j].unsqueeze(1) + cw @ p["Uc"])
            gates = torch.cat([i.unsqueeze(1), lg.masked_fill(~msk.unsqueeze(2), float("-inf"))], 1)
            w = torch.softmax(gates, dim=1)
            merged = w[:, 0] * ch + (w[:, 1:] * cw).sum(1)
            c = torch.where(msk.any(1, keepdim=True), merged, coupled)
        else:
            c = coupled
        h = o * torch.tanh(c)
        outs.append(h)
        a, z = start_ptr[j], start_ptr[j + 1]
        if z > a:
            ids = by_start[a:z]
            sb = wb[ids]
            gw = wg[ids] + h[sb] @ p["Vh"]
            f = torch.sigmoid(gw[:, :hid])
            iw = torch.sigmoid(gw[:, hid : 2 * hid])
            cell = f * c[sb] + iw * torch.tanh(gw[:, 2 * hid :])
            buf = buf.index_copy(0, ids, cell)
    hs = torch.stack(outs, 1) if outs else x.new_zeros(n_b, 0, hid)
    if reverse:
        hs = hs.gather(1, rev.unsqueeze(2).expand_as(hs))
    return hs


def lattice(x: Any, lengths: Any, xw: Any, plan: dict, p: dict[str, Any], reverse: bool = False) -> Any:
    """Dispatch: the batched torch path serves CPU and CUDA tensors alike (training needs autograd)."""
    return lattice_torch(x, lengths, xw, plan, p, reverse)
