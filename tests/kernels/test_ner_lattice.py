"""Batched lattice recurrence vs the per-sentence references (spec §7C)."""

from __future__ import annotations

import os
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.lattice import (
    KEYS,
    _lattice_core,
    _reverse,
    _reverse_index,
    lattice_bi_schedule,
    lattice_bi_torch,
    lattice_schedule,
    lattice_torch,
)
from mlkit.kernels.lattice_ref import _lattice_core_autograd, lattice_reference, lattice_sentence_torch

DC, DW = 5, 4


def _params(rng, hid, dtype=np.float64):
    shapes = {
        "Wx": (DC, 3 * hid),
        "Wh": (hid, 3 * hid),
        "b": (3 * hid,),
        "Ux": (DC, hid),
        "Uc": (hid, hid),
        "u": (hid,),
        "Vx": (DW, 3 * hid),
        "Vh": (hid, 3 * hid),
        "v": (3 * hid,),
    }
    return {k: (rng.normal(size=s) * 0.7).astype(dtype) for k, s in shapes.items()}


def _batch(rng, lengths, words_per_char, max_word=5):
    xs = [rng.normal(size=(n, DC)) for n in lengths]
    wb, ws, wl = [], [], []
    for b, n in enumerate(lengths):
        for _ in range(rng.poisson(words_per_char * n) if n >= 2 else 0):
            s = int(rng.integers(0, n - 1))
            e = int(rng.integers(s + 1, min(n, s + max_word)))
            wb.append(b), ws.append(s), wl.append(e)
    xw = rng.normal(size=(len(wb), DW))
    return xs, np.array(wb, dtype=np.int64), np.array(ws, dtype=np.int64), np.array(wl, dtype=np.int64), xw


def _run_batched(xs, lengths, wb, ws, wl, xw, p, reverse, dtype=torch.float64):
    m = max(lengths)
    x = torch.zeros(len(xs), m, DC, dtype=dtype)
    for b, xi in enumerate(xs):
        x[b, : len(xi)] = torch.tensor(xi, dtype=dtype)
    plan = lattice_schedule(np.array(lengths), wb, ws, wl, reverse)
    pt = {k: torch.tensor(v, dtype=dtype) for k, v in p.items()}
    return lattice_torch(x, torch.tensor(lengths), torch.tensor(xw, dtype=dtype), plan, pt, reverse)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    density=st.sampled_from([0.0, 0.5, 1.5]),
    reverse=st.booleans(),
    hid=st.integers(1, 6),
)
def test_batched_equals_per_sentence(seed, lengths, density, reverse, hid):
    rng = np.random.default_rng(seed)
    p = _params(rng, hid)
    xs, wb, ws, wl, xw = _batch(rng, lengths, density)
    got = _run_batched(xs, lengths, wb, ws, wl, xw, p, reverse).numpy()
    pt = {k: torch.tensor(v) for k, v in p.items()}
    for b, n in enumerate(lengths):
        sel = wb == b
        want = lattice_reference(xs[b], ws[sel], wl[sel], xw[sel], p, reverse)
        one = lattice_sentence_torch(
            torch.tensor(xs[b]), ws[sel], wl[sel], torch.tensor(xw[sel]), pt, reverse
        )
        assert np.abs(got[b, :n] - want).max() < 1e-5
        assert np.abs(one.numpy() - want).max() < 1e-5


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    density=st.sampled_from([0.0, 0.7, 1.5]),
)
def test_bidirectional_stacked_equals_references(seed, lengths, density):
    rng = np.random.default_rng(seed)
    pf, pb = _params(rng, 3), _params(rng, 3)
    xs, wb, ws, wl, xw = _batch(rng, lengths, density)
    m = max(lengths)
    x = torch.zeros(len(xs), m, DC, dtype=torch.float64)
    for b, xi in enumerate(xs):
        x[b, : len(xi)] = torch.tensor(xi)
    plan = lattice_bi_schedule(np.array(lengths), wb, ws, wl)
    tf = {k: torch.tensor(v) for k, v in pf.items()}
    tb = {k: torch.tensor(v) for k, v in pb.items()}
    got = lattice_bi_torch(x, torch.tensor(lengths), torch.tensor(xw), plan, tf, tb).numpy()
    for b, n in enumerate(lengths):
        sel = wb == b
        want = np.concatenate(
            [
                lattice_reference(xs[b], ws[sel], wl[sel], xw[sel], pf, False),
                lattice_reference(xs[b], ws[sel], wl[sel], xw[sel], pb, True),
            ],
            1,
        )
        assert np.abs(got[b, :n] - want).max() < 1e-5


