"""Random walks from targets: unbiased for M^j, error ~ 1/sqrt(n_walks), independent of threads and batching."""

from __future__ import annotations

import numba
import numpy as np
from gbp_graphs import csr, graphs
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels import gbp_walks as gw


@settings(max_examples=25, deadline=None)
@given(graphs(max_n=15), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_walk_levels_are_distributions_on_the_reachable_support(case, levels, seed):
    indptr, indices, _ = case
    n = indptr.shape[0] - 1
    targets = np.arange(n)
    exact = gw.walks_reference(indptr, indices, targets, levels)
    got = gw.walks_numba(indptr, indices, targets, 50, levels, seed)
    for j in range(levels):
        dense = gw.to_dense(got[j], n)
        # mass where a walk can be, nowhere else; total mass = exact mass (walks die only at degree-0 nodes)
        assert np.all(dense[exact[j] == 0] == 0)
        np.testing.assert_allclose(dense.sum(1), exact[j].sum(1), atol=1e-9)
        ptr, nodes, _ = got[j]
        for i in range(n):  # sorted, distinct nodes per target
            seg = nodes[ptr[i] : ptr[i + 1]]
            assert np.all(np.diff(seg) > 0)


def test_walks_are_unbiased_over_20_seeds():
    rng = np.random.default_rng(0)
    ip, ix = csr(40, rng.integers(0, 40, size=(100, 2)))
    targets = np.array([0, 3, 7, 39])
    exact = gw.walks_reference(ip, ix, targets, 3)
    n_walks = 200
    runs = np.stack(
        [
            np.stack([gw.to_dense(lv, 40) for lv in gw.walks_numba(ip, ix, targets, n_walks, 3, s)])
            for s in range(20)
        ]
    )
    mean, se = runs.mean(0), runs.std(0, ddof=1) / np.sqrt(20)
    big = np.stack(exact) > 0.05  # entries with enough mass for a normal approximation
    z = np.abs(mean - np.stack(exact))[big] / np.maximum(se[big], 1e-12)
    assert np.mean(z <= 3) >= 0.97 and z.max() < 5


def test_walk_error_shrinks_like_inverse_sqrt_of_walks():
    rng = np.random.default_rng(1)
    ip, ix = csr(60, rng.integers(0, 60, size=(200, 2)))
    targets = np.arange(60)
    exact = gw.walks_reference(ip, ix, targets, 2)[1]

    def rms(k):
        errs = [gw.to_dense(gw.walks_numba(ip, ix, targets, k, 2, s)[1], 60) - exact for s in range(4)]
        return np.sqrt(np.mean(np.square(errs)))

    ratio = rms(100) / rms(1600)  # 16x walks -> ~4x smaller error
    assert 2.8 < ratio < 5.5


def test_walks_do_not_depend_on_threads_batches_or_target_order():
    rng = np.random.default_rng(2)
    ip, ix = csr(500, rng.integers(0, 500, size=(2000, 2)))
    targets = rng.choice(500, 64, replace=False)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        a = gw.walks_numba(ip, ix, targets, 300, 4, seed=9, batch=7)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        b = gw.walks_numba(ip, ix, targets, 300, 4, seed=9)
        perm = np.argsort(targets)
        c = gw.walks_numba(ip, ix, targets[perm], 300, 4, seed=9)
    finally:
        numba.set_num_threads(before)
    for la, lb, lc in zip(a, b, c):
        for k in range(3):
            np.testing.assert_array_equal(la[k], lb[k])
        np.testing.assert_array_equal(gw.to_dense(la, 500)[perm], gw.to_dense(lc, 500))
    d = gw.walks_numba(ip, ix, targets, 300, 4, seed=10)
    assert not np.array_equal(a[3][1], d[3][1])  # the seed matters


def test_walks_from_an_isolated_node_stay_empty():
    ip, ix = csr(3, np.array([[0, 1]]))
    out = gw.walks_numba(ip, ix, np.array([2, 0]), 10, 2)
    assert out[0][0].tolist() == [0, 0, 1] and out[0][1].tolist() == [1]
    assert out[1][1].tolist() == [0] and out[1][2][0] == 1.0
