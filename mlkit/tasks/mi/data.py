"""mi data: the paired-array layouts, the known-truth generators (spec §3.1) and their oracle conditional sampler.

On-disk layouts (`--data`), the rows of x and y paired by position:
  <root>/x.npy + y.npy          2-D float arrays (N, dx) and (N, dy) (1-D is one column)
  <root>/x.csv + y.csv          comma-separated numbers, one row per line, an optional header line
  <root>/data.npz  or  FILE.npz arrays `x` and `y`
  <root>/truth.json (optional)  {"kind": "gaussian"|"cubic", "mi": I, "rho": r, "dim": d}: the known MI, which
                                 enables the per-term truth, the bias metrics and `--cond oracle`
The embedded default writes the Gaussian generator's rows as x.npy + y.npy + truth.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import DataError

KINDS = ("gaussian", "cubic")  # generators with a known conditional (the oracle) and per-term truth
VIEW_KINDS = ("digits", "markov")  # mlkit.tasks.mi.views
LAYOUT = "x.npy + y.npy, x.csv + y.csv, or data.npz (arrays x, y), with an optional truth.json"


# ------------------------------------------------------------------------------------------------ ground truth
def rho_of_mi(mi: float, dim: int) -> float:
    """Per-coordinate correlation giving I = -(d/2) log(1 - rho^2) nats."""
    return math.sqrt(1.0 - math.exp(-2.0 * mi / dim))


def mi_of_rho(rho: float, dim: int) -> float:
    """I(x; y) in nats of d independent coordinate pairs with correlation rho."""
    return -0.5 * dim * math.log(1.0 - rho * rho)


def cuts(dim: int, splits: int) -> list[int]:
    """Widths of the subviews x_1 ⊂ ... ⊂ x_s (prefixes of x's columns), as even as possible; the last is dim."""
    if not 1 <= splits <= dim:
        raise ValueError(f"splits must be in 1..{dim}")
    edges = np.linspace(0, dim, splits + 1).round().astype(int)
    return [int(e) for e in edges[1:]]


def term_truth(truth: dict | None, widths: list[int]) -> list[float] | None:
    """Ground truth of every chain term: coordinate pairs are independent, so term k = I * |new coords| / d."""
    if not truth or "mi" not in truth or "dim" not in truth:
        return None
    prev, out = 0, []
    for w in widths:
        out.append(float(truth["mi"]) * (w - prev) / int(truth["dim"]))
        prev = w
    return out


# ------------------------------------------------------------------------------------------------ generators
def sample(n: int, dim: int, rho: float, kind: str, gen: Any) -> tuple[Any, Any]:
    """n pairs of the spec's generator with a torch.Generator: x, eps ~ N(0, I), y = rho x + sqrt(1 - rho^2) eps."""
    import torch

    x = torch.randn(n, dim, generator=gen)
    y = rho * x + math.sqrt(1.0 - rho * rho) * torch.randn(n, dim, generator=gen)
    return x, (y**3 if kind == "cubic" else y)


def write_synth(root: Path, kind: str, mi: float, dim: int, rows: int, seed: int) -> Path:
    """Write `rows` pairs of the known-truth generator in the x.npy + y.npy + truth.json layout (digits and markov:
    mlkit.tasks.mi.views, which ignore mi and dim)."""
    import torch

    if kind in VIEW_KINDS:
        from mlkit.tasks.mi import views

        return (views.write_digits if kind == "digits" else views.write_markov)(root, rows, seed)

    rho = rho_of_mi(mi, dim)
    x, y = sample(rows, dim, rho, kind, torch.Generator().manual_seed(int(seed)))
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "x.npy", x.numpy().astype(np.float32))
    np.save(root / "y.npy", y.numpy().astype(np.float32))
    truth = {"kind": kind, "mi": float(mi), "rho": rho, "dim": int(dim), "rows": int(rows), "seed": int(seed)}
    (root / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return root


class Oracle:
    """Exact samples of y ~ p(y | x_{k-1}) for the known-truth generators (spec §3.1), in standardised units.

    Coordinates of the conditioning prefix get rho * x_i + sqrt(1 - rho^2) eps, the others N(0, 1); cubic
    cubes the result. x arrives standardised by (mx, sx); y leaves standardised by (my, sy).
    """

    def __init__(self, truth: dict, mx: Any, sx: Any, my: Any, sy: Any) -> None:
        self.kind, self.rho, self.dim = truth["kind"], float(truth["rho"]), int(truth["dim"])
        self.mx, self.sx, self.my, self.sy = mx, sx, my, sy

    def __call__(self, x_prefix: Any, n: int, gen: Any = None) -> Any:
        import torch

        m, w = x_prefix.shape
        raw = x_prefix * self.sx[:w] + self.mx[:w]
        eps = torch.randn(m, n, self.dim, generator=gen).to(x_prefix.device)
        mean = torch.zeros(m, 1, self.dim, device=x_prefix.device)
        mean[:, 0, :w] = self.rho * raw
        scale = torch.ones(self.dim, device=x_prefix.device)
        scale[:w] = math.sqrt(1.0 - self.rho**2)
        y = mean + scale * eps
        if self.kind == "cubic":
            y = y**3
        return (y - self.my) / self.sy


# ------------------------------------------------------------------------------------------------ loaders
def _check(a: np.ndarray, path: Path) -> np.ndarray:
    if a.dtype.kind not in "fiub":
        raise DataError(f"array has dtype {a.dtype}, not numbers", str(path), "Save a float array.")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise DataError(f"array has shape {a.shape}, need (rows, columns)", str(path), "Save a 2-D array.")
    a = a.astype(np.float32)
    bad = ~np.isfinite(a)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"array holds NaN or inf (first at row {row})", str(path), "Drop or impute those rows.")
    return a


