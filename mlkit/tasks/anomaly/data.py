"""MVTec 3D-AD layout: category discovery, sample lists with layout checks, and per-sample loading (spec §2.2, §3)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mlkit.core.errors import DataError

MVTEC3D = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire")
EYECANDIES = ("CandyCane", "ChocolateCookie", "ChocolatePraline", "Confetto", "GummyBear", "HazelnutTruffle",
              "LicoriceSandwich", "Lollipop", "Marshmallow", "PeppermintCandy")  # fmt: skip
LAYOUT = "<root>/<category>/{train,validation}/good/{rgb/NNN.png,xyz/NNN.tiff}, <root>/<category>/test/<defect>/{rgb,xyz,gt}/"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class Sample:
    """One rgb/xyz pair (and gt for test), with its defect folder and label (good = 0)."""

    rgb: Path
    xyz: Path
    gt: Path | None
    defect: str
    label: int

    @property
    def name(self) -> str:
        return f"{self.defect}_{self.rgb.stem}"


def categories(root: Path) -> list[str]:
    """Category folders under `root` (a folder with train/), sorted; `root` itself if it is a category."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}", None, f"Expected layout: {LAYOUT}")
    if (root / "train").is_dir():
        return [root.name]
    found = sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
    if not found:
        raise DataError("no category folder with train/ found", str(root), f"Expected layout: {LAYOUT}")
    return found


def category_dir(root: Path, category: str) -> Path:
    """The folder of one category (`root` itself when it is a category folder)."""
    root = Path(root)
    return root if (root / "train").is_dir() and root.name == category else root / category


def pick_categories(value: str, available: list[str]) -> list[str]:
    """Resolve --category: all, one name, or a comma list; unknown names exit 3 with the available ones."""
    if value in ("all", "", None):
        return available
    wanted = [v.strip() for v in str(value).split(",") if v.strip()]
    missing = [w for w in wanted if w not in available]
    if missing:
        raise DataError(
            f"category not found: {', '.join(missing)}", None, f"Available: {', '.join(available)}."
        )
    return wanted


def split_samples(cat: Path, split: str) -> list[Sample]:
    """Samples of train | validation | test, checking folders and rgb/xyz name pairing (exit 3 names the file)."""
    if split in ("train", "validation"):
        folders = [cat / split / "good"]
    else:
        test = cat / "test"
        if not test.is_dir():
            raise DataError("missing test/ folder", str(test), f"Expected layout: {LAYOUT}")
        folders = sorted(p for p in test.iterdir() if p.is_dir())
    out: list[Sample] = []
    for folder in folders:
        out += _folder_samples(folder, with_gt=split == "test")
    return out


def _folder_samples(folder: Path, with_gt: bool) -> list[Sample]:
    for sub in ("rgb", "xyz"):
        if not (folder / sub).is_dir():
            raise DataError(f"missing {sub}/ folder", str(folder / sub), f"Expected layout: {LAYOUT}")
    rgbs = sorted(p for p in (folder / "rgb").glob("*.png") if p.is_file())
    xyzs = sorted(
        p for p in [*(folder / "xyz").glob("*.tiff"), *(folder / "xyz").glob("*.tif")] if p.is_file()
    )
    if not rgbs:
        raise DataError("no .png images", str(folder / "rgb"), f"Expected layout: {LAYOUT}")
    by_stem = {p.stem: p for p in xyzs}
    for p in rgbs:
        if p.stem not in by_stem:
            raise DataError(
                f"rgb {p.name} has no xyz {p.stem}.tiff",
                str(folder / "xyz"),
                "Pair every rgb/NNN.png with xyz/NNN.tiff.",
            )
    extra = sorted(set(by_stem) - {p.stem for p in rgbs})
    if extra:
        raise DataError(
            f"xyz {extra[0]}.tiff has no rgb {extra[0]}.png",
            str(folder / "rgb"),
            "Pair every xyz/NNN.tiff with rgb/NNN.png.",
        )
    defect = folder.name
    label = 0 if defect == "good" else 1
    samples = []
    for p in rgbs:
        gt = folder / "gt" / f"{p.stem}.png"
        if with_gt and label == 1 and not gt.is_file():
            raise DataError(
                f"missing ground truth {gt.name}", str(folder / "gt"), "Every defect image needs gt/NNN.png."
            )
        samples.append(Sample(p, by_stem[p.stem], gt if (with_gt and gt.is_file()) else None, defect, label))
    return samples


def os_fault(exc: BaseException) -> bool:
    """An error of the environment (permission, missing file, I/O): the CLI prints it naming the path (exit 1)."""
    return isinstance(exc, OSError) and getattr(exc, "errno", None) is not None


