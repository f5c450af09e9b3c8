"""Extra verb of `mlkit translate`: `synth` writes the seeded mnistm-lite set in the DRIT layout."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write trainA/ trainB/ testA/ testB/ labels.csv into."),
    train: int = typer.Option(2000, "--train", help="Train images per domain."),
    test: int = typer.Option(500, "--test", help="Test images per domain."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Write mnistm-lite (plain digits A, |photo crop - digit| B, disjoint digits, 32x32); prints the folder as JSON."""
    import json
    import sys

    from mlkit.tasks.translate.data import write_mnistm_lite

    src = write_mnistm_lite(Path(out), train, test, seed)
    sys.stderr.write(f"digits from {src}\n")
    print(json.dumps({"out": str(out), "digits": src}))
