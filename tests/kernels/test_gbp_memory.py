"""The memory model of the bidirectional precompute (issue 21) against peaks measured at two sizes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mlkit.kernels import gbp_memory as gm

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "gbp_memory.py"


def _bench():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("gbp_memory_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_projection_parts_follow_the_sizes():
    small = gm.project(10**6, 2 * 10**7, 100, 90_982, 1000, threads=2)
    big = gm.project(10**7, 2 * 10**8, 100, 90_982, 1000, threads=2)
    assert abs(small["graph"] - (4 * (10**6 + 1) + 8e7)) < 1 and small["features"] == 4e8
    assert big["walks"] < 1.2 * small["walks"]  # the walks follow |S| n_r, not n
    many = gm.project(10**6, 2 * 10**7, 100, 90_982, 1000, threads=40, mode="push", touched=0.01)
    few = gm.project(10**6, 2 * 10**7, 100, 90_982, 1000, threads=2, mode="push", touched=0.01)
    assert many["kernel"] > few["kernel"]  # per-worker scratch of the scatter kernel


def test_projected_peak_bounds_the_measured_peak_at_two_sizes(tmp_path):
    rows = _bench().main(["--nodes", "20000", "100000", "--degree", "5", "--features", "16", "--targets", "2000",
                          "--walks", "200", "--rmax", "1e-4", "--root", str(tmp_path)])  # fmt: skip
    for r in rows:
        assert r["measured_gib"] <= r["projected_gib"] <= 1.6 * r["measured_gib"] + 0.05, r
        assert 0.7 < r["walk_entries"] / r["walk_entries_model"] < 1.3


@pytest.mark.slow
def test_peak_grows_with_the_graph_and_the_fixed_budgets_not_with_n_times_the_features(tmp_path, monkeypatch):
    """Issue 21 at a CPU-test scale: at fixed targets, 2e5 -> 2e6 nodes with 100 on-disk features, the model bounds
    both peaks, and the peak rises by less than the features and graph themselves plus the two fixed budgets
    (the feature chunk, <= 1 GiB, and the pull level buffer, propagation.pull_memory) that the smaller graph does
    not fill yet: nothing per worker grows with n. (At 1e6 -> 1e7 nodes, where both budgets are full at either
    size, the measured rise, 2.15 GiB, is below the features and graph alone, 4.5 GiB: benchmarks/gbp_memory.py.)"""
    from mlkit.tasks.gbp.precompute import XT_BUDGET

    monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "cache"))
    rows = _bench().main(["--nodes", "200000", "2000000", "--degree", "8", "--features", "100", "--targets",
                          "20000", "--walks", "50", "--root", str(tmp_path), "--features-in-ram", str(64 << 20)])  # fmt: skip
    for r in rows:
        assert r["measured_gib"] <= r["projected_gib"] <= 1.6 * r["measured_gib"] + 0.1, r
    a, b = rows
    feats_and_graph = (2_000_000 * 100 * 4 + b["entries"] * 4 + 2_000_001 * 4) / 2**30
    budgets = (min(XT_BUDGET, 2_000_000 * 100 * 4) + (1 << 30)) / 2**30
    assert b["measured_gib"] - a["measured_gib"] < feats_and_graph + budgets
