"""anomaly metrics (spec §2.10, §7.4): core roc_auc/aupro against scikit-learn and a slow loop of the official PRO."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from mlkit.core.metrics import aupro, roc_auc
from mlkit.kernels.fps import fps


def slow_aupro(maps, gts, fpr_limit=0.3, steps=100):
    """The MVTec 3D-AD au_pro written as plain loops: per threshold, per component, count pixels above it."""
    comps = []
    ok = []
    for m, g in zip(maps, gts):
        lab, n = ndimage.label(g > 0, structure=np.ones((3, 3)))
        for c in range(1, n + 1):
            comps.append(m[lab == c])
        ok.extend(m[g == 0].tolist())
    ok = sorted(ok)
    pts = [(1.0, 1.0)]
    for pos in np.linspace(0, len(ok) - 1, steps).astype(int):
        thr = ok[pos]
        fpr = 1.0 - (pos + 1) / len(ok)
        pro = sum(float((c > thr).sum()) / len(c) for c in comps) / len(comps)
        pts.append((fpr, pro))
    pts.sort(key=lambda p: p[0])
    area = 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def _random_case(seed):
    rng = np.random.default_rng(seed)
    gts, maps = [], []
    for _ in range(4):
        g = np.zeros((24, 24), np.uint8)
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, 20, 2)
            g[y : y + rng.integers(2, 5), x : x + rng.integers(2, 5)] = 1
        gts.append(g)
        maps.append((rng.random((24, 24)) + 0.7 * g * rng.random()).astype(np.float32))
    gts[0][2:5, 2:5] = 1  # at least one component
    return maps, gts


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_aupro_matches_slow_loop(seed):
    maps, gts = _random_case(seed)
    assert aupro(maps, gts) == pytest.approx(slow_aupro(maps, gts), abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_roc_auc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    y[:2] = [0, 1]
    s = np.round(rng.random(200) + 0.3 * y, 1)  # with ties
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_sanity_checks_of_spec_7_4():
    maps, gts = _random_case(3)
    labels = np.array([1, 0, 1, 0])
    assert roc_auc(np.ones(4), labels) == 0.5  # a constant anomaly map gives I-AUROC 0.5
    g = [x.astype(np.float32) for x in gts]
    assert aupro(g, gts) == pytest.approx(1.0)
    assert aupro([1 - x for x in g], gts) == pytest.approx(0.0, abs=1e-3)
    pts = np.random.default_rng(0).normal(size=(500, 3))
    idx = fps(pts, 64)
    assert idx[0] == 0 and len(set(idx.tolist())) == 64  # FPS: G distinct indices, first 0
