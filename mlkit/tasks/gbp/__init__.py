"""GBP: scalable GNN via bidirectional propagation (generalized PageRank precompute + MLP).

Light module: the CLI reads SPEC, TINY and SAMPLE_INPUTS from here without importing torch.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_PREP = ("train", "precompute")  # propagation flags: train and the precompute verb

SPEC = TaskSpec(
    name="gbp",
    method="GBP (GnnBP): generalized-PageRank propagation precomputed by reverse push + random walks, then an MLP",
    paper="Chen et al., Scalable Graph Neural Networks via Bidirectional Propagation, NeurIPS 2020 (arXiv 2010.15421)",
    metrics=("train/f1", "val/f1", "test/f1", "test/acc"),
    monitor="val/f1",
    monitor_mode="max",
    layout=(
        "a folder with one of: generic (edges.npy int [m,2] or edges.txt 'u v' lines, feats.npy [n,F], "
        "labels.npy [n] or [n,C], split.npz with train/val/test index arrays or boolean masks); "
        "GBP original (<name>.txt with n on line 1 then 'u v' lines, <name>_feat.npy, <name>_labels.npz); "
        "GraphSAINT (adj_full.npz, feats.npy, class_map.json, role.json); "
        "Friendster chunks (friendster1.npy.., friendster_feat1.npy.., friendster_labels.npz); "
        "Planetoid raw (ind.<name>.x/.y/.allx/.ally/.tx/.ty/.graph/.test.index)"
    ),
    inputs="a node id (integer, 0-based) per line",
    flags=(
        Flag("--preset", "preset", str, "per-dataset defaults of the paper: cora citeseer pubmed ppi yelp "
             "amazon2m friendster", modes=_PREP),  # fmt: skip
        Flag("--estimator", "propagation.estimator", str, "auto | push | bidirectional | exact", modes=_PREP),
        Flag("--weights", "propagation.weights", str, "ppr | heat | sgc | list", modes=_PREP),
        Flag("--alpha", "propagation.alpha", float, "PPR teleport probability alpha", modes=_PREP),
        Flag("--rmax", "propagation.rmax", float, "push threshold r_max (relative to each column's l1 mass)",
             modes=_PREP),  # fmt: skip
        Flag("--thresholds", "propagation.thresholds", str, "bidirectional push thresholds: paper | original "
             "(the original's Friendster rule; the friendster preset's default)", modes=_PREP),  # fmt: skip
        Flag("--r", "propagation.r", float, "convolution coefficient r in T = D^(r-1) A D^(-r)", modes=_PREP),
        Flag("--walks", "propagation.walks", int, "random walks per target (bidirectional)", modes=_PREP),
        Flag("--levels", "propagation.levels", int, "propagation steps L (0: from tol)", modes=_PREP),
        Flag("--targets", "propagation.targets", str, "splits | all | file of node ids", modes=_PREP),
        Flag("--threads", "propagation.threads", int, "numba threads (0 = all cores)", modes=_PREP),
        Flag("--inductive", "train.inductive", bool,
             "propagate the training rows on the train-induced subgraph", modes=("train",)),
        Flag("--dataset", "name", str, "dataset inside a multi-dataset folder (Planetoid ind.<name>.*, gbp "
             "<name>.txt), case-insensitive", modes=("train", "eval", "predict", "precompute")),  # fmt: skip
        Flag("--format", "format", str, "data layout: auto | generic | gbp | saint | friendster | planetoid",
             modes=("train", "eval", "predict", "precompute")),  # fmt: skip
        Flag("--out", "propagation.cache_dir", str, "cache folder for the rows (propagation.cache_dir)",
             modes=("precompute",)),  # fmt: skip
        Flag("--shard", "", str, "compute column block i of N only: i/N", modes=("precompute",)),
        Flag("--merge", "", int, "merge N finished shards into the full result", modes=("precompute",)),
        Flag("--dry-run", "", bool, "print the memory model's projected peak (bidirectional) for this dataset and "
             "threads as one JSON line; do not propagate", modes=("precompute",)),  # fmt: skip
    ),
    verbs={"synth": "mlkit.tasks.gbp.cli:synth"},
    config_verbs={"precompute": "mlkit.tasks.gbp.cli:precompute"},
    rows="classification",
)

# Overrides that make `mlkit gbp train` (no --data: a small synthetic graph) finish in seconds on CPU.
TINY = {
    "epochs": 2,
    "batch_size": 64,
    "synth.nodes": 600,
    "model.hidden": 16,
    "propagation.estimator": "exact",
}

# Predict inputs valid for a model trained on the embedded default graph (node ids exist in every default graph).
SAMPLE_INPUTS = ["0", "1", "2", "17"]
