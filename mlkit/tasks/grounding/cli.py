"""Extra verb of `mlkit grounding`: `synth` writes the synthetic shapes set in the Flickr30K Entities layout."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(
        ...,
        "--out",
        help="Folder for Sentences/, Annotations/, flickr30k-images/, features/, "
        "{train,val,test}.txt and glove_synth.txt.",
    ),  # fmt: skip
    train: int = typer.Option(800, "--train", help="Train images."),
    val: int = typer.Option(100, "--val", help="Validation images."),
    test: int = typer.Option(200, "--test", help="Test images."),
    proposals: int = typer.Option(20, "--proposals", help="Region proposals per image (R)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Write the seeded synthetic shapes set (spec §3.4) as real Flickr30K Entities files; prints the folder."""
    from mlkit.core.errors import UsageError
    from mlkit.tasks.grounding.synth import write_synth

    if min(train, val, test) < 1 or proposals < 8:
        raise UsageError("--train/--val/--test must be >= 1 and --proposals >= 8", "synth")
    write_synth(out, train, val, test, proposals, 128, seed)
    print(out)
