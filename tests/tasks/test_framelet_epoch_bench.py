"""benchmarks/framelet_epoch.py: the re-stated original layer computes the same function as ours, and one
benchmark row runs end to end on a small graph (opt-in: -m bench)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch


def _bench():
    path = Path(__file__).parents[2] / "benchmarks" / "framelet_epoch.py"
    spec = importlib.util.spec_from_file_location("framelet_epoch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("shrink", [False, True])
def test_original_restatement_equals_our_layer(shrink):
    from mlkit.tasks.framelet import framelets as F
    from mlkit.tasks.framelet.model import FrameletOp, UFGConv

    b = _bench()
    adj, x, _ = b.random_graph(300, 6.0, 40, 3, 0)
    fw = F.build(adj, frame="haar", lev=2, s=2.0, n=2, operator="materialized", cache=False)
    n, lev = adj.shape[0], 2
    torch.manual_seed(0)
    orig = b.OrigConv(40, 5, fw.r, lev, n, shrink)
    ours = UFGConv(40, 5, fw.num_blocks, n, shrinkage="soft" if shrink else None).double()
    with torch.no_grad():
        ours.weight.copy_(orig.weight)
        used = orig.filter.view(fw.r * lev, n)[lev - 1 :]  # blocks B in the original order
        ours.theta.copy_(used)
        orig.bias.fill_(0.25)
        ours.bias.fill_(0.25)
    xt = torch.from_numpy(x.astype(np.float64))
    want = orig(xt, b.original_blocks(fw.a_hat, fw.coef, fw.alphas))
    got = ours(xt, FrameletOp(fw, "cpu", torch.float64))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.bench
def test_benchmark_row_on_a_small_graph():
    b = _bench()
    adj, x, y = b.random_graph(400, 6.0, 30, 3, 1)
    idx = np.random.default_rng(0).permutation(400)
    row = b.bench_graph("tiny", adj, x, y, idx[:30], idx[30:130], idx[130:330], arch="ufg-r", epochs=2)
    assert row["original_cpu_s_per_epoch"] > 0 and row["ours_cpu_s_per_epoch"] > 0
    assert 0.0 <= row["ours_test_acc_at_best_val"] <= 1.0