def read_npy(path: Path) -> np.ndarray:
    """One .npy array (2-D or 1-D, numbers, finite); anything else is a DataError naming the file."""
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"not a readable .npy array: {str(exc)[:80]}", str(path), "Write it with numpy.save.") from None
    if not isinstance(a, np.ndarray):
        raise DataError("expected one .npy array", str(path), "Write it with numpy.save.")
    return _check(a, path)


def read_csv(path: Path) -> np.ndarray:
    """Comma-separated numbers, one row per line; a first line that is not numeric is a header."""
    rows: list[list[float]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", str(path), "Write the CSV as UTF-8.") from None
    width = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            if n == 1:
                continue
            raise DataError("non-numeric value", f"{path} line {n}", "Every row must be comma-separated numbers.") from None
        if width is not None and len(vals) != width:
            raise DataError(f"{len(vals)} columns, earlier rows have {width}", f"{path} line {n}",
                            "Give every row the same number of columns.")  # fmt: skip
        width = len(vals)
        rows.append(vals)
    if not rows:
        raise DataError("no data rows", str(path), "Write one row of numbers per line.")
    return _check(np.asarray(rows, dtype=np.float64), path)


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays `x` and `y` of one .npz file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"x", "y"} <= keys:
                raise DataError(f"needs arrays 'x' and 'y', has {sorted(keys)}", str(path),
                                "Save with numpy.savez(path, x=X, y=Y).")  # fmt: skip
            x, y = z["x"], z["y"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"not a readable .npz file: {str(exc)[:80]}", str(path), "Write it with numpy.savez.") from None
    return _check(x, Path(f"{path}:x")), _check(y, Path(f"{path}:y"))


def read_array(path: Path) -> np.ndarray:
    """One side of a pair by extension: .npy, .csv, or a single-array .npz."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", str(path), "Pass an existing .npy, .npz or .csv file.")
    ext = path.suffix.lower()
    if ext == ".npy":
        return read_npy(path)
    if ext == ".csv":
        return read_csv(path)
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise DataError(f"holds {len(z.files)} arrays, expected one", str(path), "Save one array per file.")
                a = z[z.files[0]]
        except DataError:
            raise
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"not a readable .npz file: {str(exc)[:80]}", str(path), "Write it with numpy.savez.") from None
        return _check(a, path)
    raise DataError(f"unknown file type '{ext}'", str(path), "Use .npy, .npz or .csv.")


def pair(xp: Path, yp: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an (x, y) pair of files; their row counts must match (else a DataError naming the y file)."""
    x, y = read_array(xp), read_array(yp)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{y.shape[0]} rows, but {xp} has {x.shape[0]}", str(yp),
                        "Row i of x must pair with row i of y: give both files the same rows.")  # fmt: skip
    return x, y


def read_truth(path: Path) -> dict | None:
    """truth.json (optional): the known MI of a synthetic set; malformed is a DataError."""
    if not path.is_file():
        return None
    try:
        t = json.loads(path.read_text(encoding="utf-8"))
        ok = isinstance(t, dict) and float(t["mi"]) >= 0 and int(t.get("dim", 1)) >= 1
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise DataError("truth.json needs {\"mi\": nats, ...}", str(path), "Fix or delete truth.json.")
    if t.get("kind") is not None and (t["kind"] not in KINDS or "rho" not in t):
        raise DataError(f"truth.json kind must be one of {KINDS} with a rho", str(path), "Fix or delete truth.json.")
    return t


def load(root: Path) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """x, y (float32, same rows) and the optional truth from a --data folder or .npz file."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() != ".npz":
            raise DataError("a single --data file must be .npz with arrays x and y", str(root), f"Or a folder: {LAYOUT}.")
        x, y = read_npz(root)
        return x, y, read_truth(root.with_name("truth.json"))
    for xn, yn in (("x.npy", "y.npy"), ("x.csv", "y.csv")):
        if (root / xn).is_file() or (root / yn).is_file():
            x, y = pair(root / xn, root / yn)
            return x, y, read_truth(root / "truth.json")
    if (root / "data.npz").is_file():
        x, y = read_npz(root / "data.npz")
        return x, y, read_truth(root / "truth.json")
    raise DataError("no paired arrays found", str(root), f"Expected layout: {LAYOUT}.")
