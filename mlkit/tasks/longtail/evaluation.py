"""longtail metrics (spec §2.4): overall and balanced accuracy, many / medium / few, ECE / MCE, per-class CSV and the
confusion-matrix PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.tasks.longtail.loss import SIGMOID, softmax_bias

MANY, FEW = 100, 20  # Many: n_j > 100, Medium: 20 <= n_j <= 100, Few: n_j < 20 (train counts)


def groups(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Class ids of the non-empty groups among many / medium / few."""
    counts = np.asarray(counts)
    out = {"many": np.where(counts > MANY)[0], "medium": np.where((counts >= FEW) & (counts <= MANY))[0],
           "few": np.where(counts < FEW)[0]}  # fmt: skip
    return {k: v for k, v in out.items() if len(v)}


def scores(logits: torch.Tensor, loss: str, counts: np.ndarray, posthoc_tau: float = 0.0) -> torch.Tensor:
    """Class scores from plain logits: sigmoid for BCE-family losses, else softmax; optional post-hoc adjustment
    z - tau log pi (logit adjustment at eval, for a model trained without a prior offset)."""
    z = logits.float()
    if posthoc_tau:
        z = z - softmax_bias(torch.as_tensor(counts), posthoc_tau).to(z.device)
    return torch.sigmoid(z) if loss in SIGMOID else torch.softmax(z, dim=1)


def calibration(conf: np.ndarray, correct: np.ndarray, bins: int = 15) -> tuple[float, float]:
    """(ECE, MCE) over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece, mce = 0.0, 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            gap = abs(float(correct[sel].mean()) - float(conf[sel].mean()))
            ece += gap * sel.mean()
            mce = max(mce, gap)
    return float(ece), float(mce)


def metrics(
    prob: torch.Tensor, labels: np.ndarray, counts: np.ndarray, prefix: str = "test"
) -> dict[str, Any]:
    """Accuracy metrics of class scores (N, C) against labels; many/medium/few only for non-empty groups."""
    pred = prob.argmax(dim=1).cpu().numpy()
    labels = np.asarray(labels)
    c = prob.shape[1]
    per_class = np.full(c, np.nan)
    for j in range(c):
        sel = labels == j
        if sel.any():
            per_class[j] = float((pred[sel] == j).mean())
    conf = prob.max(dim=1).values.cpu().numpy()
    ece, mce = calibration(conf, (pred == labels).astype(np.float64))
    out: dict[str, Any] = {f"{prefix}/acc": float((pred == labels).mean()) if len(labels) else 0.0,
                           f"{prefix}/balanced_acc": float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0,
                           f"{prefix}/ece": ece, f"{prefix}/mce": mce}  # fmt: skip
    for name, ids in groups(counts).items():
        vals = per_class[ids]
        vals = vals[np.isfinite(vals)]
        if len(vals):
            out[f"{prefix}/{name}"] = float(vals.mean())
    out["_per_class"] = per_class
    out["_pred"] = pred
    return out


def confusion(pred: np.ndarray, labels: np.ndarray, c: int) -> np.ndarray:
    cm = np.zeros((c, c), np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(pred)), 1)
    return cm


def write_reports(
    folder: Path, classes: list[str], counts: np.ndarray, m: dict[str, Any], labels: np.ndarray
) -> None:
    """per_class.csv (class, name, train count, group, test count, accuracy) and confusion.png."""
    folder.mkdir(parents=True, exist_ok=True)
    grp = {int(j): g for g, ids in groups(counts).items() for j in ids}
    test_n = np.bincount(labels, minlength=len(classes))
    rows = ["class,name,train_count,group,test_count,accuracy"]
    for j, name in enumerate(classes):
        acc = m["_per_class"][j]
        rows.append(f"{j},{name.replace(',', ' ')},{int(counts[j])},{grp.get(j, '')},{int(test_n[j])},"
                    f"{'' if not np.isfinite(acc) else f'{acc:.6f}'}")  # fmt: skip
    (folder / "per_class.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    plot_confusion(folder / "confusion.png", confusion(m["_pred"], labels, len(classes)), classes)


def plot_confusion(path: Path, cm: np.ndarray, classes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = len(classes)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(min(2 + 0.45 * c, 14), min(2 + 0.4 * c, 12)))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    if c <= 30:
        ax.set_xticks(range(c), [s[:12] for s in classes], rotation=90, fontsize=7)
        ax.set_yticks(range(c), [s[:12] for s in classes], fontsize=7)
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] < 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted (head classes first)")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (rows normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
