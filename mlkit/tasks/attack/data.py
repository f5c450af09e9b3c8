"""Data of `mlkit attack`: MNIST idx files (plain or .gz), parsed strictly, and the seeded `digits` default.

The idx layout (LeCun's MNIST files): a big-endian header, then uint8 pixels.
  images: int32 magic 2051 (0x00000803), int32 n, int32 rows, int32 cols, n*rows*cols bytes
  labels: int32 magic 2049 (0x00000801), int32 n, n bytes (0..9)
Files: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each
optionally gzipped with a `.gz` suffix. The embedded default is written in exactly that layout.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlkit.core.errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
GENERATOR_VERSION = 2  # part of the embedded default's cache key: bump when render_digits changes
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # fmt: skip
LAYOUT = ("<root>/train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
          "(MNIST idx, each optionally .gz)")  # fmt: skip


@dataclass
class Split:
    x: np.ndarray  # (n, 1, h, w) float32 in [0, 1]
    y: np.ndarray  # (n,) int64


@dataclass
class Digits:
    root: Path
    train: Split
    test: Split
    classes: list[str] = field(default_factory=lambda: [str(c) for c in range(10)])
    layout: str = "mnist"  # mnist | cifar10 | cifar100 | folder


# ------------------------------------------------------------------------------------------------ idx
def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read idx file ({e.__class__.__name__}: {e})", str(path),
                        "Give an MNIST idx file, plain or gzip-compressed.") from None  # fmt: skip


def read_idx(path: Path, kind: str) -> np.ndarray:
    """An idx file's array, checked: magic (2051 images / 2049 labels), dimensions, exact payload length."""
    raw = _read_bytes(path)
    magic_want, ndim = (IMAGES_MAGIC, 3) if kind == "images" else (LABELS_MAGIC, 1)
    head = 4 + 4 * ndim
    if len(raw) < 4:
        raise DataError(f"idx file too short ({len(raw)} bytes)", str(path), "The file is truncated or empty.")
    (magic,) = struct.unpack(">i", raw[:4])
    if magic != magic_want:
        raise DataError(f"bad idx magic number {magic} for {kind} (expected {magic_want})", str(path),
                        f"Give an MNIST {kind} file (idx{ndim}-ubyte).")  # fmt: skip
    if len(raw) < head:
        raise DataError(f"idx header truncated ({len(raw)} of {head} bytes)", str(path), "The file is truncated.")
    dims = struct.unpack(">" + "i" * ndim, raw[4:head])
    if any(d < 0 for d in dims) or (ndim == 3 and (dims[1] < 1 or dims[2] < 1)):
        raise DataError(f"bad idx dimensions {dims}", str(path), "The header is corrupt.")
    want = int(np.prod(dims))
    if len(raw) - head != want:
        what = "truncated" if len(raw) - head < want else "has trailing bytes"
        raise DataError(f"idx payload {what}: {len(raw) - head} bytes for dimensions {dims} ({want} expected)",
                        str(path), "Re-download or re-extract the file.")  # fmt: skip
    arr = np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)
    if kind == "labels" and arr.size and int(arr.max()) > 9:
        raise DataError(f"label {int(arr.max())} out of range 0..9", str(path), "Labels must be digits 0..9.")
    return arr


