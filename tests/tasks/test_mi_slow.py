"""Spec mi §7 on CPU (slow): InfoNCE, DEMI-IS s=2/4 and DEMI-oracle s=2/4 at true I in {2, 10, 20} nats.

d = 20 correlated Gaussian, M = 64, separable critics (256 x 3 -> 32), Adam 5e-4, fresh samples every step;
3,000 steps (oracle: 600, each oracle step scores 4,032 conditional negatives per term); estimate = mean of
held-out estimates every 10th step over the last 500 steps. 15 runs over 2 spawned workers.

Measured (seed 0; `python benchmarks/mi_validation.py`, the same grid; 783 CPU s, i.e. ~6.5 min on 2 idle cores,
32 min wall on the shared, loaded 2-core machine), estimate (terms) in nats:

| estimator       | I = 2                          | I = 10                          | I = 20                          |
|-----------------|--------------------------------|---------------------------------|---------------------------------|
| InfoNCE         | 1.65                           | 4.01                            | 4.12                            |
| DEMI-is s=2     | 1.81 (0.89 + 0.93)             | 7.20 (3.39 + 3.81), ESS 2.7     | 8.22 (4.08 + 4.13), ESS 1.5     |
| DEMI-is s=4     | 1.91 (0.45 0.46 0.47 0.52)     | 11.83 (2.12 2.71 3.38 3.63)     | 15.58 (3.51 3.95 4.05 4.08)     |
| DEMI-oracle s=2 | 1.61 (0.80 + 0.80)             | 6.47 (3.24 + 3.22)              | 8.02 (4.01 + 4.01)              |
| DEMI-oracle s=4 | 1.62 (0.41 0.41 0.39 0.41)     | 8.02 (2.01 2.02 2.00 1.98)      | 13.36 (3.36 3.35 3.36 3.29)     |

Margins tuned once after this run (spec §7: "tune the numeric margins once"): the oracle term check (4) allows 1.0
nats instead of 0.7 (measured worst gaps 0.92 at I = 10, s = 2 and 0.80 at I = 20, s = 4: 600 oracle steps leave
the terms short of log M). "No estimate above truth + 1" is asserted at I = 20 (spec §7.3, "every estimate <= 21");
at I = 10 DEMI-IS s = 4 over-estimates (11.83 > 10, ESS 3.2: degenerate importance weights, the approximation is not
a bound), which the spec allows and the README reports; DEMI-IS s = 2 stays <= 11 there (spec §7.2).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
LOG_M = math.log(64)


@pytest.fixture(scope="module")
def results():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from mi_validation import jobs, label, table

    from mlkit.tasks.mi.sweep import grid

    res = grid(jobs(1, 3000, 600), workers=int(os.environ.get("MI_WORKERS", "2")))
    print("\n" + table(res))
    return {(label(r), r["truth"]): r for r in res}


def test_below_log_m_everyone_is_right(results):
    for (name, mi), r in results.items():
        if mi == 2.0:
            assert abs(r["estimate"] - 2.0) <= 0.5, (name, r["estimate"])
            if name.startswith("DEMI"):
                assert r["estimate"] <= 2.6, (name, r["estimate"])


def test_at_10_nats_demi_passes_the_infonce_ceiling(results):
    nce = results[("InfoNCE", 10.0)]["estimate"]
    assert nce <= LOG_M + 0.1
    assert results[("DEMI-oracle s=2", 10.0)]["estimate"] >= 6.0
    demi = results[("DEMI-is s=2", 10.0)]["estimate"]
    assert nce + 0.5 <= demi <= 11.0


def test_at_20_nats_ordering_and_no_estimate_above_truth(results):
    assert results[("InfoNCE", 20.0)]["estimate"] < results[("DEMI-is s=2", 20.0)]["estimate"]
    assert results[("DEMI-oracle s=4", 20.0)]["estimate"] >= 10.0
    for (name, mi), r in results.items():
        if mi == 20.0:
            assert r["estimate"] <= mi + 1.0, (name, mi, r["estimate"])


def test_decomposition_orders_the_estimates(results):
    """More subviews capture more: at I = 20, InfoNCE < s=2 < s=4 for both samplers; oracle terms never exceed log M."""
    for cond in ("is", "oracle"):
        e = [results[(n, 20.0)]["estimate"] for n in ("InfoNCE", f"DEMI-{cond} s=2", f"DEMI-{cond} s=4")]
        assert e[0] < e[1] < e[2], (cond, e)


def test_oracle_chain_terms(results):
    for (name, mi), r in results.items():
        if "oracle" not in name:
            continue
        for term, truth in zip(r["terms"], r["term_truth"]):
            assert term <= LOG_M + 0.1, (name, mi, r["terms"])
            assert abs(term - min(truth, LOG_M)) <= 1.0, (name, mi, r["terms"])
