"""Extra verb of `mlkit segment`: `synth` writes the seeded `shapes` set in the generic layout."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write images/, masks/, labels.csv, split.csv into."
    ),
    train: int = typer.Option(600, "--train", help="Train images."),
    val: int = typer.Option(200, "--val", help="Validation images."),
    size: int = typer.Option(32, "--size", help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Write the synthetic `shapes` segmentation set (disc / square / triangle on photo textures); prints the folder."""
    from mlkit.tasks.segment.data import write_shapes

    write_shapes(out, train, val, size, seed)
    print(out)