def test_bidirectional_per_direction_word_inputs():
    """xw [2, W, Dw]: the forward direction reads xw[0], the backward one xw[1] (per-direction word tables)."""
    rng = np.random.default_rng(3)
    lengths = [6, 2, 8]
    pf, pb = _params(rng, 3), _params(rng, 3)
    xs, wb, ws, wl, xw = _batch(rng, lengths, 0.8)
    xw2 = xw + rng.normal(size=xw.shape)
    x = torch.zeros(len(xs), max(lengths), DC, dtype=torch.float64)
    for b, xi in enumerate(xs):
        x[b, : len(xi)] = torch.tensor(xi)
    plan = lattice_bi_schedule(np.array(lengths), wb, ws, wl)
    tf = {k: torch.tensor(v) for k, v in pf.items()}
    tb = {k: torch.tensor(v) for k, v in pb.items()}
    got = lattice_bi_torch(x, torch.tensor(lengths), torch.tensor(np.stack([xw, xw2])), plan, tf, tb).numpy()
    for b, n in enumerate(lengths):
        sel = wb == b
        fwd = lattice_reference(xs[b], ws[sel], wl[sel], xw[sel], pf, False)
        bwd = lattice_reference(xs[b], ws[sel], wl[sel], xw2[sel], pb, True)
        assert np.abs(got[b, :n] - np.concatenate([fwd, bwd], 1)).max() < 1e-8


def test_batched_float32_and_gradients_match_per_sentence():
    rng = np.random.default_rng(7)
    lengths = [7, 3, 9, 1]
    p = _params(rng, 4, np.float32)
    xs, wb, ws, wl, xw = _batch(rng, lengths, 1.0)
    assert len(wb) > 5
    pb = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    ps = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    m = max(lengths)
    x = torch.zeros(len(xs), m, DC)
    for b, xi in enumerate(xs):
        x[b, : len(xi)] = torch.tensor(xi, dtype=torch.float32)
    total_b = 0.0
    for reverse in (False, True):
        plan = lattice_schedule(np.array(lengths), wb, ws, wl, reverse)
        hb = lattice_torch(x, torch.tensor(lengths), torch.tensor(xw, dtype=torch.float32), plan, pb, reverse)
        mask = (torch.arange(m)[None, :] < torch.tensor(lengths)[:, None]).float()
        total_b = total_b + ((hb.sum(2) * mask) ** 2).sum()
        for b, n in enumerate(lengths):
            sel = wb == b
            hs = lattice_sentence_torch(
                x[b, :n], ws[sel], wl[sel], torch.tensor(xw[sel], dtype=torch.float32), ps, reverse
            )
            assert (hs - hb[b, :n]).abs().max().item() < 1e-5
            (hs.sum(1) ** 2).sum().backward()
    total_b.backward()
    for k in p:
        assert torch.allclose(pb[k].grad, ps[k].grad, atol=1e-4, rtol=1e-4), k


def test_no_words_reduces_to_coupled_gate_lstm():
    """Without matched words the cell is an LSTM whose forget gate is 1 - i: nn.LSTM with W_f = -W_i."""
    rng = np.random.default_rng(1)
    hid, n = 3, 8
    p = _params(rng, hid)
    x = rng.normal(size=(n, DC))
    lstm = torch.nn.LSTM(DC, hid, batch_first=True).double()
    wi, wo, wg = np.split(p["Wx"].T, 3)
    ui, uo, ug = np.split(p["Wh"].T, 3)
    bi, bo, bg = np.split(p["b"], 3)
    with torch.no_grad():  # nn.LSTM gate order: i, f, g, o
        lstm.weight_ih_l0.copy_(torch.tensor(np.concatenate([wi, -wi, wg, wo])))
        lstm.weight_hh_l0.copy_(torch.tensor(np.concatenate([ui, -ui, ug, uo])))
        lstm.bias_ih_l0.copy_(torch.tensor(np.concatenate([bi, -bi, bg, bo])))
        lstm.bias_hh_l0.zero_()
        want = lstm(torch.tensor(x)[None])[0][0].numpy()
    empty = np.zeros(0, dtype=np.int64)
    got = _run_batched([x], [n], empty, empty, empty, np.zeros((0, DW)), p, False)[0].numpy()
    assert np.abs(got - want).max() < 1e-10
    assert np.abs(lattice_reference(x, empty, empty, np.zeros((0, DW)), p) - want).max() < 1e-10


