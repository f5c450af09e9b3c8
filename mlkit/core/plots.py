"""results.png: the curves of results.csv, one panel per metric (train/ and val/ of the same name together)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path


def _groups(header: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key in header:
        if key in ("epoch", "rep"):
            continue
        groups.setdefault(key.split("/", 1)[-1], []).append(key)
    return groups


def plot_results(csv_path: Path, png_path: Path, title: str = "") -> Path | None:
    """Draw results.csv into png_path (matplotlib, Agg backend); None when there is nothing to draw."""
    if not Path(csv_path).is_file():
        return None
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    groups = _groups(list(rows[0]))
    if not groups:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cols = min(4, len(groups))
    nrows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.8 * nrows), squeeze=False)
    epochs = [int(float(r["epoch"])) for r in rows]
    for ax, (name, keys) in zip(axes.ravel(), groups.items()):
        for key in keys:
            pts = [(e, float(r[key])) for e, r in zip(epochs, rows) if r.get(key) not in ("", None)]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = png_path.with_name(f".{png_path.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
