"""Shared metrics against scikit-learn / SciPy on random data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from mlkit.core import metrics as M


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 200), st.integers(0, 10_000), st.booleans())
def test_roc_auc_matches_sklearn_with_ties(n, seed, coarse):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    s = rng.integers(0, 4, n).astype(float) if coarse else rng.normal(size=n)
    assert M.roc_auc(s, y) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_roc_auc_one_class_is_nan():
    assert np.isnan(M.roc_auc([0.1, 0.2], [1, 1]))


def _aupro_brute(maps, gts, limit=0.3, t=100):
    """An independent reading of the official algorithm: explicit thresholds, sklearn.metrics.auc on a cut curve."""
    from scipy import ndimage

    ok = np.sort(np.concatenate([m[g == 0] for m, g in zip(maps, gts)]))
    comps = []
    for m, g in zip(maps, gts):
        lab, n = ndimage.label(g, structure=np.ones((3, 3)))
        comps += [m[lab == c] for c in range(1, n + 1)]
    xs, ys = [1.0], [1.0]
    for p in np.linspace(0, ok.size - 1, t).astype(int):
        thr = ok[p]
        xs.append(1 - (p + 1) / ok.size)
        ys.append(np.mean([(c > thr).mean() for c in comps]))
    xs, ys = np.array(xs), np.array(ys)
    o = np.argsort(xs, kind="stable")
    xs, ys = xs[o], ys[o]
    keep = xs <= limit
    x_cut, y_cut = list(xs[keep]), list(ys[keep])
    j = keep.sum()
    if j < xs.size:
        x_cut.append(limit)
        y_cut.append(np.interp(limit, xs[j - 1 : j + 1], ys[j - 1 : j + 1]))
    return skm.auc(x_cut, y_cut) / limit


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_aupro_matches_an_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    maps, gts = [], []
    for _ in range(3):
        g = np.zeros((24, 24), dtype=np.uint8)
        for _ in range(rng.integers(1, 3)):
            r, c = rng.integers(0, 20, 2)
            g[r : r + rng.integers(2, 5), c : c + rng.integers(2, 5)] = 1
        m = rng.normal(size=g.shape) + 1.5 * g * rng.random()
        maps.append(m)
        gts.append(g)
    assert M.aupro(maps, gts) == pytest.approx(_aupro_brute(maps, gts), abs=1e-9)


def test_aupro_perfect_and_inverted_maps():
    g = np.zeros((16, 16), np.uint8)
    g[4:8, 4:8] = 1
    assert M.aupro([g.astype(float)], [g]) == pytest.approx(1.0)
    assert M.aupro([1.0 - g], [g]) == pytest.approx(0.0, abs=1e-9)


def test_spans_bmes_bio_bioes():
    assert M.spans_from_tags(["B-PER", "M-PER", "E-PER", "O", "S-LOC"]) == [(0, 3, "PER"), (4, 5, "LOC")]
    assert M.spans_from_tags(["B-PER", "I-PER", "B-PER", "O", "I-LOC"], "bio") == [
        (0, 2, "PER"),
        (2, 3, "PER"),
        (4, 5, "LOC"),
    ]
    assert M.spans_from_tags(["B-X", "I-X", "E-X", "S-Y"], "bioes") == [(0, 3, "X"), (3, 4, "Y")]


def test_strict_spans_drop_dangling_and_mixed_types():
    tags = ["B-A", "M-A", "E-A", "B-A", "O", "M-B", "E-B", "B-A", "E-B", "S-C", "B-D"]
    assert M.spans_from_tags(tags, strict=True) == [(0, 3, "A"), (9, 10, "C")]
    lenient = M.spans_from_tags(tags)
    assert (0, 3, "A") in lenient and (3, 4, "A") in lenient and (5, 7, "B") in lenient and (10, 11, "D") in lenient
    assert M.spans_from_tags(["B-A", "I-A", "I-B", "O", "I-A", "B-C"], "bio", strict=True) == [(0, 2, "A"), (5, 6, "C")]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["O", "B-A", "M-A", "E-A", "S-A", "B-B", "E-B"]), max_size=25))
def test_strict_spans_are_a_subset_of_lenient_ones(tags):
    strict = M.spans_from_tags(tags, strict=True)
    assert set(strict) <= set(M.spans_from_tags(tags))
    for a, b, typ in strict:
        assert tags[a] in (f"B-{typ}", f"S-{typ}") and tags[b - 1] in (f"E-{typ}", f"S-{typ}")


def test_span_prf_counts():
    gold = [["B-A", "E-A", "O", "S-B"], ["S-A", "O"]]
    pred = [["B-A", "E-A", "O", "O"], ["S-B", "O"]]
    r = M.span_prf(gold, pred)
    # gold spans 3, predicted 2, correct 1
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert r["A/precision"] == 1.0 and r["A/recall"] == 0.5 and r["B/f1"] == 0.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["O", "B-A", "I-A", "B-B", "I-B"]), max_size=30))
def test_span_prf_of_a_sequence_with_itself_is_perfect(tags):
    r = M.span_prf([tags], [tags], "bio")
    if M.spans_from_tags(tags, "bio"):
        assert r["f1"] == 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 100), st.integers(0, 10_000))
def test_accuracy_and_micro_f1_match_sklearn(n, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 3, n), rng.integers(0, 3, n)
    assert M.accuracy(a, b) == pytest.approx(skm.accuracy_score(b, a))
    pa, pb = rng.integers(0, 2, (n, 4)), rng.integers(0, 2, (n, 4))
    assert M.micro_f1(pa, pb) == pytest.approx(skm.f1_score(pb, pa, average="micro", zero_division=0.0))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(3, 12), st.integers(0, 10_000))
def test_mrr_and_hits_match_sklearn(n, c, seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((n, c))
    true = rng.integers(0, c, n)
    ranks = 1 + (scores > scores[np.arange(n), true][:, None]).sum(1)
    onehot = np.eye(c, dtype=int)[true]
    assert M.mrr(ranks) == pytest.approx(skm.label_ranking_average_precision_score(onehot, scores))
    for k in (1, 3):
        if k < c:
            expect = skm.top_k_accuracy_score(true, scores, k=k, labels=np.arange(c))
            assert M.hits_at_k(ranks, k) == pytest.approx(expect)