def test_words_change_the_cell():
    """A word ending at j replaces c_{j-1} in c_j (guards against a kernel that ignores the lattice)."""
    rng = np.random.default_rng(2)
    p = _params(rng, 3)
    x = rng.normal(size=(4, DC))
    empty = np.zeros(0, dtype=np.int64)
    plain = lattice_reference(x, empty, empty, np.zeros((0, DW)), p)
    with_word = lattice_reference(x, np.array([0]), np.array([2]), rng.normal(size=(1, DW)), p)
    np.testing.assert_allclose(plain[:2], with_word[:2])
    assert np.abs(plain[2] - with_word[2]).max() > 1e-3


def _core_case(seed, lengths, density, n_d, hid, dtype):
    """Stacked, oriented core inputs (xs, xw, plan, params) and the mask of valid positions [D, B, m, 1]."""
    rng = np.random.default_rng(seed)
    ps = [_params(rng, hid) for _ in range(n_d)]
    xs, wb, ws, wl, xw = _batch(rng, lengths, density, max_word=6)
    m = max(lengths)
    x = torch.zeros(len(xs), m, DC, dtype=dtype)
    for b, xi in enumerate(xs):
        x[b, : len(xi)] = torch.tensor(xi, dtype=dtype)
    lens = torch.tensor(lengths)
    if n_d == 2:
        plan = lattice_bi_schedule(np.array(lengths), wb, ws, wl)
        x = torch.stack([x, _reverse(x, _reverse_index(lens, m))])
    else:
        reverse = bool(seed % 2)
        plan = lattice_schedule(np.array(lengths), wb, ws, wl, reverse)
        x = (_reverse(x, _reverse_index(lens, m)) if reverse else x).unsqueeze(0)
    p = {k: torch.tensor(np.stack([q[k] for q in ps]), dtype=dtype) for k in KEYS}
    mask = (torch.arange(m)[None, :] < lens[:, None]).to(dtype)[None, :, :, None].expand(n_d, -1, -1, 1)
    return x, torch.tensor(xw, dtype=dtype), plan, p, mask


def _core_grads(core, x, xw, plan, p, mask, seed):
    """Outputs and the grads of (x, xw, every parameter) for a random weighting of the valid outputs."""
    x = x.clone().requires_grad_()
    xw = xw.clone().requires_grad_()
    p = {k: v.clone().requires_grad_() for k, v in p.items()}
    hs = core(x, xw, plan, p) * mask
    w = torch.randn(hs.shape, dtype=hs.dtype, generator=torch.Generator().manual_seed(seed))
    (hs * w).sum().backward()
    grads = [x.grad, xw.grad] + [p[k].grad for k in KEYS]
    return [hs.detach()] + [torch.zeros(()) if g is None else g for g in grads]  # unused params: None = 0


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    lengths=st.lists(st.integers(1, 10), min_size=1, max_size=4),
    density=st.sampled_from([0.0, 0.5, 1.5, 4.0]),  # 4 words/char: many overlapping words per position
    n_d=st.sampled_from([1, 2]),
    hid=st.integers(1, 5),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    path=st.sampled_from(["numba", "torch", "numba-1-thread"]),
)
def test_core_function_equals_autograd_reference(seed, lengths, density, n_d, hid, dtype, path):
    """The hand-written backward of `_lattice_core` gives the autograd reference's outputs and gradients, on the
    compiled CPU loops (two threads or one) and on the torch loop (CUDA's, run here on CPU)."""
    case = _core_case(seed, lengths, density, n_d, hid, dtype)
    env = {
        "MLKIT_LATTICE": "torch" if path == "torch" else "",
        "MLKIT_LATTICE_THREADS": "1" if path == "numba-1-thread" else "2",
    }
    with mock.patch.dict(os.environ, env):
        got = _core_grads(_lattice_core, *case, seed)
    want = _core_grads(_lattice_core_autograd, *case, seed)
    tol = 1e-8 if dtype == torch.float64 else 1e-5
    for g, w in zip(got, want, strict=True):
        if not (g - w).numel():
            continue
        scale = max(1.0, w.abs().max().item()) if dtype == torch.float32 else 1.0
        assert (g - w).abs().max().item() < tol * scale