def write_idx(path: Path, arr: np.ndarray, compress: bool = False) -> Path:
    """Write uint8 images (n, h, w) or labels (n,) in the idx layout (gzip when `compress`)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    magic = IMAGES_MAGIC if arr.ndim == 3 else LABELS_MAGIC
    body = struct.pack(">i" + "i" * arr.ndim, magic, *arr.shape) + arr.tobytes()
    path = Path(str(path) + ".gz") if compress else Path(path)
    if compress:
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(body)
    else:
        path.write_bytes(body)
    return path


def _find(root: Path, name: str) -> Path:
    for cand in (root / name, root / f"{name}.gz", root / name.replace("-idx", ".idx")):
        if cand.is_file():
            return cand
    raise DataError(f"missing {name}[.gz]", str(root), f"Expected the MNIST idx layout: {LAYOUT}.")


def load_split(root: Path, split: str) -> Split:
    img_name, lab_name = SPLITS[split]
    ip, lp = _find(root, img_name), _find(root, lab_name)
    images, labels = read_idx(ip, "images"), read_idx(lp, "labels")
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels", str(lp), "The two files must match.")
    if len(images) == 0:
        raise DataError("no images", str(ip), "The split is empty.")
    x = (images.astype(np.float32) / 255.0)[:, None]
    return Split(x, labels.astype(np.int64))


def load_mnist(root: Path) -> Digits:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError("dataset folder not found", str(root), f"Give --data a folder in the layout {LAYOUT}.")
    tr, te = load_split(root, "train"), load_split(root, "test")
    if tr.x.shape[1:] != te.x.shape[1:]:
        raise DataError(f"train images {tr.x.shape[2:]} and test images {te.x.shape[2:]} differ in size", str(root))
    return Digits(root, tr, te)


def is_mnist(root: Path) -> bool:
    return any((root / f"{SPLITS['train'][0]}{s}").is_file() for s in ("", ".gz")) or \
        (root / SPLITS["train"][0].replace("-idx", ".idx")).is_file()  # fmt: skip


def load_any(root: Path, image_size: int = 0, folder_test: float = 0.2, seed: int = 0) -> Digits:
    """MNIST idx, CIFAR pickles or image folders (see images.py), detected in that order; x float32 in [0, 1]."""
    from mlkit.tasks.attack import images as I

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError("dataset folder not found", str(root), f"Give --data a folder: {LAYOUT}; or {I.LAYOUT}.")
    if is_mnist(root):
        return load_mnist(root)
    which = I.kind(root)
    if which is None:
        raise DataError("cannot tell the data layout", str(root), f"Expected {LAYOUT}; or {I.LAYOUT}.")
    if which == "folder":
        xtr, ytr, xte, yte, names = I.read_folders(root, image_size, folder_test, seed)
    else:
        xtr, ytr, xte, yte, names = I.read_cifar(root)
    f = lambda a: a.astype(np.float32) / 255.0  # noqa: E731
    return Digits(root, Split(f(xtr), ytr.astype(np.int64)), Split(f(xte), yte.astype(np.int64)), list(names), which)


# ------------------------------------------------------------------------------------------------ digits
def render_digits(n: int, seed: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """n seeded digit images (uint8, size x size) with labels 0..9 balanced: a font glyph drawn with random
    size, stroke width, rotation, shear and offset, then blurred and speckled; handwriting-like variety."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    big = 4 * size
    fonts = {s: ImageFont.load_default(size=s) for s in range(84, 112, 4)}
    out = np.zeros((n, size, size), dtype=np.uint8)
    for i, lab in enumerate(labels):
        im = Image.new("L", (big, big))
        font = fonts[int(rng.choice(list(fonts)))]
        d = ImageDraw.Draw(im)
        cx, cy = big / 2 + rng.normal(0, 4), big / 2 + rng.normal(0, 4)
        d.text((cx, cy), str(int(lab)), font=font, fill=255, anchor="mm", stroke_width=int(rng.integers(1, 7)),
               stroke_fill=255)  # fmt: skip
        rot, shear = rng.normal(0, 10), rng.normal(0, 0.15)
        im = im.rotate(rot, resample=Image.BILINEAR, center=(big / 2, big / 2))
        im = im.transform((big, big), Image.AFFINE, (1, shear, -shear * big / 2, 0, 1, 0), resample=Image.BILINEAR)
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0))).resize((size, size), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) * rng.uniform(0.8, 1.0)
        a += (rng.random((size, size)) < 0.005) * rng.uniform(0, 200)
        out[i] = np.clip(a, 0, 255).astype(np.uint8)
    return out, labels.astype(np.uint8)


def write_digits(folder: Path, train: int, test: int, seed: int) -> None:
    """The embedded default: seeded digits written as the four MNIST idx files (train gz, test plain)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, y = render_digits(train + test, seed)
    write_idx(folder / SPLITS["train"][0], x[:train], compress=True)
    write_idx(folder / SPLITS["train"][1], y[:train], compress=True)
    write_idx(folder / SPLITS["test"][0], x[train:])
    write_idx(folder / SPLITS["test"][1], y[train:])
