"""CRF log-partition and Viterbi (torch batched, Numba) against brute-force enumeration (spec §7C)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels import crf as crf_mod
from mlkit.kernels.crf import (
    _path_score,
    crf_gold_score_torch,
    crf_log_partition_reference,
    crf_log_partition_torch,
    crf_nll_autograd,
    crf_nll_torch,
    viterbi,
    viterbi_numba,
    viterbi_reference,
    viterbi_torch,
)


def _case(seed, b, m, t):
    rng = np.random.default_rng(seed)
    emis = rng.normal(size=(b, m, t)) * 2
    trans = rng.normal(size=(t + 2, t + 2))
    lengths = rng.integers(1, m + 1, size=b)
    return emis, trans, lengths


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), b=st.integers(1, 3), m=st.integers(1, 5), t=st.integers(1, 4))
def test_crf_and_viterbi_equal_enumeration(seed, b, m, t):
    emis, trans, lengths = _case(seed, b, m, t)
    e_t, tr_t, l_t = torch.tensor(emis), torch.tensor(trans), torch.tensor(lengths)
    logz = crf_log_partition_torch(e_t, l_t, tr_t).numpy()
    paths_t = viterbi_torch(e_t, l_t, tr_t)
    paths_n = viterbi_numba(emis, lengths.astype(np.int64), trans)
    for i in range(b):
        n = int(lengths[i])
        assert abs(logz[i] - crf_log_partition_reference(emis[i, :n], trans)) < 1e-9
        best, best_score = viterbi_reference(emis[i, :n], trans)
        gold = crf_gold_score_torch(
            e_t[i : i + 1], torch.tensor([paths_t[i] + [0] * (m - n)]), l_t[i : i + 1], tr_t
        )
        assert abs(float(gold) - best_score) < 1e-9  # torch path is optimal (ties may pick another argmax)
        assert paths_n[i, :n].tolist() == paths_t[i]
        assert (paths_n[i, n:] == -1).all()


def test_viterbi_dispatch_float32_matches_reference():
    emis, trans, lengths = _case(3, 2, 5, 4)
    got = viterbi(
        torch.tensor(emis, dtype=torch.float32),
        torch.tensor(lengths),
        torch.tensor(trans, dtype=torch.float32),
    )
    for i in range(2):
        assert got[i] == viterbi_reference(emis[i, : lengths[i]], trans)[0]


@pytest.mark.gpu
def test_crf_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    emis, trans, lengths = _case(5, 4, 6, 5)
    e, tr, ln = torch.tensor(emis), torch.tensor(trans), torch.tensor(lengths)
    z_cpu = crf_log_partition_torch(e, ln, tr)
    z_gpu = crf_log_partition_torch(e.cuda(), ln.cuda(), tr.cuda()).cpu()
    assert torch.allclose(z_cpu, z_gpu, atol=1e-9)
    assert viterbi(e.cuda(), ln.cuda(), tr.cuda()) == viterbi(e, ln, tr)
    tags = torch.tensor(np.random.default_rng(0).integers(0, 5, size=(4, 6)))
    cpu = _nll_grads(crf_nll_torch, e, tags, ln, tr, 0)
    gpu = _nll_grads(crf_nll_torch, e.cuda(), tags.cuda(), ln.cuda(), tr.cuda(), 0)
    for c, g in zip(cpu, gpu, strict=True):
        assert torch.allclose(c, g.cpu(), atol=1e-9)


def _nll_grads(fn, emis, tags, lengths, trans, seed):
    e = emis.clone().requires_grad_()
    tr = trans.clone().requires_grad_()
    nll = fn(e, tags, lengths, tr)
    w = (
        torch.rand(nll.shape, dtype=nll.dtype, generator=torch.Generator().manual_seed(seed)).to(nll.device)
        + 0.5
    )
    (nll * w).sum().backward()
    return nll.detach(), e.grad, tr.grad


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 4),
    m=st.integers(1, 7),
    t=st.integers(1, 6),
    spread=st.sampled_from([1.0, 30.0, 400.0]),  # 30, 400: too spread for the torch matmul step (logsumexp)
    numba_cpu=st.booleans(),  # the Numba forward-backward (CPU default) or the torch loop (CUDA's) on CPU
)
def test_crf_nll_function_equals_autograd_reference(seed, b, m, t, spread, numba_cpu):
    """The hand-written backward (marginals - gold) gives the autograd reference's loss and gradients, on both
    CPU paths."""
    emis, trans, lengths = _case(seed, b, m, t)
    trans = trans * spread
    lengths[seed % b] = 1  # always one length-1 sentence
    rng = np.random.default_rng(seed + 1)
    emis[np.arange(m)[None, :] >= lengths[:, None]] = (
        rng.normal(size=emis.shape)[np.arange(m)[None, :] >= lengths[:, None]] * 50
    )  # large junk in the padding must not leak
    tags = torch.tensor(rng.integers(0, t, size=(b, m)))
    args = (torch.tensor(emis), tags, torch.tensor(lengths), torch.tensor(trans))
    real = crf_mod._cpu_ok
    with mock.patch.object(crf_mod, "_cpu_ok", lambda tr: numba_cpu and real(tr)):
        got = _nll_grads(crf_nll_torch, *args, seed)
    want = _nll_grads(crf_nll_autograd, *args, seed)
    for g, w in zip(got, want, strict=True):
        assert (g - w).abs().max().item() < 1e-9 * max(1.0, w.abs().max().item())


def test_crf_numba_falls_back_beyond_its_spread():
    emis, trans, lengths = _case(3, 2, 4, 3)
    trans[0, 1] = (
        1000.0  # spread > crf_cpu.MAX_SPREAD: the scaled recursion would underflow; torch loop instead
    )
    e, tr = torch.tensor(emis, requires_grad=True), torch.tensor(trans, requires_grad=True)
    tags = torch.zeros(2, 4, dtype=torch.int64)
    assert not crf_mod._cpu_ok(tr)
    got = crf_nll_torch(e, tags, torch.tensor(lengths), tr)
    want = crf_nll_autograd(e, tags, torch.tensor(lengths), tr)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-9)


def test_crf_numba_no_grad_and_float32():
    emis, trans, lengths = _case(5, 3, 6, 4)
    tags = torch.tensor(np.random.default_rng(0).integers(0, 4, size=(3, 6)))
    e32, tr32 = torch.tensor(emis, dtype=torch.float32), torch.tensor(trans, dtype=torch.float32)
    with torch.no_grad():
        nll = crf_nll_torch(e32, tags, torch.tensor(lengths), tr32)
    assert nll.dtype == torch.float32
    want = crf_nll_autograd(torch.tensor(emis), tags, torch.tensor(lengths), torch.tensor(trans))
    assert torch.allclose(nll.double(), want, rtol=1e-5, atol=1e-4)


def test_crf_nll_matches_enumeration_and_gradcheck():
    emis, trans, lengths = _case(11, 3, 4, 3)
    tags = torch.tensor(np.random.default_rng(0).integers(0, 3, size=(3, 4)))
    e, tr, ln = torch.tensor(emis), torch.tensor(trans), torch.tensor(lengths)
    nll = crf_nll_torch(e, tags, ln, tr)
    for i in range(3):
        n = int(lengths[i])
        gold = tuple(tags[i, :n].tolist())
        want = crf_log_partition_reference(emis[i, :n], trans) - _path_score(emis[i, :n], trans, gold)
        assert abs(float(nll[i]) - want) < 1e-9
    assert torch.autograd.gradcheck(
        lambda a, b: crf_nll_torch(a, tags, ln, b), [e.requires_grad_(), tr.requires_grad_()]
    )


def test_crf_numba_wide_start_and_stop_scores():
    """Length-1 and longer sentences whose START/STOP scores spread by ~1000 (found by hypothesis: the scaled
    start and end steps underflowed to log 0 before they moved to log space)."""
    rng = np.random.default_rng(2946)
    emis = rng.normal(size=(3, 4, 2)) * 50
    trans = rng.normal(size=(4, 4)) * 400
    trans[2, :2] = [214.9, -554.6]  # START row
    trans[:2, 3] = [-597.7, 1066.5]  # STOP column (spread 1664: beyond MAX_SPREAD, the torch loop takes over)
    lengths = np.array([1, 3, 1])
    tags = torch.tensor(rng.integers(0, 2, size=(3, 4)))
    for stop in ([-597.7, 1066.5], [-297.7, 266.5]):  # torch fallback; Numba path with a wide START row
        trans[:2, 3] = stop
        e, tr = torch.tensor(emis), torch.tensor(trans)
        got = _nll_grads(crf_nll_torch, e, tags, torch.tensor(lengths), tr, 0)
        want = _nll_grads(crf_nll_autograd, e, tags, torch.tensor(lengths), tr, 0)
        for g, w in zip(got, want, strict=True):
            assert torch.isfinite(g).all()
            assert (g - w).abs().max().item() < 1e-9 * max(1.0, w.abs().max().item())
