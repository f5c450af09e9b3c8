"""GBP data: presets, the dataset (or the embedded synthetic graph), targets and the precomputed rows per split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import DataError, UsageError
from mlkit.graph.graph import Graph
from mlkit.tasks.gbp.precompute import Propagated, propagate_rows

SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------------------------ config
def cache_dir(cfg: dict[str, Any]) -> Path:
    """propagation.cache_dir, else <cache root>/gbp ($MLKIT_CACHE, else ~/.cache/mlkit)."""
    if cfg["propagation"].get("cache_dir"):
        return Path(cfg["propagation"]["cache_dir"]).expanduser()
    from mlkit.core.artifact import cache_root

    return cache_root() / "gbp"


# ------------------------------------------------------------------------------------ dataset
def synth_dir(cfg: dict[str, Any], log: Any = None) -> Path:
    """The embedded default graph, built once into the shared cache (keyed by section synth and the seed)."""
    from mlkit.core.artifact import cached
    from mlkit.graph.synth import planted_partition

    s = cfg["synth"]

    def build(tmp: Path) -> None:
        fracs = (float(s["train_frac"]), float(s["val_frac"]), float(s["test_frac"]))
        planted_partition(tmp, int(s["nodes"]), int(s["classes"]), int(s["features"]), float(s["degree"]),
                          fracs=fracs, seed=int(cfg["seed"]), progress=log)  # fmt: skip

    return cached("gbp-synth", {**s, "seed": int(cfg["seed"])}, build, log=log)


def load_dataset(cfg: dict[str, Any], log: Any = None) -> Graph:
    """The graph of cfg["data"] (any layout), or the embedded synthetic graph when data is null."""
    from mlkit.graph.io import load_graph

    if cfg.get("data"):
        name, preset = cfg.get("name"), cfg.get("preset")
        if not name and preset:  # a folder with several datasets: a preset that names one of them picks it
            from mlkit.graph.names import dataset_names

            held = dataset_names(cfg["data"], "gbp") + dataset_names(cfg["data"], "planetoid")
            name = next((h for h in held if h.lower() == str(preset).lower()), None)
        # --dataset (config `name`) picks one dataset of a gbp/planetoid folder, case-insensitively; a folder with
        # several and neither --dataset nor a preset naming one is refused (exit 3) with the list of names
        g = load_graph(cfg["data"], cfg.get("format") or "auto", name)
        log(f"read {g.source}")
    else:
        g = load_graph(synth_dir(cfg, log))
    check(g, cfg.get("data") or "synthetic")
    return g


def check(g: Graph, where: str) -> None:
    """A trainable graph has features, labels and three non-empty splits."""
    missing = [k for k in ("features", "labels", "train_idx", "val_idx", "test_idx") if getattr(g, k) is None]
    if missing:
        raise DataError(
            f"dataset lacks {', '.join(missing)}",
            where,
            "GBP needs node features, labels and train/val/test splits.",
        )
    for s in SPLITS:
        if len(getattr(g, f"{s}_idx")) == 0:
            raise DataError(f"the {s} split is empty", where, "Give every split at least one node.")


def targets_of(cfg: dict[str, Any], g: Graph) -> np.ndarray | None:
    """The target set S: train+val+test (splits), all nodes (None), or ids from a .npy/.txt file."""
    t = cfg["propagation"]["targets"]
    if t == "all":
        return None
    if t == "splits":
        return np.unique(np.concatenate([g.train_idx, g.val_idx, g.test_idx]))
    p = Path(t).expanduser()
    if not p.is_file():
        raise UsageError(
            f"targets file not found: {p}", "propagation.targets", "Use splits, all or a file of node ids."
        )
    ids = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, dtype=np.int64, ndmin=1)
    return np.unique(np.asarray(ids, dtype=np.int64))


def standardizer(cfg: dict[str, Any], g: Graph) -> tuple[np.ndarray | None, np.ndarray | None]:
    """z-score statistics fitted on the training nodes (train.standardize), else (None, None)."""
    if not cfg["train"]["standardize"]:
        return None, None
    x = np.asarray(g.features[np.sort(g.train_idx)], dtype=np.float64)
    mean, std = x.mean(0), x.std(0)
    return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------ rows per split
@dataclass
class SplitRows:
    """The propagated rows used for training and scoring: `full` for val/test/predict, `train` for training."""

    full: Propagated
    train: Propagated | None  # inductive: rows of the train-induced subgraph, in train_idx order

    def rows(self, g: Graph, split: str) -> np.ndarray:
        """Feature rows of one split (float32)."""
        if split == "train" and self.train is not None:
            return np.asarray(self.train.rows, dtype=np.float32)
        return self.full.take(getattr(g, f"{split}_idx"))

    def of_nodes(self, cfg: dict[str, Any], g: Graph, nodes: np.ndarray) -> np.ndarray:
        """Rows of any node ids (outside the bidirectional targets: propagated now; rows do not depend on S)."""
        x = np.empty((nodes.shape[0], self.full.rows.shape[1]), dtype=np.float32)
        known = self.full.position(nodes) >= 0
        if known.any():
            x[known] = self.full.take(nodes[known])
        if not known.all():
            mean, std = standardizer(cfg, g)
            new = nodes[~known]
            prop, seed = cfg["propagation"], int(cfg["seed"])
            x[~known] = propagate_rows(g, prop, targets=np.unique(new), seed=seed, mean=mean, std=std).take(new)
        return x


def build_rows(cfg: dict[str, Any], g: Graph, device: str = "cpu", log: Any = None) -> SplitRows:
    """Precompute (or reuse from cache) the propagated features of the splits (spec §2.2-2.4)."""
    prop = cfg["propagation"]
    cdir = cache_dir(cfg) if prop["cache"] else None
    mean, std = standardizer(cfg, g)
    targets = targets_of(cfg, g)
    inductive = bool(cfg["train"]["inductive"])
    if inductive and targets is not None:
        targets = np.unique(np.concatenate([g.val_idx, g.test_idx, targets]))
    full = propagate_rows(
        g,
        prop,
        targets=targets,
        seed=int(cfg["seed"]),
        cache_dir=cdir,
        mean=mean,
        std=std,
        device=device,
        log=log,
    )
    train = None
    if inductive:
        from mlkit.graph.io import induced_subgraph

        idx = np.asarray(g.train_idx, dtype=np.int64)
        ip, ix = induced_subgraph(g, idx)
        sub = Graph(ip, ix, idx.shape[0], np.asarray(g.features[idx]), name=f"{g.name}-train",
                    self_loops=g.self_loops)  # the induced subgraph keeps each node's loader self-loop
        train = propagate_rows(
            sub,
            prop,
            targets=None,
            seed=int(cfg["seed"]),
            cache_dir=cdir,
            mean=mean,
            std=std,
            device=device,
            log=log,
        )
    return SplitRows(full, train)


def labels_of(g: Graph, ids: np.ndarray) -> np.ndarray:
    """Labels of node ids (int64 classes or float32 0/1 rows)."""
    lab = np.asarray(g.labels[ids])
    return lab.astype(np.float32) if g.multilabel else lab.astype(np.int64)


def timing_table(rows: SplitRows, load_s: float) -> Any:
    """The precompute timing breakdown as a rich Table."""
    from rich.table import Table

    table = Table(title="gbp precompute")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_row("load", f"{load_s:.3f}")
    for tag, res in (("", rows.full), ("train subgraph ", rows.train)):
        if res is None:
            continue
        for k, v in res.timings.items():
            table.add_row(f"{tag}{k} ({res.estimator})", f"{v:.3f}")
    return table
