"""Chunked matmul k-NN against scipy's cKDTree and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.knn import knn, knn_brute, knn_reference, knn_torch, nn_distance


@st.composite
def problems(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    d = draw(st.integers(1, 8))
    m = draw(st.integers(1, 50))
    q = draw(st.integers(0, 30))
    k = draw(st.integers(1, min(m, 5)))
    chunk = draw(st.integers(1, 40))
    rng = np.random.default_rng(seed)
    return rng.normal(size=(q, d)), rng.normal(size=(m, d)), k, chunk


@settings(max_examples=25, deadline=None)
@given(problems())
def test_torch_matches_ckdtree(case):
    q, b, k, chunk = case
    d, i = knn_torch(torch.from_numpy(q), torch.from_numpy(b), k, chunk=chunk)
    rd, _ = knn_reference(q, b, k) if len(q) else (np.zeros((0, k)), None)
    np.testing.assert_allclose(d.numpy(), rd, atol=1e-6)
    # the returned indices point at rows at exactly those distances
    if len(q):
        np.testing.assert_allclose(np.linalg.norm(q[:, None] - b[i.numpy()], axis=2), rd, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(problems())
def test_nn_distance_matches_ckdtree(case):
    q, b, _, chunk = case
    got = nn_distance(torch.from_numpy(q), torch.from_numpy(b), chunk=chunk).numpy()
    want = knn_reference(q, b, 1)[0][:, 0] if len(q) else np.zeros(0)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_large_block_index_search_matches_torch_min():
    """Blocks above 2^18 entries take the amin + Numba first-match route: same values and first-index ties."""
    rng = np.random.default_rng(5)
    b = rng.normal(size=(3000, 8)).astype(np.float32)
    b[1700] = b[300]  # an exact duplicate: equal distances, the first index must win
    q = np.concatenate([b[[300, 12, 2999]], rng.normal(size=(200, 8)).astype(np.float32)])
    bt, qt = torch.from_numpy(b), torch.from_numpy(q)
    d, i = knn_torch(qt, bt, 1, chunk=203)
    assert 203 * 3000 >= 1 << 18
    d2 = torch.cdist(qt.double(), bt.double())
    np.testing.assert_array_equal(i[:3, 0].numpy(), [300, 12, 2999])
    np.testing.assert_allclose(d[:, 0].numpy(), d2.min(1).values.numpy(), atol=2e-3)
    near = d2[torch.arange(len(q)), i[:, 0]] - d2.min(1).values  # the index points at a nearest row
    assert float(near.max()) < 1e-3
    bt.mul_(2.0)  # changed in place: the cached augmented bank (keyed on pointer and version) is rebuilt
    np.testing.assert_allclose(nn_distance(qt[:3] * 2, bt).numpy(), 0.0, atol=5e-3)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_high_dim_matches_brute(seed):
    rng = np.random.default_rng(seed)
    q, b = rng.normal(size=(40, 300)), rng.normal(size=(70, 300))
    d, i = knn(q, b, 3, chunk=16)
    rd, ri = knn_brute(q, b, 3)
    np.testing.assert_allclose(d, rd, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(i, ri)


def test_exact_match_gives_zero():
    b = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    d, i = knn(b[5:9], b, 1)
    np.testing.assert_array_equal(i[:, 0], [5, 6, 7, 8])
    assert np.all(d < 1e-2)  # float32 cancellation in ||a||^2+||b||^2-2ab; exact in float64


@pytest.mark.gpu
def test_cuda_matches_reference():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    rng = np.random.default_rng(2)
    q, b = rng.normal(size=(3000, 64)), rng.normal(size=(5000, 64))
    d, _ = knn(torch.from_numpy(q).cuda(), torch.from_numpy(b).cuda(), 3)
    np.testing.assert_allclose(d.cpu().numpy(), knn_reference(q, b, 3)[0], atol=1e-6)
