"""Filtered ranking kernel (mlkit.kernels.kge_rank) against the brute-force loop, on small random KGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.kernels.kge_rank import FilterIndex, filtered_ranks, metrics, rank_reference


def _fast(ent, rel, test, known, p, chunk):
    E, R = torch.as_tensor(ent), torch.as_tensor(rel)
    idx = FilterIndex(known, len(ent), len(rel)) if known is not None else None
    h, r, t = (torch.as_tensor(test[:, i]) for i in range(3))
    tail = filtered_ranks(E[h] + R[r], E, test[:, 2], test[:, 0], test[:, 1], "tail", idx, p, chunk)
    head = filtered_ranks(E[t] - R[r], E, test[:, 0], test[:, 2], test[:, 1], "head", idx, p, chunk)
    return {"head": head, "tail": tail}


def _kg(seed, n_ent=20, n_rel=3, n=60, dim=4, ties=False):
    rng = np.random.default_rng(seed)
    trip = np.unique(
        np.stack([rng.integers(0, n_ent, n), rng.integers(0, n_rel, n), rng.integers(0, n_ent, n)], 1), axis=0
    )
    ent = rng.normal(size=(n_ent, dim))
    if ties:  # duplicated embeddings: exact distance ties
        ent[1::3] = ent[0]
    rel = rng.normal(size=(n_rel, dim))
    return trip, ent, rel


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    p=st.sampled_from([1, 2]),
    chunk=st.integers(1, 40),
    filtered=st.booleans(),
    ties=st.booleans(),
)
def test_filtered_ranks_equal_brute_force(seed, p, chunk, filtered, ties):
    trip, ent, rel = _kg(seed, ties=ties)
    test = trip[: max(1, len(trip) // 3)]
    known = trip if filtered else None
    ref = rank_reference(ent, rel, test, {tuple(x) for x in trip.tolist()} if filtered else None, p)
    fast = _fast(ent, rel, test, known, p, chunk)
    for side in ("head", "tail"):
        for k in ("optimistic", "realistic", "pessimistic"):
            np.testing.assert_allclose(fast[side][k], ref[side][k], err_msg=f"{side} {k}")


def test_filter_index_lists_every_known_answer():
    trip, _, _ = _kg(3, n=200)
    idx = FilterIndex(trip, 20, 3)
    rows, cols = idx.known(trip[:, 0], trip[:, 1], "tail")
    for b, (h, r, _) in enumerate(trip.tolist()):
        want = sorted({t for hh, rr, t in trip.tolist() if hh == h and rr == r})
        assert sorted(cols[rows == b].tolist()) == want


def test_tie_policies_and_metrics():
    ent = np.zeros((5, 2))  # every candidate at the same distance: ranks 1 / 3 / 5
    rel = np.zeros((1, 2))
    test = np.array([[0, 0, 1]])
    fast = _fast(ent, rel, test, None, 2, 4)
    assert fast["tail"]["optimistic"][0] == 1 and fast["tail"]["pessimistic"][0] == 5
    assert fast["tail"]["realistic"][0] == 3
    m = metrics(np.array([1.0, 2.0, 4.0, 20.0]))
    assert (
        abs(m["mrr"] - (1 + 0.5 + 0.25 + 0.05) / 4) < 1e-12 and m["hits@1"] == 0.25 and m["hits@10"] == 0.75
    )


def test_filtering_raises_the_rank_only_by_known_answers():
    trip, ent, rel = _kg(7, n=150)
    test = trip[:20]
    raw = _fast(ent, rel, test, None, 2, 8)
    filt = _fast(ent, rel, test, trip, 2, 8)
    assert np.all(filt["tail"]["optimistic"] <= raw["tail"]["optimistic"])
    assert np.any(filt["tail"]["optimistic"] < raw["tail"]["optimistic"])


@pytest.mark.gpu
def test_cuda_ranks_equal_cpu():
    trip, ent, rel = _kg(11, n_ent=500, n=3000, dim=16)
    test = trip[:400]
    idx = FilterIndex(trip, 500, 3)
    out = {}
    for dev in ("cpu", "cuda"):
        E, R = torch.as_tensor(ent, device=dev), torch.as_tensor(rel, device=dev)
        h, r = torch.as_tensor(test[:, 0], device=dev), torch.as_tensor(test[:, 1], device=dev)
        out[dev] = filtered_ranks(E[h] + R[r], E, test[:, 2], test[:, 0], test[:, 1], "tail", idx, 2, 64)
    for k in ("optimistic", "realistic", "pessimistic"):
        np.testing.assert_allclose(out["cuda"][k], out["cpu"][k])
