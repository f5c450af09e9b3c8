"""Extra verb of the toy task: `mlkit toy synth --out DIR` writes the embedded default in its real layout."""

from pathlib import Path

import typer


def synth(out: Path = typer.Option(..., "--out", help="Folder to write data.csv into."), n: int = 64) -> None:
    """Write the synthetic CSV dataset."""
    from toytask.data import write_data

    write_data(out, n, seed=0)
