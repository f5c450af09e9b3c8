"""FPS: Numba and torch paths against the plain NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.fps import fps, fps_numba, fps_reference, fps_torch


@st.composite
def clouds(draw):
    m = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(m, 3))
    if draw(st.booleans()):  # duplicated points and exact ties
        pts = np.round(pts, 0)
    n = draw(st.integers(1, m))
    return pts, n


@settings(max_examples=25, deadline=None)
@given(clouds())
def test_numba_matches_reference(case):
    pts, n = case
    np.testing.assert_array_equal(fps_numba(pts, n), fps_reference(pts, n))


@settings(max_examples=25, deadline=None)
@given(clouds())
def test_torch_matches_reference(case):
    pts, n = case
    got = fps_torch(torch.from_numpy(pts), n).numpy()
    np.testing.assert_array_equal(got, fps_reference(pts, n))


@settings(max_examples=25, deadline=None)
@given(clouds())
def test_distinct_and_starts_at_zero(case):
    pts, n = case
    idx = fps(pts, n)
    assert idx[0] == 0
    assert len(set(idx.tolist())) == n


def test_farthest_property():
    """Each pick is a point farthest from the already chosen ones (the definition of FPS)."""
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 3))
    idx = fps(pts, 20)
    for i in range(1, 20):
        d = np.linalg.norm(pts[:, None] - pts[idx[:i]][None], axis=2).min(axis=1)
        assert np.isclose(d[idx[i]], d.max())


def test_bad_n_raises():
    with pytest.raises(ValueError):
        fps(np.zeros((3, 3)), 4)


@pytest.mark.gpu
def test_cuda_matches_reference():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(5000, 3))
    got = fps(torch.from_numpy(pts).cuda(), 256).cpu().numpy()
    np.testing.assert_array_equal(got, fps_reference(pts, 256))
