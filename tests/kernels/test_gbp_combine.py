"""Bidirectional estimator: exact with exact walk distributions, unbiased with random walks (spec §2.2, §8.1)."""

from __future__ import annotations

import numpy as np
import pytest
from gbp_graphs import csr, graphs
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels import gbp_combine as gc
from mlkit.kernels import gbp_push as gp
from mlkit.kernels import gbp_walks as gw


def exact_levels(indptr, indices, targets, levels):
    out = []
    for sj in gw.walks_reference(indptr, indices, targets, levels):
        rows, cols = np.nonzero(sj)
        ptr = np.zeros(len(targets) + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=len(targets)), out=ptr[1:])
        out.append((ptr, cols.astype(np.int64), sj[rows, cols]))
    return out


def weights_for(kind, levels):
    if kind == "ppr":
        return gp.ppr_weights(0.2, levels)
    if kind == "heat":
        return gp.heat_weights(2.0, levels)
    if kind == "sgc":
        return gp.sgc_weights(levels)
    return np.random.default_rng(levels).random(levels + 1)


@settings(max_examples=25, deadline=None)
@given(
    graphs(),
    st.sampled_from(["ppr", "heat", "sgc", "list"]),
    st.integers(0, 5),
    st.sampled_from([0.0, 0.5, 1.0]),
    st.sampled_from([1.0, 1e-2, 1e-6]),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["auto", "push", "pull"]),
)
def test_combine_with_exact_distributions_is_exact_for_any_rmax(case, kind, levels, r, rmax, seed, mode):
    indptr, indices, x = case
    n = indptr.shape[0] - 1
    targets = np.random.default_rng(seed).integers(0, n, size=min(n, 6))
    w = weights_for(kind, levels)
    coef = gc.coefficients(exact_levels(indptr, indices, targets, levels), w, targets)
    est = gc.bidirectional_numba(
        indptr, indices, x, w, r, rmax, targets, coef, out_dtype=np.float64, mode=mode
    ).T
    ref = gp.propagate_reference(indptr, indices, x, w, r)[targets]
    np.testing.assert_allclose(est, ref, rtol=1e-9, atol=1e-9 * (np.abs(ref).max() + 1))
    dense = gw.walks_reference(indptr, indices, targets, levels)
    np.testing.assert_allclose(
        gc.bidirectional_reference(indptr, indices, x, w, r, rmax, targets, dense),
        ref,
        rtol=1e-9,
        atol=1e-9 * (np.abs(ref).max() + 1),
    )


@settings(max_examples=15, deadline=None)
@given(
    graphs(max_n=20),
    st.sampled_from([1e-1, 1e-3]),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["push", "pull"]),
)
def test_numba_matches_reference_with_monte_carlo_walks(case, rmax, seed, mode):
    indptr, indices, x = case
    n = indptr.shape[0] - 1
    targets = np.arange(n)
    w = gp.sgc_weights(3)
    lv = gw.walks_numba(indptr, indices, targets, 40, 3, seed)
    est = gc.bidirectional_numba(
        indptr,
        indices,
        x,
        w,
        0.5,
        rmax,
        targets,
        gc.coefficients(lv, w, targets),
        out_dtype=np.float64,
        mode=mode,
    ).T
    dense = [gw.to_dense(level, n) for level in lv]
    ref = gc.bidirectional_reference(indptr, indices, x, w, 0.5, rmax, targets, dense)
    np.testing.assert_allclose(est, ref, rtol=1e-9, atol=1e-12)


def test_bidirectional_is_unbiased_and_error_shrinks_with_walks():
    rng = np.random.default_rng(0)
    ip, ix = csr(80, rng.integers(0, 80, size=(240, 2)))
    x = rng.standard_normal((80, 3))
    targets = np.array([1, 5, 9, 40])
    w = gp.sgc_weights(4)
    ref = gp.propagate_reference(ip, ix, x, w, 0.5)[targets]

    def run(k, seed):
        lv = gw.walks_numba(ip, ix, targets, k, 4, seed)
        return gc.bidirectional_numba(
            ip, ix, x, w, 0.5, 0.05, targets, gc.coefficients(lv, w, targets), out_dtype=np.float64
        ).T

    est = np.stack([run(100, s) for s in range(20)])
    se = est.std(0, ddof=1) / np.sqrt(20)
    z = np.abs(est.mean(0) - ref) / np.maximum(se, 1e-12)
    assert np.all(z < 3.5) and np.mean(z < 3) >= 0.9
    err = [np.sqrt(np.mean([np.square(run(k, s) - ref).mean() for s in range(4)])) for k in (100, 1600)]
    assert 2.8 < err[0] / err[1] < 5.5


@pytest.mark.parametrize("mode", ["push", "pull", "auto"])
def test_column_blocks_do_not_change_any_bit(mode):
    rng = np.random.default_rng(5)
    ip, ix = csr(300, rng.integers(0, 300, size=(1200, 2)))
    x = rng.standard_normal((300, 7))
    x[:, 3] *= rng.random(300) < 0.05  # a sparse column: auto pushes it, the others are gathered
    targets = np.arange(0, 300, 3)
    w = gp.heat_weights(2.0, 4)
    coef = gc.coefficients(gw.walks_numba(ip, ix, targets, 30, 4, 1), w, targets)
    outs = [
        gc.bidirectional_numba(ip, ix, x, w, 0.5, 1e-3, targets, coef, width=k, mode=mode) for k in (1, 3, 16)
    ]
    for o in outs[1:]:
        np.testing.assert_array_equal(outs[0], o)
    # a column subset (one shard) is the same bits as those columns of the whole
    sub = gc.bidirectional_numba(ip, ix, x[:, 2:6], w, 0.5, 1e-3, targets, coef, mode=mode)
    np.testing.assert_array_equal(sub, outs[0][2:6])


def test_pull_and_push_agree_on_a_transposed_directed_graph():
    """A directed graph: push runs on A^T with A's degrees, the pull kernel gathers along A's rows."""
    import scipy.sparse as sp

    rng = np.random.default_rng(7)
    ip, ix = csr(120, rng.integers(0, 120, size=(400, 2)), symmetric=False)
    x = rng.standard_normal((120, 3))
    targets = np.arange(0, 120, 4)
    w = gp.ppr_weights(0.2, 3)
    coef = gc.coefficients(exact_levels(ip, ix, targets, 3), w, targets)
    at = sp.csr_matrix((np.ones(ix.shape[0]), ix, ip), shape=(120, 120)).T.tocsr()
    at.sort_indices()
    deg = gp.degrees(ip)
    ref = gp.propagate_reference(ip, ix, x, w, 0.5)[targets]
    for mode in ("push", "pull"):
        est = gc.bidirectional_numba(
            at.indptr, at.indices, x, w, 0.5, 1e-3, targets, coef, deg=deg, out_dtype=np.float64, mode=mode
        ).T
        np.testing.assert_allclose(est, ref, rtol=1e-9, atol=1e-9 * (np.abs(ref).max() + 1))
