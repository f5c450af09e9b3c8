"""Reading graph files safely: every low-level failure becomes a one-line DataError naming the file (exit 3),
and a loaded Graph is checked (numeric finite features, one row per node, split ids and edge ids in range)."""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import DataError

READ_ERRORS = (ValueError, TypeError, IndexError, KeyError, EOFError, OSError, AttributeError, OverflowError,
               zipfile.BadZipFile, UnicodeDecodeError, pickle.UnpicklingError)  # fmt: skip


@contextlib.contextmanager
def reading(path: Path | str, fix: str = "Check the file against the documented layout.") -> Iterator[None]:
    """Turn a parser's low-level exception inside the block into a DataError naming `path`."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError("file not found", str(exc.filename or path), fix) from None
    except READ_ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {Path(path).name}: {msg}", str(path), fix) from None


def load_npy(path: Path, mmap: bool = True) -> np.ndarray:
    """np.load of a .npy (memory-mapped when asked), no pickles; a truncated or foreign file is exit 3."""
    with reading(path, "Write it with numpy.save (a numeric array, no pickled objects)."):
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a .npz as a dict (no pickles)."""
    with reading(path, "Write it with numpy.savez (numeric arrays, no pickled objects)."):
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}


def read_json(path: Path) -> Any:
    """Parse a JSON file; bad JSON names the file and line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", f"{path} line {exc.lineno}", "Fix the JSON syntax.") from None
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", str(path), "Save the file as UTF-8.") from None


def numeric(arr: np.ndarray, what: str, where: str) -> np.ndarray:
    """Refuse arrays that are not numbers (strings, objects)."""
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(f"{what} must be numeric, got dtype {arr.dtype}", where, f"Store {what} as numbers.")
    return arr


def finite_rows(arr: np.ndarray, what: str, where: str, block: int = 1 << 16) -> None:
    """Refuse NaN or infinite values, naming the first bad row (checked block by block: memmaps stay cheap)."""
    if not np.issubdtype(arr.dtype, np.floating):
        return
    for s in range(0, arr.shape[0], block):
        part = np.asarray(arr[s : s + block])
        bad = ~np.isfinite(part)
        if bad.any():
            row = s + int(np.flatnonzero(bad.reshape(part.shape[0], -1).any(1))[0])
            raise DataError(f"{what} hold NaN or infinite values (row {row})", where,
                            "Clean or impute the values before training.")  # fmt: skip


def check_graph(g: Any, where: str) -> Any:
    """Check a loaded Graph's arrays against each other; raise DataError naming `where`."""
    n = int(g.num_nodes)
    if n < 1:
        raise DataError("the graph has no nodes", where, "Check the node count and the edge files.")
    if g.features is not None:
        numeric(g.features, "features", where)
        if g.features.ndim != 2 or g.features.shape[0] != n:
            raise DataError(f"features have shape {g.features.shape} for {n} nodes", where, "One row per node.")
        finite_rows(g.features, "features", where)
    if g.labels is not None:
        numeric(g.labels, "labels", where)
        if g.labels.shape[0] != n:
            raise DataError(f"labels have {g.labels.shape[0]} rows for {n} nodes", where, "One label per node.")
    if g.indices.shape[0]:
        lo, hi = int(np.min(g.indices)), int(np.max(g.indices))
        if lo < 0 or hi >= n:
            raise DataError(f"edge endpoint {hi if hi >= n else lo} outside 0..{n - 1}", where,
                            "Number nodes 0..n-1 (or fix the node count).")  # fmt: skip
    for split in ("train", "val", "test"):
        ids = getattr(g, f"{split}_idx")
        if ids is None or ids.shape[0] == 0:
            continue
        numeric(ids, f"{split} split", where)
        if int(ids.min()) < 0 or int(ids.max()) >= n:
            bad = int(ids.max()) if int(ids.max()) >= n else int(ids.min())
            raise DataError(f"{split} split holds node id {bad}, outside 0..{n - 1}", where,
                            "Split ids must be node ids of this graph.")  # fmt: skip
    return g
