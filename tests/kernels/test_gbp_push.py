"""GBP reverse push and exact propagation against the dense reference (spec §2.1, §2.3a, §8.1)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from gbp_graphs import csr, graphs
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels import gbp_push as gp


@settings(max_examples=25, deadline=None)
@given(
    graphs(),
    st.floats(0.05, 0.9),
    st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    st.sampled_from([1e-1, 1e-3, 1e-5]),
    st.sampled_from([1, 2, 8]),
)
def test_push_error_is_bounded_by_the_leftover_residue(case, alpha, r, rmax, group):
    """The grouped push (any group size) stops with every part's residues <= its theta, as the per-column push."""
    indptr, indices, x = case
    ref = gp.ppr_reference(indptr, indices, x, alpha, r)
    out = gp.ppr_push_numba(indptr, indices, x, alpha, rmax, r, out_dtype=np.float64, group=group).T
    dneg, dpos = gp.degree_powers(gp.degrees(indptr), r)
    xs = x * dneg[:, None]
    pos_mass = np.where(xs > 0, xs, 0).sum(0)
    neg_mass = np.where(xs < 0, -xs, 0).sum(0)
    theta = rmax * (np.where(pos_mass > 0, pos_mass, 1.0) + np.where(neg_mass > 0, neg_mass, 1.0))
    # every leftover residue is <= theta and is credited with its l = 0 term: the rest is (1-alpha)-bounded
    bound = (1 - alpha) * theta[None, :] * dpos[:, None]
    assert np.all(np.abs(out - ref) <= bound * (1 + 1e-9) + 1e-12)


def test_push_error_shrinks_linearly_with_rmax_as_the_original():
    """§8.1: 3,000 nodes, 15,000 edge draws, 5 classes, F = 16, alpha 0.1, r 0.5 (original 1.16e-2 / 1.15e-3)."""
    import tempfile

    from mlkit.graph.io import load_graph
    from mlkit.graph.synth import planted_partition

    with tempfile.TemporaryDirectory() as d:
        planted_partition(d, 3000, classes=5, features=16, degree=5.0, seed=0)
        g = load_graph(d)
        ip, ix, x = np.asarray(g.indptr), np.asarray(g.indices).copy(), np.asarray(g.features, np.float64)
    ref = gp.propagate_numba(ip, ix, x, gp.ppr_weights(0.1, 199), 0.5)
    errs = []
    for rmax in (1e-5, 1e-6):
        out = gp.ppr_push_numba(ip, ix, x, 0.1, rmax, 0.5, out_dtype=np.float64).T
        errs.append(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    assert errs[0] <= 2 * 1.16e-2 and errs[1] <= 2 * 1.15e-3
    assert 5 < errs[0] / errs[1] < 20


@settings(max_examples=25, deadline=None)
@given(graphs(), st.sampled_from([0.0, 0.5, 1.0]), st.integers(0, 6))
def test_exact_numba_and_torch_match_reference(case, r, levels):
    indptr, indices, x = case
    w = np.random.default_rng(levels).random(levels + 1)
    ref = gp.propagate_reference(indptr, indices, x, w, r)
    np.testing.assert_allclose(gp.propagate_numba(indptr, indices, x, w, r), ref, rtol=1e-10, atol=1e-12)
    got = gp.propagate_torch(indptr, indices, torch.from_numpy(x), w, r).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    # float32 input keeps float32 storage
    f32 = gp.propagate_numba(indptr, indices, x.astype(np.float32), w, r)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, ref, rtol=1e-4, atol=1e-4 * (np.abs(ref).max() + 1))


def test_ppr_series_reference_agrees_with_solve():
    rng = np.random.default_rng(1)
    ip, ix = csr(30, rng.integers(0, 30, size=(80, 2)))
    x = rng.standard_normal((30, 3))
    np.testing.assert_allclose(
        gp.propagate_reference(ip, ix, x, gp.ppr_weights(0.2, 300), 0.5),
        gp.ppr_reference(ip, ix, x, 0.2, 0.5),
        atol=1e-12,
    )


def test_push_directed_graph_uses_transpose_and_degrees_of_a():
    rng = np.random.default_rng(2)
    ip, ix = csr(25, rng.integers(0, 25, size=(90, 2)), symmetric=False)
    assert not gp.is_symmetric(ip, ix)
    x = rng.standard_normal((25, 2))
    import scipy.sparse as sp

    at = sp.csr_matrix((np.ones(len(ix)), ix, ip), shape=(25, 25)).T.tocsr()
    out = gp.ppr_push_numba(
        at.indptr, at.indices, x, 0.15, 1e-9, 0.5, deg=gp.degrees(ip), out_dtype=np.float64
    ).T
    np.testing.assert_allclose(out, gp.ppr_reference(ip, ix, x, 0.15, 0.5), atol=1e-6)


