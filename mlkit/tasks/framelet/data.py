"""Data for the framelet task: config defaults per arch, layout detection, loading, noise injection, and the
embedded default graph (cached in $MLKIT_CACHE in the generic node layout, so train/eval/predict share it)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.artifact import cached
from mlkit.core.errors import DataError, UsageError
from mlkit.graph.graph import Graph
from mlkit.graph.tu import GraphSet
from mlkit.tasks.framelet import synth
from mlkit.tasks.framelet.model import GRAPH_ARCHS, NODE_ARCHS

# spec 2.8: (lr, weight decay, hidden, dropout, s) of the original scripts; gcn/mlp use Kipf & Welling's values
ARCH_DEFAULTS = {
    "ufg-r": (0.01, 0.01, 16, 0.7, 2.0),
    "ufg-s": (0.005, 0.01, 16, 0.7, 2.5),
    "gcn": (0.01, 5e-4, 16, 0.5, 2.0),
    "mlp": (0.01, 5e-4, 16, 0.5, 2.0),
    "ufgpool": (0.005, 0.005, 64, 0.5, 2.0),
    "meanpool": (0.005, 0.005, 64, 0.5, 2.0),
    "sumpool": (0.005, 0.005, 64, 0.5, 2.0),
}


def resolve(cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of cfg with every null hyper-parameter replaced by the arch's paper default; checks values."""
    arch = cfg["arch"]
    if arch not in ARCH_DEFAULTS:
        raise UsageError(f"unknown arch '{arch}'", "arch", f"Use one of: {', '.join(ARCH_DEFAULTS)}.")
    lr, wd, hidden, dropout, s = ARCH_DEFAULTS[arch]
    out = copy.deepcopy(cfg)
    for key, value in (("lr", lr), ("weight_decay", wd)):
        if out.get(key) is None:
            out[key] = value
    for key, value in (("hidden", hidden), ("dropout", dropout)):
        if out["model"].get(key) is None:
            out["model"][key] = value
    if out["framelet"].get("s") is None:
        out["framelet"]["s"] = s
    checks = (
        (out["dtype"] in ("float32", "float64"), "dtype", "float32 or float64"),
        (out["model"]["theta"] in ("per-node", "shared"), "model.theta", "per-node or shared"),
        (out["shrinkage"]["mode"] in ("soft", "hard"), "shrinkage.mode", "soft or hard"),
        (
            out["shrinkage"]["threshold_scaling"] in ("none", "energy"),
            "shrinkage.threshold_scaling",
            "none or energy",
        ),
        (out["pool"]["readout"] in ("sum", "spectrum"), "pool.readout", "sum or spectrum"),
        (out["format"] in ("auto", "planetoid", "node", "tu"), "format", "auto, planetoid, node or tu"),
        (out["synth"]["kind"] in synth.RATIOS, "synth.kind", "homophilous or heterophilous"),
        (int(out["reps"]) >= 1, "reps", "an integer >= 1"),
    )
    for ok, key, allowed in checks:
        if not ok:
            raise UsageError(f"bad value for {key}", key, f"Use {allowed}.")
    if graph_level(out) and out["data"] is None:
        raise UsageError(
            "graph-level archs need a TU dataset",
            "--data",
            "Write the synthetic two-class set with `mlkit framelet synth --out DIR` and pass --data DIR/graphs.",
        )
    return out


def graph_level(cfg: dict[str, Any]) -> bool:
    """Whether the run is graph classification/regression (graph archs) or node classification."""
    return cfg["arch"] in GRAPH_ARCHS


def detect(path: Path, fmt: str) -> str:
    """planetoid | tu | node for a data folder."""
    if fmt != "auto":
        return fmt
    from mlkit.graph.names import dataset_names

    if dataset_names(path, "tu"):
        return "tu"
    if dataset_names(path, "planetoid"):
        return "planetoid"
    return "node"


def default_graph(cfg: dict[str, Any]) -> Graph:
    """The embedded default: the CSBM of the `synth` section (deterministic in synth.seed)."""
    s = cfg["synth"]
    return synth.csbm(
        nodes=s["nodes"],
        classes=s["classes"],
        features=s["features"],
        degree=s["degree"],
        ratio=synth.RATIOS[s["kind"]],
        mu=s["mu"],
        train_per_class=s["train_per_class"],
        seed=s["seed"],
        name=f"csbm-{s['kind']}",
    )


