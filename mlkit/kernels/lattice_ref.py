"""Reference implementations of the lattice LSTM recurrence (spec §2.3-2.5), the truth for `lattice.py`.

- `lattice_reference`: NumPy, one sentence, dict of word-cell lists (the truth).
- `lattice_sentence_torch`: torch, one sentence at a time, words batched per position (the original's loop;
  autograd); also the per-sentence baseline of `benchmarks/ner_throughput.py`.
- `_lattice_core_autograd`: the batched stacked-direction loop of `lattice._lattice_core` from autograd ops.

Parameters and word arrays as described in `mlkit.kernels.lattice`. The property tests in
tests/kernels/test_ner_lattice.py check the batched kernels against these.
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
    """Hidden states [m, H] for one sentence, one position at a time (the original's loop; autograd).

    As in the original, the cells of all words starting at a position come from one batched word-cell call and
    the cells ending at a position are merged in one char-cell call.
    """
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
        ks = by_start.get(j)  # all words starting at j: one word-cell call (original's word_rnn)
        if ks:
            gw = xw[ks] @ p["Vx"] + h @ p["Vh"] + p["v"]
            f, iw = torch.sigmoid(gw[:, :hid]), torch.sigmoid(gw[:, hid : 2 * hid])
            wc = f * c + iw * torch.tanh(gw[:, 2 * hid :])
            for r, k in enumerate(ks):
                pending.setdefault(last[k], []).append(wc[r : r + 1])
    hs = torch.cat(out, 0) if out else x.new_zeros(0, hid)
    return hs.flip(0) if reverse else hs


def _lattice_core_autograd(xs: Any, xw: Any, plan: dict, p: dict[str, Any]) -> Any:
    """Recurrence over D stacked directions from autograd ops: the reference for `_lattice_core` (same I/O).

    xs [D, B, m, Dc] (already oriented), params stacked [D, ...]. Word ids in `plan` index D·W virtual words (direction d's word k = d·W + k); rows are D·B virtual sentences.
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
