"""Toy task data: the layout `<root>/data.csv` (header x1,x2,label), its seeded generator, and the split."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mlkit.core.errors import DataError


def write_data(root: Path, n: int, seed: int) -> Path:
    """Write the embedded default: n points of two Gaussian blobs, in the real layout."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2)) + (2 * y[:, None] - 1)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "data.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2", "label"])
        for xi, yi in zip(x, y):
            w.writerow([f"{xi[0]:.6f}", f"{xi[1]:.6f}", int(yi)])
    return root


def load(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read data.csv; a missing file or a bad row is a DataError naming the file and line (exit 3)."""
    path = Path(root) / "data.csv"
    if not path.is_file():
        raise DataError("data.csv not found", str(root), "Expected layout: <root>/data.csv with x1,x2,label.")
    xs, ys = [], []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for n, r in enumerate(reader, 2):
            try:
                xs.append((float(r["x1"]), float(r["x2"])))
                ys.append(int(r["label"]))
            except (KeyError, TypeError, ValueError):
                raise DataError("bad row", f"{path} line {n}", "Rows must be x1,x2,label.") from None
    return np.asarray(xs, np.float32), np.asarray(ys, np.int64)


def split(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """60/20/20 train/val/test, in file order."""
    n = len(y)
    a, b = int(n * 0.6), int(n * 0.8)
    return {"train": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}