def save_graph(g: Graph, folder: Path) -> Path:
    """Write a node-classification graph in the generic node layout (what `--data` reads back)."""
    from mlkit.graph.io import save_generic

    rows = np.repeat(np.arange(g.num_nodes), np.diff(g.indptr))
    keep = rows < g.indices
    split = {"train": g.train_idx, "val": g.val_idx, "test": g.test_idx}
    edges = np.stack([rows[keep], g.indices[keep]], 1)
    return save_generic(folder, edges, g.num_nodes, g.features, g.labels, split, name=g.name)


def default_folder(cfg: dict[str, Any]) -> Path:
    """The embedded default graph's folder in the cache, built on first use."""
    return cached("framelet-csbm", dict(cfg["synth"]), lambda tmp: save_graph(default_graph(cfg), tmp))


def load_nodes(cfg: dict[str, Any]) -> Graph:
    """The node-classification graph (with noise applied), symmetric, without self-loops."""
    if cfg["arch"] not in NODE_ARCHS:
        raise UsageError(
            f"arch '{cfg['arch']}' is a graph-level arch", "arch", "Use ufg-r, ufg-s, gcn or mlp."
        )
    if cfg["data"] is None:
        from mlkit.graph.io import load_generic

        g = _symmetrize(load_generic(default_folder(cfg)))
    else:
        path = Path(cfg["data"])
        kind = detect(path, cfg["format"])
        if kind == "tu":
            raise UsageError(
                "this folder holds graph-level (TU) data",
                str(path),
                "Use --arch ufgpool, meanpool or sumpool.",
            )
        from mlkit.graph.io import load_graph

        # several datasets in one folder (Planetoid ind.<name>.*, gbp <name>.txt): --dataset picks one
        g = load_graph(path, "planetoid" if kind == "planetoid" else "auto", cfg.get("name"))
        source = g.source
        g = _symmetrize(g)
        g.source = source
    for attr in ("features", "labels", "train_idx", "val_idx", "test_idx"):
        if getattr(g, attr) is None:
            raise DataError(
                f"the graph has no {attr}",
                str(cfg["data"]),
                "Node classification needs features, labels and a split.",
            )
    if g.labels.ndim != 1:
        raise DataError(
            "multilabel targets are not supported by this task",
            str(cfg["data"]),
            "Give one int label per node.",
        )
    g = Graph(**{**g.__dict__, "features": np.asarray(g.features, dtype=np.float32)})
    noise = cfg["noise"]
    g = synth.feature_noise(g, float(noise["feature"]), int(noise["seed"]))
    return synth.structure_noise(g, float(noise["structure"]), int(noise["seed"]))


def _symmetrize(g: Graph) -> Graph:
    """Symmetric 0/1 adjacency without self-loops or duplicates (spec 3: before building L)."""
    from mlkit.graph.planetoid import csr_from_edges

    rows = np.repeat(np.arange(g.num_nodes, dtype=np.int64), np.diff(np.asarray(g.indptr, dtype=np.int64)))
    adj = csr_from_edges(rows, np.asarray(g.indices, dtype=np.int64), g.num_nodes)
    return Graph(**{**g.__dict__, "indptr": adj.indptr, "indices": adj.indices})


def load_graphs(cfg: dict[str, Any]) -> GraphSet:
    """The graph-level dataset (TU raw folder)."""
    from mlkit.graph.tu import load_tu

    path = Path(cfg["data"])
    if detect(path, cfg["format"]) != "tu":
        raise DataError(
            "no TU dataset in this folder",
            str(path),
            "Expected layout: NAME_A.txt, NAME_graph_indicator.txt, NAME_graph_labels.txt.",
        )
    ds = load_tu(
        path, cfg.get("name"), bool(cfg["graph"]["node_attributes"]), str(cfg["graph"].get("degree_feature", "normalized"))
    )
    if cfg["noise"]["feature"] > 0:
        rng = np.random.default_rng(int(cfg["noise"]["seed"]))
        for g in ds.graphs:
            g.features = (g.features + rng.normal(0, cfg["noise"]["feature"], g.features.shape)).astype(
                np.float32
            )
    return ds
