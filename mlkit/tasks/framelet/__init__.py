"""UFG: undecimated framelet graph convolution (UFGConv-R / UFGConv-S), shrinkage and framelet pooling.

Light module: the CLI reads SPEC, TINY and SAMPLE_INPUTS from here without importing torch; the hooks
are in task.py.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_T, _TE = ("train",), ("train", "eval")

SPEC = TaskSpec(
    name="framelet",
    method="UFG: undecimated framelet transforms (Chebyshev-approximated Haar/Linear/Quadratic filter banks) "
    "in a spectral graph convolution with ReLU or shrinkage, and framelet pooling for graph classification",
    paper="Zheng, Zhou, Gao, Wang, Lio, Li, Montufar, How Framelets Enhance Graph Neural Networks, ICML 2021 "
    "(arXiv 2102.06986)",
    metrics=("val/acc", "test/acc"),
    monitor="val/acc",
    monitor_mode="max",
    layout=(
        "a folder with one of: Planetoid raw (ind.<name>.x/.y/.allx/.ally/.tx/.ty/.graph/.test.index); "
        "generic node layout (edges.npy [E,2]/[2,E] or edges.txt 'u v' lines, feats.npy or feats.npz, "
        "labels.npy [N], split.npz with idx_train/idx_val/idx_test or train/val/test masks); "
        "GBP layout (<name>.txt with N on line 1 then 'u v' lines, <name>_feat.npy, <name>_labels.npz); "
        "TU raw for graph classification (<NAME>_A.txt, <NAME>_graph_indicator.txt, <NAME>_graph_labels.txt, "
        "optional <NAME>_node_labels.txt, <NAME>_node_attributes.txt)"
    ),
    inputs="a node id (0-based integer) per line; for graph-level data (TU) a graph id (0-based) per line",
    flags=(
        Flag("--format", "format", str, "auto | planetoid | node | tu (auto detects from the files)"),
        Flag("--preset", "preset", str, "paper: the paper's protocol (10 reps x 200 epochs); explicit keys win",
             modes=_T),  # fmt: skip
        Flag("--dataset", "name", str, "dataset inside a multi-dataset folder (Planetoid ind.<name>.*, gbp "
             "<name>.txt, TU <NAME>_A.txt), case-insensitive"),  # fmt: skip
        Flag("--frame", "framelet.frame", str, "filter bank: haar | linear | quadratic", modes=_T),
        Flag("--lev", "framelet.lev", int, "number of framelet levels Lev", modes=_T),
        Flag("--dilation", "framelet.s", float, "dilation factor s > 1", modes=_T),
        Flag("--cheb", "framelet.n", int, "Chebyshev coefficients n (degree n-1)", modes=_T),
        Flag("--operator", "framelet.operator", str, "auto | matrix-free | materialized"),
        Flag(
            "--theta",
            "model.theta",
            str,
            "per-node (faithful, transductive) | shared (one scalar per block)",
            modes=_T,
        ),
        Flag("--shrinkage", "shrinkage.mode", str, "soft | hard (UFGConv-S only)", modes=_T),
        Flag("--sigma", "shrinkage.sigma", float, "shrinkage threshold scale sigma", modes=_T),
        Flag("--threshold-scaling", "shrinkage.threshold_scaling", str, "none (faithful) | energy", modes=_T),
        Flag("--readout", "pool.readout", str, "UFGPool readout: sum | spectrum", modes=_T),
        Flag(
            "--reps", "reps", int, "repetitions with fresh initialisations (mean and std reported)", modes=_T
        ),
        Flag("--dtype", "dtype", str, "float32 | float64"),
        Flag(
            "--feature-noise",
            "noise.feature",
            float,
            "std of Gaussian noise added to node features",
            modes=_TE,
        ),
        Flag("--structure-noise", "noise.structure", float, "fraction of edges rewired uniformly", modes=_TE),
    ),
    verbs={"synth": "mlkit.tasks.framelet.cli:synth"},
    rows="classification",  # {"id": node or graph id, "label", "probs"} (graph regression: {"id", "value"})
)

# Overrides that make `mlkit framelet train` (no --data: the homophilous CSBM) finish in a few seconds on CPU.
TINY = {"epochs": 3, "reps": 1, "synth.nodes": 300, "synth.features": 32}

# Node ids valid for any model trained on the embedded default graph.
SAMPLE_INPUTS = ["0", "1", "2", "42"]
