"""Metrics shared by the tasks, in NumPy/SciPy: ROC-AUC, AUPRO, span P/R/F1, accuracy, micro-F1, MRR, Hits@k."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank (Mann-Whitney) formula; tied scores get their average rank.

    AUC = (sum of ranks of positives - n_pos (n_pos + 1) / 2) / (n_pos n_neg). NaN when one class is absent.
    """
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def aupro(
    score_maps: Sequence[np.ndarray] | np.ndarray,
    gt_masks: Sequence[np.ndarray] | np.ndarray,
    fpr_limit: float = 0.3,
    num_thresholds: int = 100,
) -> float:
    """Normalised area under the per-region-overlap curve up to `fpr_limit` (MVTec 3D-AD official algorithm).

    Connected GT components (8-connected) per image; ok pixels = all GT=0 pixels, sorted. For T thresholds at
    positions linspace(0, N_ok-1, T) of the sorted ok scores: FPR = 1 - (pos+1)/N_ok and PRO = mean over all
    components of the fraction of their pixels scoring > thr. Prepend (1, 1), sort by FPR, integrate by trapezoid up
    to fpr_limit (interpolating the last segment), divide by fpr_limit.
    """
    from scipy import ndimage

    structure = np.ones((3, 3), dtype=int)
    ok_scores = []
    components: list[np.ndarray] = []
    for smap, gt in zip(score_maps, gt_masks):
        smap = np.asarray(smap, dtype=np.float64)
        gt = np.asarray(gt) > 0
        ok_scores.append(smap[~gt])
        labeled, n = ndimage.label(gt, structure=structure)
        for c in range(1, n + 1):
            components.append(np.sort(smap[labeled == c]))
    if not components:
        return float("nan")
    ok = np.sort(np.concatenate(ok_scores))
    n_ok = ok.size
    if n_ok == 0:
        return float("nan")
    pos = np.linspace(0, n_ok - 1, num_thresholds).astype(int)
    fprs = [1.0]
    pros = [1.0]
    for p in pos:
        thr = ok[p]
        fprs.append(1.0 - (p + 1) / n_ok)
        pros.append(float(np.mean([1.0 - np.searchsorted(c, thr, side="right") / c.size for c in components])))
    fpr = np.asarray(fprs)
    pro = np.asarray(pros)
    order = np.argsort(fpr, kind="stable")
    fpr, pro = fpr[order], pro[order]
    return float(_trapezoid_until(fpr, pro, fpr_limit) / fpr_limit)


def _trapezoid_until(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area of y(x) over [x0, x_max], adding the linearly interpolated partial segment at x_max."""
    mask = x <= x_max
    area = float(np.sum((x[mask][1:] - x[mask][:-1]) * (y[mask][1:] + y[mask][:-1]) / 2.0))
    i = int(mask.sum())
    if 0 < i < x.size and x[i] > x[i - 1]:
        y_at = y[i - 1] + (y[i] - y[i - 1]) * (x_max - x[i - 1]) / (x[i] - x[i - 1])
        area += (x_max - x[i - 1]) * (y[i - 1] + y_at) / 2.0
    return area


def spans_from_tags(tags: Sequence[str], scheme: str = "bmes", strict: bool = False) -> list[tuple[int, int, str]]:
    """Entity spans (start, end exclusive, type) from a tag sequence in BMES/BIOES or BIO.

    Lenient (default, as conlleval): an I/M/E without a matching open span starts a new span, and a span left
    open is closed where the next one starts. strict=True keeps only well-formed spans: in BMES/BIOES a span is
    S-X, or B-X (M-X)* E-X with one type throughout; in BIO it is B-X (I-X)*; anything dangling is dropped.
    """
    scheme = scheme.lower()
    if scheme not in ("bmes", "bioes", "bio", "iobes"):
        raise ValueError(f"unknown tag scheme {scheme}")
    has_end = scheme != "bio"
    spans: list[tuple[int, int, str]] = []
    start: int | None = None
    cur: str | None = None

    def close(end: int, complete: bool) -> None:
        nonlocal start, cur
        if start is not None and cur is not None and (complete or not strict):
            spans.append((start, end, cur))
        start, cur = None, None

    for i, tag in enumerate(tags):
        if tag in ("O", "") or "-" not in tag:
            close(i, not has_end)
            continue
        prefix, typ = tag.split("-", 1)
        prefix = prefix.upper()
        if prefix == "S":
            close(i, not has_end)
            spans.append((i, i + 1, typ))
        elif prefix == "B":
            close(i, not has_end)
            start, cur = i, typ
        elif prefix in ("I", "M"):
            if cur != typ:
                close(i, not has_end)
                if not strict:
                    start, cur = i, typ
        elif prefix == "E":
            if cur != typ:
                close(i, False)
                if strict:
                    continue
                start, cur = i, typ
            close(i + 1, True)
        else:
            close(i, not has_end)
    close(len(tags), not has_end)
    return spans


def span_prf(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "bmes", strict: bool = False
) -> dict[str, float]:
    """Exact-match span precision, recall, F1 (micro over all spans) plus per type `<type>/precision` etc.

    strict=True counts only well-formed spans (see spans_from_tags).
    """
    tp: dict[str, int] = {}
    n_gold: dict[str, int] = {}
    n_pred: dict[str, int] = {}
    for g, p in zip(gold, pred):
        gs = set(spans_from_tags(g, scheme, strict))
        ps = set(spans_from_tags(p, scheme, strict))
        for s in gs:
            n_gold[s[2]] = n_gold.get(s[2], 0) + 1
        for s in ps:
            n_pred[s[2]] = n_pred.get(s[2], 0) + 1
        for s in gs & ps:
            tp[s[2]] = tp.get(s[2], 0) + 1

    def prf(t: int, ng: int, npred: int) -> tuple[float, float, float]:
        prec = t / npred if npred else 0.0
        rec = t / ng if ng else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        return prec, rec, f1

    out: dict[str, float] = {}
    p_, r_, f_ = prf(sum(tp.values()), sum(n_gold.values()), sum(n_pred.values()))
    out.update(precision=p_, recall=r_, f1=f_)
    for typ in sorted(set(n_gold) | set(n_pred)):
        p_, r_, f_ = prf(tp.get(typ, 0), n_gold.get(typ, 0), n_pred.get(typ, 0))
        out[f"{typ}/precision"], out[f"{typ}/recall"], out[f"{typ}/f1"] = p_, r_, f_
    return out


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    """Fraction of equal entries."""
    pred = np.asarray(pred).ravel()
    gold = np.asarray(gold).ravel()
    return float((pred == gold).mean()) if gold.size else float("nan")


def micro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """Micro-averaged F1 over a multilabel 0/1 matrix (for 1-D class ids it equals accuracy)."""
    pred = np.asarray(pred)
    gold = np.asarray(gold)
    if pred.ndim == 1:
        return accuracy(pred, gold)
    p = pred.astype(bool)
    g = gold.astype(bool)
    tp = float(np.logical_and(p, g).sum())
    fp = float(np.logical_and(p, ~g).sum())
    fn = float(np.logical_and(~p, g).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank of 1-based ranks."""
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(1.0 / r)) if r.size else float("nan")


def hits_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of 1-based ranks <= k."""
    r = np.asarray(ranks)
    return float(np.mean(r <= k)) if r.size else float("nan")
