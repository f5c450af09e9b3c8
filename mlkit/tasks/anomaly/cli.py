"""Extra anomaly verbs: `synth` (the embedded synthetic category) and `preprocess` (spec §2.1). Light at import."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write <out>/blob/ into (MVTec 3D-AD layout)."),
    categories: str = typer.Option("blob", "--categories", help="Only `blob` exists."),
    size: int = typer.Option(192, "--size", help="Grid side S of the square samples."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator."),
    train: int = typer.Option(24, "--train", help="train/good images."),
    validation: int = typer.Option(4, "--validation", help="validation/good images."),
    test_good: int = typer.Option(8, "--test-good", help="test/good images."),
    test_defect: int = typer.Option(8, "--test-defect", help="test/dent and test/stain images each."),
    test_combined: int = typer.Option(4, "--test-combined", help="test/combined images."),
) -> None:
    """Write the synthetic `blob` category (dent = 3-D only, stain = RGB only, combined) in the real format."""
    from mlkit.core.errors import UsageError
    from mlkit.tasks.anomaly.synth import write_dataset

    if categories.strip() != "blob":
        raise UsageError(f"unknown synthetic category '{categories}'", "--categories", "Use blob.")
    counts = {"train": train, "validation": validation, "test_good": test_good, "test_dent": test_defect,
              "test_stain": test_defect, "test_combined": test_combined}  # fmt: skip
    root = write_dataset(out, seed, size, counts)
    typer.echo(str(root.parent))


def preprocess(
    data: Path = typer.Option(..., "--data", help="MVTec 3D-AD root or one category (read only)."),
    out: Path = typer.Option(..., "--out", help="New root to write the preprocessed copy to."),
    cluster: str = typer.Option("grid", "--cluster", help="grid | dbscan | none"),
    eyecandies: bool = typer.Option(False, "--eyecandies", help="Convert raw Eyecandies in --data to --out."),
    seed: int = typer.Option(0, "--seed", help="Seed of the RANSAC sampling."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Remove the background plane (RANSAC), pad to squares and keep the largest cluster, into a new root."""
    from importlib import resources

    import yaml

    from mlkit.core.console import make_console, progress_enabled, track
    from mlkit.tasks.anomaly.preprocess import preprocess_root

    if eyecandies:
        from mlkit.tasks.anomaly.eyecandies import convert_root

        classes = convert_root(data, out)
        typer.echo(str(out))
        make_console(quiet).print(f"converted {len(classes)} Eyecandies classes to {out}; preprocess it next")
        return
    cfg = yaml.safe_load(resources.files("mlkit.tasks.anomaly").joinpath("config.yaml").read_text())
    cfg = cfg["preprocess"]
    cfg["cluster"] = cluster
    console = make_console(quiet)
    on = progress_enabled(console, quiet)
    cats = preprocess_root(data, out, cfg, seed, lambda it, d: track(it, console, on, d))
    console.print(f"preprocessed {len(cats)} categories into {out}")
    typer.echo(str(out))
