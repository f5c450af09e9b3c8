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
