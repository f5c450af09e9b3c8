"""mi: DEMI (decomposed mutual-information estimation) beside InfoNCE, NWJ, MINE, TUBA, JS and SMILE.

Light module: the CLI reads SPEC and TINY from here without importing torch.
"""

from __future__ import annotations

from mlkit.core.registry import Flag, TaskSpec

_RUN = ("train", "estimate")
_ALL = ("train", "eval", "predict", "estimate")

SPEC = TaskSpec(
    name="mi",
    method="DEMI: the MI chain rule over progressively more informed subviews, each term a (conditional) "
    "contrastive bound with importance-sampled negatives; InfoNCE, NWJ, MINE, TUBA, JS, SMILE beside it",
    paper="Sordoni, Dziri, Schulz, Gordon, Bachman, Tachet des Combes, Decomposed Mutual Information Estimation "
    "for Contrastive Representation Learning, ICML 2021 (arXiv 2106.13401)",
    metrics=("test/mi", "test/mi_std", "test/log_batch"),
    monitor="val/mi",
    monitor_mode="max",
    layout="<root>/x.npy + y.npy (rows paired), or x.csv + y.csv, or data.npz with arrays x and y (or that .npz "
    "file itself); optional <root>/truth.json {\"mi\": nats, \"dim\": d, \"kind\": gaussian|cubic, \"rho\": r}; "
    "images (representation learning): a CIFAR-10/100 python folder or <root>/train/<class>/*.png + test|val/",
    inputs="one pair per line: 'x1,...,xd;y1,...,ye' or a JSON object {\"x\": [...], \"y\": [...]}; an image "
    "model: 'a.png;b.png'",
    flags=(
        Flag("--preset", "preset", str, "paper: the paper's protocol (fresh samples, 4,000 steps); explicit keys win",
             modes=("train",)),  # fmt: skip
        Flag("--estimator", "estimator", str, "infonce | nwj | mine | tuba | js | smile | demi", modes=_RUN),
        Flag("--cond", "cond", str, "DEMI conditional negatives: is | sir | oracle (known-truth data only)",
             modes=_RUN),  # fmt: skip
        Flag("--splits", "splits", int, "DEMI chain length s (subviews = prefixes of x's columns); 1 = InfoNCE",
             modes=_RUN),  # fmt: skip
        Flag("--clip", "clip", float, "SMILE clip tau", modes=_RUN),
        Flag("--seeds", "seeds", int, "independent runs (fresh init and batches): mean, std, 95% CI", modes=_RUN),
        Flag("--steps", "steps", int, "optimizer steps per run (epochs x steps_per_epoch for train)", modes=_RUN),
        Flag("--stream", "stream", bool, "fresh samples of the synth generator every step (no --data)",
             modes=("train",)),  # fmt: skip
        Flag("--kind", "synth.kind", str, "embedded default: gaussian | cubic | digits | markov | images",
             modes=("train",)),
        Flag("--true-mi", "synth.mi", float, "known-truth generator: I(x; y) in nats", modes=("train",)),
        Flag("--dim", "synth.dim", int, "known-truth generator: dimensions d of x and y", modes=("train",)),
        Flag("--x", "", str, "the x array: .npy, .npz (one array) or .csv, one row per sample", modes=("estimate",)),
        Flag("--y", "", str, "the y array, rows paired with --x", modes=("estimate",)),
    ),
    config_verbs={"estimate": "mlkit.tasks.mi.cli:estimate"},
    verbs={"synth": "mlkit.tasks.mi.cli:synth"},
    rows="score",
)

# `mlkit mi train` with MLKIT_TINY=1 / the contract test: seconds on a CPU, >= 2 epochs.
TINY = {"epochs": 2, "steps_per_epoch": 20, "hidden": 32, "eval_batches": 4, "synth.rows": 2000}