@contextmanager
def tiff_quiet() -> Iterator[None]:
    """Mute tifffile's own log lines about a broken file: the DataError that follows names it on one line."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def read_xyz(path: Path) -> np.ndarray:
    """An organised cloud H x W x 3 float32 from a TIFF (NaN -> 0 = missing); a bad file exits 3 naming it."""
    import tifffile

    fix = "Re-export it as a float32 H x W x 3 TIFF."
    try:
        with tiff_quiet():
            xyz = tifffile.imread(str(path))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input data
        if os_fault(exc):
            raise
        raise DataError(f"cannot read xyz TIFF ({type(exc).__name__})", str(path), fix) from None
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise DataError(f"xyz TIFF has shape {xyz.shape}, not H x W x 3", str(path), fix)
    if xyz.dtype.kind != "f":
        raise DataError(f"xyz TIFF holds {xyz.dtype}, not float32 coordinates", str(path), fix)
    if not np.isfinite(xyz).any():
        raise DataError("xyz TIFF holds no finite point (all NaN)", str(path), fix)
    return np.nan_to_num(xyz.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)


def read_rgb(path: Path, what: str = "image", mode: str = "RGB") -> Image.Image:
    """An image converted to `mode`; unreadable files exit 3 naming them."""
    try:
        with Image.open(path) as im:
            return im.convert(mode)
    except Exception as exc:  # noqa: BLE001
        if os_fault(exc):
            raise
        raise DataError(
            f"cannot read {what} ({type(exc).__name__})", str(path), "Pass an 8-bit PNG."
        ) from None


def nearest_resize(a: np.ndarray, size: int) -> np.ndarray:
    """torch `interpolate(mode='nearest')` on the first two axes: source index floor(i * in / out)."""
    rows = np.floor(np.arange(size) * (a.shape[0] / size)).astype(np.int64)
    cols = np.floor(np.arange(size) * (a.shape[1] / size)).astype(np.int64)
    return a[rows][:, cols]


def load(sample: Sample, size: int = 224) -> dict[str, np.ndarray]:
    """rgb float32 (size,size,3) in [0,1] (bicubic), xyz (size,size,3) (nearest), gt bool (size,size), valid mask."""
    rgb_im = read_rgb(sample.rgb)
    xyz_full = read_xyz(sample.xyz)
    if xyz_full.shape[:2] != (rgb_im.height, rgb_im.width):
        raise DataError(
            f"xyz is {xyz_full.shape[1]}x{xyz_full.shape[0]} but rgb is {rgb_im.width}x{rgb_im.height}",
            str(sample.xyz),
            "rgb and xyz must have the same resolution.",
        )
    rgb = np.asarray(rgb_im.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0
    xyz = nearest_resize(xyz_full, size)
    if sample.gt is not None:
        g = read_rgb(sample.gt, "ground truth", "L")
        gt = np.asarray(g.resize((size, size), Image.NEAREST)) / 255.0 > 0.5
    else:
        gt = np.zeros((size, size), dtype=bool)
    return {"rgb": rgb, "xyz": xyz, "gt": gt, "valid": np.all(xyz != 0, axis=-1)}


def pair_from_line(line: str) -> tuple[Path, Path]:
    """A predict record: 'rgb.png<TAB or space>xyz.tiff', or one path whose partner sits in ../rgb or ../xyz."""
    parts = line.split("\t") if "\t" in line else line.split()
    parts = [p.strip() for p in parts if p.strip()]
    if len(parts) == 2:
        a, b = Path(parts[0]), Path(parts[1])
        rgb, xyz = (a, b) if a.suffix.lower() == ".png" else (b, a)
    elif len(parts) == 1 or (len(parts) > 2 and Path(line.strip()).exists()):
        p = Path(line.strip())
        if p.suffix.lower() == ".png":
            rgb, xyz = p, p.parent.parent / "xyz" / f"{p.stem}.tiff"
        else:
            rgb, xyz = p.parent.parent / "rgb" / f"{p.stem}.png", p
    else:
        raise DataError(
            "bad predict record", line[:80], "Give 'rgb.png<TAB>xyz.tiff' or one rgb/xyz path per line."
        )
    for p in (rgb, xyz):
        if not p.is_file():
            raise DataError(f"file not found: {p}", line[:80], "Give 'rgb.png<TAB>xyz.tiff' per line.")
    return rgb, xyz


def pairs_under(folder: Path, pattern: str = "**/rgb/*.png") -> Iterator[str]:
    """'rgb.png<TAB>xyz.tiff' for every rgb image under folder (sorted) that has its xyz partner."""
    for p in sorted(Path(folder).glob(pattern)):
        x = p.parent.parent / "xyz" / f"{p.stem}.tiff"
        if x.is_file():
            yield f"{p}\t{x}"
