"""MI bounds (mlkit/kernels/mi_bounds.py): the torch paths against the NumPy references (hypothesis), and the
unit checks of spec mi §7."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlkit.kernels import mi_bounds as B

FLOATS = st.floats(-6.0, 6.0, allow_nan=False, width=32)


@st.composite
def square(draw, lo: int = 2, hi: int = 9):
    m = draw(st.integers(lo, hi))
    return draw(arrays(np.float64, (m, m), elements=FLOATS))


def t(a):
    return torch.tensor(a, dtype=torch.float64)


@settings(max_examples=30, deadline=None)
@given(square())
def test_single_term_bounds_match_reference(s):
    assert float(B.infonce(t(s))) == pytest.approx(B.infonce_reference(s), abs=1e-9)
    assert float(B.nwj(t(s))) == pytest.approx(B.nwj_reference(s), rel=1e-9, abs=1e-9)
    assert float(B.dv(t(s))) == pytest.approx(B.dv_reference(s), abs=1e-9)
    assert float(B.dv(t(s), 1.5)) == pytest.approx(B.dv_reference(s, 1.5), abs=1e-9)
    assert float(B.tuba(t(s), t(0.3))) == pytest.approx(B.tuba_reference(s, 0.3), rel=1e-9, abs=1e-9)
    assert float(B.js_fgan(t(s))) == pytest.approx(B.js_reference(s), abs=1e-9)
    # surrogate-gradient estimators carry their documented value
    assert float(B.smile(t(s), 2.0)) == pytest.approx(B.dv_reference(s, 2.0), abs=1e-9)
    assert float(B.js(t(s))) == pytest.approx(B.nwj_reference(s + 1.0), rel=1e-9, abs=1e-9)
    v, ema = B.mine(t(s), torch.tensor(float("nan"), dtype=torch.float64), 0.9)
    assert float(v) == pytest.approx(B.dv_reference(s), abs=1e-9)
    assert float(ema) == pytest.approx(np.mean(np.diag(s)) - B.dv_reference(s), abs=1e-9)  # log E_q[e^s]


@settings(max_examples=30, deadline=None)
@given(square(3, 9), st.data())
def test_cnce_is_matches_reference(phi, data):
    m = phi.shape[0]
    psi = data.draw(arrays(np.float64, (m, m), elements=FLOATS))
    k = data.draw(st.integers(2, 3 * m))
    v, ess = B.cnce_is(t(phi), t(psi), k)
    assert float(v) == pytest.approx(B.cnce_is_reference(phi, psi, k), abs=1e-9)
    w = B.is_weights_reference(psi)
    np.testing.assert_allclose(B.is_log_weights(t(psi)).exp().numpy(), w, atol=1e-12)
    np.testing.assert_allclose(ess.numpy(), 1.0 / (w**2).sum(1), rtol=1e-9)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.data())
def test_cnce_matches_reference(m, kneg, data):
    pos = data.draw(arrays(np.float64, (m,), elements=FLOATS))
    neg = data.draw(arrays(np.float64, (m, kneg), elements=FLOATS))
    assert float(B.cnce(t(pos), t(neg))) == pytest.approx(B.cnce_reference(pos, neg), abs=1e-9)


# ---------------------------------------------------------------------------------------------- spec §7 units
@pytest.mark.parametrize("m", [2, 16, 64])
def test_infonce_perfect_and_constant_critic(m):
    perfect = torch.zeros(m, m) + torch.eye(m) * 100.0
    assert float(B.infonce(perfect)) == pytest.approx(math.log(m), abs=1e-4)
    assert float(B.infonce(torch.full((m, m), 3.7))) == pytest.approx(0.0, abs=1e-6)


def test_uniform_weights_reduce_cnce_is_to_infonce():
    g = torch.Generator().manual_seed(0)
    phi = torch.randn(32, 32, generator=g, dtype=torch.float64) * 3
    v, ess = B.cnce_is(phi, torch.full((32, 32), -1.25, dtype=torch.float64))
    assert float(v) == pytest.approx(float(B.infonce(phi)), abs=1e-10)
    assert torch.allclose(ess, torch.full((32,), 31.0, dtype=torch.float64))


def test_weights_sum_to_one_and_exclude_the_anchor():
    psi = torch.randn(20, 20, generator=torch.Generator().manual_seed(1)) * 5
    w = B.is_log_weights(psi).exp()
    assert torch.allclose(w.sum(1), torch.ones(20), atol=1e-6)
    assert torch.all(w.diagonal() == 0)
    idx = B.sir_indices(psi, 200, torch.Generator().manual_seed(2))
    assert not (idx == torch.arange(20)[:, None]).any()


def test_weights_are_detached_and_masked_diagonal_gets_no_gradient():
    phi = torch.randn(8, 8, requires_grad=True)
    psi = torch.randn(8, 8, requires_grad=True)
    v, _ = B.cnce_is(phi, psi)
    v.backward()
    assert psi.grad is None
    assert torch.isfinite(phi.grad).all()


def test_mine_gradient_is_debiased_by_the_moving_average():
    s = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    log_ema = torch.tensor(0.7, dtype=torch.float64)
    v, new = B.mine(s, log_ema, 0.5)
    v.backward()
    off = ~torch.eye(6, dtype=torch.bool)
    expect = torch.eye(6, dtype=torch.float64) / 6 - off * s.detach().exp() / 30 / new.exp()
    assert torch.allclose(s.grad, expect, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(3)
    phi, psi = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    for f in (B.infonce, B.nwj, lambda s: B.dv(s, 5.0), lambda s: B.cnce_is(s, psi.to(s.device))[0]):
        assert float(f(phi.cuda())) == pytest.approx(float(f(phi)), abs=1e-4)
    idx = B.sir_indices(psi.cuda(), 10, torch.Generator().manual_seed(0))
    assert idx.device.type == "cuda"