@pytest.mark.parametrize("path", ["", "torch"])
def test_core_function_gradcheck(path, monkeypatch):
    monkeypatch.setenv("MLKIT_LATTICE", path)
    x, xw, plan, p, mask = _core_case(5, [4, 2, 3], 1.5, 2, 2, torch.float64)
    assert len(plan["by_start"]) > 3
    names = list(KEYS)

    def f(x, xw, *ps):
        return _lattice_core(x, xw, plan, dict(zip(names, ps, strict=True))) * mask

    inputs = [x.requires_grad_(), xw.requires_grad_()] + [p[k].requires_grad_() for k in names]
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.gpu
def test_lattice_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    rng = np.random.default_rng(3)
    lengths = [12, 5, 9]
    p = _params(rng, 8)
    xs, wb, ws, wl, xw = _batch(rng, lengths, 1.0)
    cpu = _run_batched(xs, lengths, wb, ws, wl, xw, p, True)
    m = max(lengths)
    x = torch.zeros(len(xs), m, DC, dtype=torch.float64)
    for b, xi in enumerate(xs):
        x[b, : len(xi)] = torch.tensor(xi)
    plan = lattice_schedule(np.array(lengths), wb, ws, wl, True)
    pt = {k: torch.tensor(v).cuda() for k, v in p.items()}
    gpu = lattice_torch(x.cuda(), torch.tensor(lengths).cuda(), torch.tensor(xw).cuda(), plan, pt, True).cpu()
    assert (gpu - cpu).abs().max().item() < 1e-5


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    lengths=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    density=st.sampled_from([0.0, 1.0, 3.0]),
)
def test_bidirectional_gradients_equal_per_sentence(seed, lengths, density):
    """The model's path (shared input, reversal folded into the gathers) has the reference's gradients."""
    rng = np.random.default_rng(seed)
    pf, pb = _params(rng, 3), _params(rng, 3)
    xs, wb, ws, wl, xw = _batch(rng, lengths, density)
    m = max(lengths)
    x0 = torch.zeros(len(xs), m, DC, dtype=torch.float64)
    for b, xi in enumerate(xs):
        x0[b, : len(xi)] = torch.tensor(xi)
    xw0 = torch.tensor(xw)
    wts = torch.randn(len(xs), m, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))

    def grads(batched):
        x, xwt = x0.clone().requires_grad_(), xw0.clone().requires_grad_()
        tf = {k: torch.tensor(v, requires_grad=True) for k, v in pf.items()}
        tb = {k: torch.tensor(v, requires_grad=True) for k, v in pb.items()}
        if batched:
            plan = lattice_bi_schedule(np.array(lengths), wb, ws, wl)
            h = lattice_bi_torch(x, torch.tensor(lengths), xwt, plan, tf, tb)
            loss = sum((h[b, :n] * wts[b, :n]).sum() for b, n in enumerate(lengths))
        else:
            loss = 0.0
            for b, n in enumerate(lengths):
                sel = wb == b
                xwb = xwt[torch.from_numpy(np.nonzero(sel)[0])]
                h = torch.cat(
                    [
                        lattice_sentence_torch(x[b, :n], ws[sel], wl[sel], xwb, tf, False),
                        lattice_sentence_torch(x[b, :n], ws[sel], wl[sel], xwb, tb, True),
                    ],
                    1,
                )
                loss = loss + (h * wts[b, :n]).sum()
        loss.backward()
        return [x.grad, xwt.grad] + [q[k].grad for q in (tf, tb) for k in KEYS]

    for g, w in zip(grads(True), grads(False), strict=True):
        if w is None:
            continue
        assert (g - w).abs().max().item() < 1e-9
