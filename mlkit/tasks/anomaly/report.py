"""Per-category results: rich table on stderr, JSON and markdown in the run dir, PNG heatmap overlays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

COLUMNS = (("i_auroc", "I-AUROC"), ("p_auroc", "P-AUROC"), ("aupro", "AUPRO@0.3"))


def nanmean(values: Any) -> float:
    """Mean over the finite values; NaN (without numpy's 'Mean of empty slice' warning) when there is none."""
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def table_rows(per_cat: dict[str, dict[str, float]]) -> list[tuple[str, list[float]]]:
    """Rows (category, values) plus the mean row."""
    rows = [(cat, [vals[k] for k, _ in COLUMNS]) for cat, vals in per_cat.items()]
    if rows:
        rows.append(("mean", [nanmean([r[1][i] for r in rows]) for i in range(len(COLUMNS))]))
    return rows


def print_table(console: Any, per_cat: dict[str, dict[str, float]], title: str) -> None:
    """The per-category table on stderr."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("category")
    for _, name in COLUMNS:
        t.add_column(name, justify="right")
    for cat, vals in table_rows(per_cat):
        t.add_row(cat, *[f"{v:.3f}" for v in vals])
    console.print(t)


def markdown(per_cat: dict[str, dict[str, float]]) -> str:
    """The same table as GitHub markdown."""
    head = "| category | " + " | ".join(n for _, n in COLUMNS) + " |\n|---|" + "---:|" * len(COLUMNS) + "\n"
    body = "".join(
        f"| {c} | " + " | ".join(f"{v:.3f}" for v in vals) + " |\n" for c, vals in table_rows(per_cat)
    )
    return head + body


def write_results(folder: Path, per_cat: dict[str, dict[str, Any]], details: dict[str, Any]) -> None:
    """results.json (per category, per defect, mean) and results.md in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    mean = dict(zip([k for k, _ in COLUMNS], table_rows(per_cat)[-1][1])) if per_cat else {}
    payload = {"categories": per_cat, "mean": mean, **details}
    (folder / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    (folder / "results.md").write_text(markdown(per_cat))


def jet(x: np.ndarray) -> np.ndarray:
    """The jet colormap of values in [0, 1] as uint8 RGB."""
    x = np.clip(x, 0, 1)[..., None]
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.concatenate([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay(rgb: np.ndarray, amap: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Heatmap (jet, alpha 0.5) over the RGB image (float [0,1] or uint8)."""
    base = rgb if rgb.dtype == np.uint8 else (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    heat = jet((amap - lo) / max(hi - lo, 1e-12))
    return (0.5 * base + 0.5 * heat).astype(np.uint8)


def save_panel(path: Path, rgb: np.ndarray, amap: np.ndarray, gt: np.ndarray, lo: float, hi: float) -> None:
    """One PNG: RGB | heatmap overlay | ground truth."""
    base = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    gt3 = np.repeat((gt.astype(np.uint8) * 255)[..., None], 3, axis=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([base, overlay(base, amap, lo, hi), gt3], axis=1)).save(path)


def save_prediction(
    folder: Path, stem: str, rgb: np.ndarray, amap: np.ndarray, pix_thr: float
) -> tuple[Path, Path]:
    """<stem>_heatmap.png (overlay) and <stem>_mask.png (map above the pixel threshold); returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    heat, mask = folder / f"{stem}_heatmap.png", folder / f"{stem}_mask.png"
    Image.fromarray(overlay(rgb, amap, pix_thr * 0.5, pix_thr * 1.5)).save(heat)
    Image.fromarray(((amap > pix_thr) * 255).astype(np.uint8)).save(mask)
    return heat, mask