def test_push_is_independent_of_threads_and_blocks():
    rng = np.random.default_rng(3)
    ip, ix = csr(300, rng.integers(0, 300, size=(1500, 2)))
    x = rng.standard_normal((300, 20)).astype(np.float32)
    before = numba.get_num_threads()
    for order in ("fifo", "column"):
        try:
            numba.set_num_threads(1)
            a = gp.ppr_push_numba(ip, ix, x, 0.1, 1e-5, 0.5, blocks=1, order=order, group=4)
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
            b = gp.ppr_push_numba(ip, ix, x, 0.1, 1e-5, 0.5, blocks=5, order=order, group=4)
        finally:
            numba.set_num_threads(before)
        np.testing.assert_array_equal(a, b)
        # a column subset (a shard) whose bounds are multiples of the group gives the same bits
        sub = gp.ppr_push_numba(ip, ix, x[:, 4:12], 0.1, 1e-5, 0.5, order=order, group=4, offset=4)
        np.testing.assert_array_equal(sub, a[4:12])


def test_grouped_push_is_no_less_accurate_than_one_column_at_a_time():
    """Pushing a group's parts together changes the push order only: on a power-law graph its error against the
    exact series is no worse than one column at a time, and a group of 1 equals pushing both signs together."""
    import tempfile

    from mlkit.graph.io import load_graph
    from mlkit.graph.synth import planted_partition

    with tempfile.TemporaryDirectory() as d:
        planted_partition(d, 600, classes=4, features=8, degree=5.0, seed=1)
        g = load_graph(d)
        ip, ix, x = np.asarray(g.indptr), np.asarray(g.indices).copy(), np.asarray(g.features, np.float64)
    ref = gp.propagate_numba(ip, ix, x, gp.ppr_weights(0.1, 150), 0.5).T  # tail 0.9^151 < 1e-6
    err = {}
    for order, group in (("column", 1), ("fifo", 1), ("fifo", 8)):
        out = gp.ppr_push_numba(ip, ix, x, 0.1, 1e-5, 0.5, out_dtype=np.float64, order=order, group=group)
        err[order, group] = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert err["fifo", 8] <= 1.05 * err["column", 1]
    assert err["fifo", 1] <= 1.05 * err["column", 1]
    with pytest.raises(ValueError):
        gp.ppr_push_numba(ip, ix, x, 0.1, 1e-5, 0.5, group=0)


def test_symmetry_check_and_weight_families():
    ip, ix = csr(4, np.array([[0, 1], [1, 2], [2, 2]]))
    assert gp.is_symmetric(ip, ix)
    ip2, ix2 = csr(4, np.array([[0, 1], [1, 2]]), symmetric=False)
    assert not gp.is_symmetric(ip2, ix2)
    assert gp.heat_weights(3.0, 60).sum() == pytest.approx(1.0)
    assert gp.sgc_weights(4).tolist() == [0, 0, 0, 0, 1]
    L = gp.levels_for_tol("ppr", 0.05, alpha=0.1)
    assert 0.9 ** (L + 1) <= 0.05 < 0.9**L


@pytest.mark.gpu
def test_exact_torch_on_cuda_matches_reference():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    rng = np.random.default_rng(4)
    ip, ix = csr(200, rng.integers(0, 200, size=(800, 2)))
    x = rng.standard_normal((200, 5))
    w = gp.ppr_weights(0.1, 10)
    got = gp.propagate(torch.from_numpy(x).float().cuda(), ip, ix, w, 0.5)
    assert got.is_cuda
    np.testing.assert_allclose(
        got.cpu().numpy(), gp.propagate_reference(ip, ix, x, w, 0.5), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("order", ["fifo", "column", "lifo", "original"])
def test_every_push_order_leaves_residues_below_the_threshold(order):
    """The grouped ring, the per-column ring, the stack and the original's way (re-stated) all stop with every residue <= theta."""
    rng = np.random.default_rng(11)
    ip, ix = csr(200, rng.integers(0, 200, size=(700, 2)))
    x = rng.standard_normal((200, 3))
    alpha, r, rmax = 0.15, 0.5, 1e-4
    ref = gp.ppr_reference(ip, ix, x, alpha, r)
    out = gp.ppr_push_numba(ip, ix, x, alpha, rmax, r, out_dtype=np.float64, order=order).T
    dneg, dpos = gp.degree_powers(gp.degrees(ip), r)
    xs = x * dneg[:, None]
    theta = rmax * (np.where(xs > 0, xs, 0).sum(0) + np.where(xs < 0, -xs, 0).sum(0))
    assert np.all(np.abs(out - ref) <= (1 - alpha) * theta[None, :] * dpos[:, None] * (1 + 1e-9) + 1e-12)
    assert np.abs(out - ref).max() > 0  # r_max leaves something to bound
