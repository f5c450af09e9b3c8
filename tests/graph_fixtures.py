"""Small graph datasets written in their real on-disk layouts, shared by the graph loader and task tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlkit.graph.planetoid import write_planetoid


def planetoid_set(root: Path, name: str, classes: int, n: int = 60, seed: int = 0) -> None:
    """A small Planetoid dataset (ind.<name>.*): train 0..9, test n-20..n-1, a ring plus class-stride edges."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    feats = (np.eye(classes)[labels] + rng.normal(0, 0.3, (n, classes))).astype(np.float32)
    adj = {i: [(i + 1) % n, (i + classes) % n] for i in range(n)}
    write_planetoid(root, name, feats, labels, adj, num_train=10, test_index=rng.permutation(np.arange(n - 20, n)))


def error_lines(err: str) -> list[str]:
    """The `error:` lines of a command's stderr."""
    return [line for line in err.splitlines() if line.startswith("error:")]
