"""Extra verbs of `mlkit gbp`: `synth` (write a planted-partition graph) and `precompute` (propagate, cache).

`precompute` is a config verb: the runner merges and finalizes the config (presets included) as for train.

Light module: numpy, torch and the kernels are imported inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the graph into (generic layout)."),
    nodes: int = typer.Option(100_000, "--nodes", help="Number of nodes."),
    classes: int = typer.Option(5, "--classes", help="Communities = classes."),
    features: int = typer.Option(16, "--features", help="Feature dimensions."),
    degree: float = typer.Option(5.0, "--degree", help="Edge draws per node (plus a ring edge)."),
    train: float = typer.Option(0.01, "--train", help="Fraction of nodes in the train split."),
    val: float = typer.Option(0.01, "--val", help="Fraction of nodes in the validation split."),
    test: float = typer.Option(0.02, "--test", help="Fraction of nodes in the test split."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    quiet: bool = typer.Option(False, "--quiet", help="No info lines."),
) -> None:
    """Write a degree-corrected planted-partition graph (spec §3), streamed to disk; prints the folder."""
    import sys
    import time

    from mlkit.core.console import make_console
    from mlkit.core.errors import UsageError
    from mlkit.graph.synth import planted_partition

    if nodes < 2 or classes < 1 or features < 1 or degree < 0:
        raise UsageError("need --nodes >= 2, --classes >= 1, --features >= 1, --degree >= 0")
    console = make_console(quiet)
    t0 = time.perf_counter()
    planted_partition(
        out,
        nodes,
        classes,
        features,
        degree,
        fracs=(train, val, test),
        seed=seed,
        progress=lambda m: console.print(f"synth: {m}"),
    )
    console.print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    sys.stdout.write(f"{out}\n")


def precompute(cfg: dict[str, Any], ctx: Any, kw: dict[str, Any]) -> None:
    """Propagate the features (push | bidirectional | exact) and cache float32 rows; prints one JSON line.

    Under torchrun every rank computes the feature-column shard of its rank and rank 0 assembles them.
    """
    from mlkit.tasks.gbp.verb import precompute_command

    precompute_command(cfg, kw)
