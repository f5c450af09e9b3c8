"""`--data` resolution: a path, or a dataset name under the datasets root."""

from __future__ import annotations

import os
from pathlib import Path

from mlkit.core.errors import DataError


def datasets_root() -> Path:
    """MLKIT_DATASETS, or ~/.mlkit/datasets."""
    return Path(os.environ.get("MLKIT_DATASETS", "~/.mlkit/datasets")).expanduser()


def candidates(value: str) -> list[Path]:
    """The places a `--data` value may point to, in search order."""
    p = Path(value).expanduser()
    places = [p]
    if not p.is_absolute() and len(p.parts) == 1:
        places += [datasets_root() / value, Path("datasets") / value]
    return places


def resolve_data(value: str, layout: str) -> Path:
    """Return the first existing place for `value`; otherwise exit 3 listing the places and the layout."""
    places = candidates(value)
    for place in places:
        if place.exists():
            return place
    searched = ", ".join(str(p) for p in places)
    raise DataError(
        f"dataset '{value}' not found",
        f"searched {searched}",
        f"Expected layout: {' '.join(layout.split())}. Pass a path to --data or set MLKIT_DATASETS.",
    )


def pick_dataset(found: list[str], requested: str | None, where: str | Path) -> str:
    """The one rule for folders that hold several datasets (Planetoid, TU, BMES variants, ...).

    `requested` (from --dataset) matches case-insensitively; without it a folder must hold exactly one. A miss
    or an ambiguous folder is a DataError (exit 3) that lists what the folder holds.
    """
    names = sorted(set(found))
    if not names:
        raise DataError("no dataset found", str(where), "Check the folder against the documented layout.")
    if requested:
        hits = [n for n in names if n.lower() == requested.lower()]
        if len(hits) == 1:
            return hits[0]
        raise DataError(f"no dataset '{requested}' here", str(where), f"This folder holds: {', '.join(names)}.")
    if len(names) > 1:
        raise DataError(f"the folder holds {len(names)} datasets: {', '.join(names)}", str(where),
                        "Pick one with --dataset NAME.")  # fmt: skip
    return names[0]


def check_classes(data_classes: int, model_classes: int, where: str | Path, what: str = "class") -> None:
    """The class-set rule of classification-like tasks: data whose labels the model cannot output is refused."""
    if data_classes > model_classes:
        raise DataError(f"the data has {data_classes} {what}es, the model knows {model_classes}", str(where),
                        f"Evaluate on data with the model's {what}es (label ids 0..{model_classes - 1}).")  # fmt: skip
