"""Up-front checks of an MVTec 3D-AD folder: every file's header and shape before any extraction (exit 3 names it).

PNG: PIL reads the header (size) and `verify()` walks the chunks and their CRCs without decoding the pixels, so a
text file or a truncated PNG fails here. TIFF: tifffile reads the tags (shape, dtype) and the strip offsets, which
must lie inside the file; a strided sample of an uncompressed cloud (memory-mapped: a few pages) catches an
all-NaN file. rgb, xyz and gt of one sample must have the same H x W. An OS fault (permission, I/O error) is not
bad data: it propagates, and the CLI prints one line naming the path (exit 1).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlkit.core.errors import DataError
from mlkit.tasks.anomaly.data import Sample, category_dir, os_fault, split_samples, tiff_quiet

FIX_PNG = "Replace it with an 8-bit PNG of the same H x W as its xyz TIFF."
FIX_XYZ = "Re-export it as a float32 H x W x 3 TIFF (x, y, z in metres, 0 for a missing point)."


def _why(exc: BaseException) -> str:
    import tifffile

    if isinstance(exc, UnidentifiedImageError):
        return "not an image file"
    if isinstance(exc, (tifffile.TiffFileError, IndexError)):  # IndexError: a header with no readable page
        return f"not a TIFF or a broken header: {str(exc).splitlines()[0][:60] if str(exc) else 'no page'}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"corrupt or truncated: {type(exc).__name__}{': ' + text[:60] if text else ''}"


def png_size(path: Path, what: str = "rgb") -> tuple[int, int]:
    """(width, height) of an image after PIL's verify (header and chunk CRCs, no pixel decoding)."""
    try:
        with Image.open(path) as im:
            size = im.size
            im.verify()
    except Exception as exc:  # noqa: BLE001 - every decoder failure is bad input data
        if os_fault(exc):
            raise
        raise DataError(f"{what} image is unreadable ({_why(exc)})", str(path), FIX_PNG) from None
    return size


def xyz_shape(path: Path) -> tuple[int, int]:
    """(H, W) of an organised cloud TIFF from its tags: HxWx3, a float dtype, strips inside the file, not all NaN."""
    import tifffile

    try:
        with tiff_quiet(), tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            end = max((o + c for p in series.pages if p is not None
                       for o, c in zip(p.dataoffsets, p.databytecounts)), default=0)  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        if os_fault(exc):
            raise
        raise DataError(f"xyz TIFF is unreadable ({_why(exc)})", str(path), FIX_XYZ) from None
    if len(shape) != 3 or shape[-1] != 3:
        raise DataError(f"xyz TIFF has shape {shape}, not H x W x 3", str(path), FIX_XYZ)
    if dtype.kind != "f":
        raise DataError(f"xyz TIFF holds {dtype}, not float32 coordinates", str(path), FIX_XYZ)
    size = Path(path).stat().st_size
    if end > size:
        raise DataError(f"xyz TIFF is truncated ({size} bytes, its strips end at {end})", str(path), FIX_XYZ)
    if _sample_all_nan(path) and not np.isfinite(read_raw(path)).any():
        raise DataError("xyz TIFF holds no finite point (all NaN)", str(path), FIX_XYZ)
    return shape[0], shape[1]


def _sample_all_nan(path: Path, n: int = 4096) -> bool:
    """True when a strided sample of an uncompressed cloud is all NaN (then the caller reads the whole file)."""
    import tifffile

    try:
        with tiff_quiet():
            mm = tifffile.memmap(path, mode="r")
    except Exception:  # noqa: BLE001 - compressed or tiled: the full check waits for data.read_xyz
        return False
    flat = mm.reshape(-1)
    return flat.size > 0 and not np.isfinite(np.asarray(flat[:: max(1, flat.size // n)])).any()


def read_raw(path: Path) -> np.ndarray:
    import tifffile

    with tiff_quiet():
        return tifffile.imread(path)


def check_sample(rgb: Path, xyz: Path, gt: Path | None) -> None:
    """One sample's three files: readable headers, xyz H x W x 3 float, and one H x W for all of them."""
    w, h = png_size(rgb, "rgb")
    xh, xw = xyz_shape(xyz)
    if (xh, xw) != (h, w):
        raise DataError(f"xyz is {xw}x{xh} but its rgb {rgb.name} is {w}x{h}", str(xyz),
                        "rgb, xyz and gt of one sample must have the same resolution.")  # fmt: skip
    if gt is not None:
        gw, gh = png_size(gt, "ground-truth")
        if (gw, gh) != (w, h):
            raise DataError(f"ground-truth mask is {gw}x{gh} but its rgb {rgb.name} is {w}x{h}", str(gt),
                            "Every gt/NNN.png must have the size of rgb/NNN.png.")  # fmt: skip


def check_samples(samples: Iterable[Sample]) -> int:
    """Check every sample; returns how many files were read."""
    n = 0
    for s in samples:
        check_sample(s.rgb, s.xyz, s.gt)
        n += 3 if s.gt is not None else 2
    return n


def check_categories(root: Path, cats: list[str], splits: tuple[str, ...], max_train: int = 0, log: Any = None,
                     optional: tuple[str, ...] = ("validation",)) -> None:  # fmt: skip
    """List and check the given splits of every category before extraction (`optional` splits only where present)."""
    t0, n = time.perf_counter(), 0
    for cat in cats:
        cdir = category_dir(root, cat)
        for split in splits:
            if split in optional and not (cdir / split).is_dir():
                continue
            samples = split_samples(cdir, split)
            if split == "train" and max_train > 0:
                samples = samples[:max_train]
            n += check_samples(samples)
    if log is not None:
        log(f"checked {n} files of {len(cats)} categories in {time.perf_counter() - t0:.1f} s")
