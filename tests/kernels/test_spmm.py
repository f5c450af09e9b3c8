"""CSR SpMM kernels: Numba and torch against the SciPy reference; the autograd backward uses the transpose."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.spmm import spmm, spmm_numba, spmm_reference, spmm_torch, to_torch_csr


def _random_csr(n: int, m: int, density: float, seed: int) -> sp.csr_matrix:
    a = sp.random(n, m, density=density, format="csr", random_state=seed, dtype=np.float64)
    a.indices = a.indices.astype(np.int32)
    return a


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), m=st.integers(1, 30), f=st.integers(1, 9), density=st.floats(0.0, 0.6),
       seed=st.integers(0, 10_000))
def test_numba_matches_reference(n, m, f, density, seed):
    a = _random_csr(n, m, density, seed)
    x = np.random.default_rng(seed).standard_normal((m, f))
    np.testing.assert_allclose(spmm_numba(a.indptr, a.indices, a.data, x), spmm_reference(a.indptr, a.indices, a.data, x),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(spmm(a, x), a @ x, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 25), f=st.integers(1, 6), density=st.floats(0.05, 0.6), seed=st.integers(0, 10_000))
def test_torch_forward_and_backward(n, f, density, seed):
    torch = pytest.importorskip("torch")
    a = _random_csr(n, n + 3, density, seed)
    x = np.random.default_rng(seed).standard_normal((n + 3, f))
    g = np.random.default_rng(seed + 1).standard_normal((n, f))
    at = to_torch_csr(a.T, torch.float64)
    xt = torch.tensor(x, requires_grad=True)
    y = spmm_torch(to_torch_csr(a, torch.float64), xt, at)
    np.testing.assert_allclose(y.detach().numpy(), a @ x, rtol=1e-10, atol=1e-12)
    y.backward(torch.tensor(g))
    np.testing.assert_allclose(xt.grad.numpy(), a.T @ g, rtol=1e-10, atol=1e-12)


def test_torch_symmetric_backward_uses_the_matrix_itself():
    torch = pytest.importorskip("torch")
    a = _random_csr(12, 12, 0.3, 1)
    a = sp.csr_matrix(a + a.T)
    x = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: spmm_torch(to_torch_csr(a, torch.float64), v), (x,))


@pytest.mark.gpu
def test_torch_cuda_matches_reference():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    a = _random_csr(200, 200, 0.05, 3)
    x = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    xt = torch.tensor(x, device="cuda", requires_grad=True)
    y = spmm(to_torch_csr(a, torch.float32, "cuda"), xt, to_torch_csr(a.T, torch.float32, "cuda"))
    np.testing.assert_allclose(y.detach().cpu().numpy(), a @ x, rtol=1e-4, atol=1e-5)
    y.sum().backward()
    np.testing.assert_allclose(xt.grad.cpu().numpy(), a.T @ np.ones((200, 16)), rtol=1e-4, atol=1e-4)
