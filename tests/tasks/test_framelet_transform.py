"""Spec section 8.1: Chebyshev coefficient test vectors, tightness, matrix-free == materialized, on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from mlkit.kernels.framelet import block_multipliers
from mlkit.tasks.framelet import framelets as F

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "planetoid"
HAS_CORA = (DATA / "ind.cora.x").exists()


def _full(frame: str, n: int) -> np.ndarray:
    c = F.coef_matrix(frame, n)
    c[:, 0] *= 2  # back to the un-halved c_0 of the spec's test vectors
    return c


def test_coefficient_test_vectors():
    np.testing.assert_allclose(_full("haar", 2), [[1.20439, -0.51363], [1.20439, 0.51363]], atol=1e-5)
    np.testing.assert_allclose(_full("haar", 3)[:, 2], [-0.10355, -0.10355], atol=1e-5)
    np.testing.assert_allclose(_full("haar", 4)[:, 3], [0.01373, -0.01373], atol=1e-5)
    np.testing.assert_allclose(
        _full("linear", 2), [[1.0, -0.56682], [0.66751, 0.0], [1.0, 0.56682]], atol=1e-5
    )


@pytest.mark.parametrize(("n", "err"), [(2, 0.116), (3, 0.015), (4, 0.0015)])
def test_haar_approximation_error(n, err):
    xi = np.linspace(0, np.pi, 2001)
    from numpy.polynomial import chebyshev

    c = F.coef_matrix("haar", n)
    approx = chebyshev.chebval(xi / F.A_C - 1, c[0])
    assert abs(np.max(np.abs(approx - np.cos(xi / 2))) - err) < 0.1 * err


def test_masks_satisfy_the_unitary_extension_identity():
    xi = np.linspace(0, np.pi, 101)
    for frame in ("haar", "linear", "quadratic"):
        np.testing.assert_allclose(sum(m(xi) ** 2 for m in F.masks(frame)), 1.0, atol=1e-12)


@pytest.mark.parametrize(("n", "lo", "hi"), [(2, 0.725, 1.253), (3, 0.987, 1.025)])
def test_one_level_multipliers_are_only_roughly_tight(n, lo, hi):
    # spec 2.3: a^2 + b^2 of the approximated Haar masks over the whole spectrum (one level, t = pi / lambda_max)
    lam = np.linspace(0, 2, 2001)
    mult = block_multipliers(lam, F.coef_matrix("haar", n), F.level_alphas(2.0, 2.0, 1))
    energy = np.sum(mult**2, axis=0)
    assert abs(energy.min() - lo) < 2e-3 and abs(energy.max() - hi) < 2e-3
    # two levels compound the error: sum_beta m_beta^2 = p01^2 (p02^2 + p12^2) + p11^2
    two = np.sum(block_multipliers(lam, F.coef_matrix("haar", n), F.level_alphas(2.0, 2.0, 2)) ** 2, axis=0)
    assert two.max() > energy.max() - 1e-9


def test_isolated_nodes_and_tiny_graphs_have_no_nans():
    adj = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float))
    fw = F.build(adj, operator="matrix-free")
    assert np.isfinite(fw.a_hat.toarray()).all() and 0 < fw.lam_max <= 2
    assert np.isfinite(fw.decompose(np.ones((3, 2)))).all()
    single = F.build(sp.csr_matrix((1, 1)), operator="materialized")
    assert np.isfinite(single.decompose(np.ones((1, 2)))).all()


def test_operator_cache_is_reused(tmp_path):
    rng = np.random.default_rng(0)
    upper = sp.triu(sp.random(200, 200, density=0.03, random_state=1), 1)
    adj = ((upper + upper.T) > 0).astype(float)
    a = F.build(adj, operator="materialized", cache=True, cache_root=str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert any(f.startswith("op-") for f in files) and any(f.startswith("lam-") for f in files)
    b = F.build(adj, operator="materialized", cache=True, cache_root=str(tmp_path))
    assert (a.stacked != b.stacked).nnz == 0 and a.lam_max == b.lam_max
    x = rng.standard_normal((200, 3))
    np.testing.assert_allclose(a.decompose(x), b.decompose(x))


@pytest.mark.skipif(not HAS_CORA, reason="shared Planetoid data absent")
def test_cora_tightness_and_operator_agreement():
    from mlkit.graph.planetoid import load_planetoid

    adj = load_planetoid(DATA, "cora").to_scipy()
    x = np.random.default_rng(0).standard_normal((adj.shape[0], 16))
    tight = F.build(adj, n=7, operator="matrix-free")
    assert tight.tightness(x) < 1e-3
    mf = F.build(adj, operator="matrix-free")
    mat = F.build(adj, operator="materialized")
    assert abs(mf.tightness(x) - 0.305) < 0.01
    x32 = x.astype(np.float32)
    d_mf, d_mat = mf.decompose(x32), mat.decompose(x32)
    assert d_mf.dtype == np.float32
    np.testing.assert_allclose(d_mf, d_mat, atol=1e-5)
    np.testing.assert_allclose(mf.reconstruct(d_mf), mat.reconstruct(d_mf), atol=1e-5)
