"""longtail data (spec §3): CIFAR-10/100 python pickles with the exponential / step LT constructions, OLTR-style
split files (ImageNet-LT, Places-LT, iNat18), ImageFolder trees, and the embedded default (sklearn's 8x8 digits
written as a CIFAR-10 pickle folder). Every reader raises DataError (exit 3) naming the file (and line)."""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import DataError

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
C10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
LAYOUT = (
    "cifar10: <root>/{data_batch_1..5,test_batch,batches.meta} (or <root>/cifar-10-batches-py/); cifar100: "
    "<root>/{train,test,meta} (or <root>/cifar-100-python/); split: --split-file LIST (+ --test-split-file, "
    "--root) with 'relative/path.jpg label' lines; folder: <root>/train/<class>/*.jpg and <root>/val|test/<class>/"
)


# ------------------------------------------------------------------------------------------------ containers
@dataclass
class Split:
    """Images of one split: uint8 arrays (N, H, W, 3) in memory, or image paths read on access."""

    labels: np.ndarray
    arrays: np.ndarray | None = None
    paths: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> Any:
        """Item i as an RGB PIL image (DataError for a file that cannot be decoded)."""
        from PIL import Image

        if self.arrays is not None:
            return Image.fromarray(self.arrays[i])
        return read_image(self.paths[i])  # type: ignore[index]

    def subset(self, idx: np.ndarray) -> Split:
        return Split(
            self.labels[idx],
            None if self.arrays is None else self.arrays[idx],
            None if self.paths is None else [self.paths[int(i)] for i in idx],
        )


@dataclass
class LTData:
    train: Split
    test: Split
    val: Split
    classes: list[str]
    source: str
    subset: list[int] = field(default_factory=list)  # LT construction: kept indices of the source train set

    @property
    def counts(self) -> np.ndarray:
        """n_j of the training list (after any LT subsampling): the prior of Bal-BCE / Bal-CE."""
        return np.bincount(self.train.labels, minlength=len(self.classes)).astype(np.int64)


def read_image(path: Path) -> Any:
    """An RGB PIL image; DataError naming the file when it is missing or cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise DataError(
            "image not found", str(path), "Check the path (split files are relative to --root)."
        ) from None
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(
            f"cannot decode image ({type(e).__name__})", str(path), "Replace or remove it."
        ) from None


# ------------------------------------------------------------------------------------------------ LT construction
def lt_counts(n_max: int, num_classes: int, rho: float, profile: str = "exp") -> list[int]:
    """Per-class counts, class 0 the head: exp n_i = floor(n_max rho^(-i/(C-1))); step: half n_max, half n_max/rho."""
    c = int(num_classes)
    if profile == "exp":
        return [int(n_max * rho ** (-i / max(c - 1, 1))) for i in range(c)]
    if profile == "step":
        return [int(n_max) if i < c // 2 else int(n_max / rho) for i in range(c)]
    raise ValueError(f"unknown LT profile {profile!r}")


def lt_subset(labels: np.ndarray, counts: list[int], seed: int = 0, where: str = "") -> np.ndarray:
    """Indices kept: for each class in order, shuffle its indices (numpy RandomState(seed)) and keep the first n_i."""
    rng = np.random.RandomState(seed)
    keep = []
    for c, n in enumerate(counts):
        idx = np.where(labels == c)[0]
        if len(idx) < n:
            raise DataError(f"class {c} has {len(idx)} train images, the LT profile asks for {n}", where,
                            "Lower lt.n_max (0 = the smallest class) or lt.rho.")  # fmt: skip
        rng.shuffle(idx)
        keep.append(idx[:n])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------------ CIFAR pickles
class _Unpickler(pickle.Unpickler):
    """CIFAR pickles hold dicts of bytes, lists and numpy arrays: nothing else is constructed (no code runs)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR pickle")
        if module.startswith("numpy"):
            import importlib

            mod = module.replace("numpy.core", "numpy._core") if hasattr(np, "_core") else module
            return getattr(importlib.import_module(mod), name)
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    """One CIFAR pickle (latin1/bytes keys), DataError naming the file when missing, truncated or not a dict."""
    if not path.is_file():
        raise DataError("CIFAR pickle not found", str(path), f"Expected layout: {LAYOUT}.")
    try:
        body = _Unpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as e:  # truncated (EOFError), garbled (UnpicklingError, ValueError, ...)
        raise DataError(f"cannot read CIFAR pickle ({type(e).__name__})", str(path),
                        "The file is truncated or not a CIFAR python pickle; download it again.") from None  # fmt: skip
    if not isinstance(body, dict):
        raise DataError("CIFAR pickle does not hold a dict", str(path), "Use the python version of CIFAR.")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in body.items()}


def _batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    body = read_pickle(path)
    if "data" not in body or label_key not in body:
        raise DataError(
            f"CIFAR pickle lacks 'data' or '{label_key}'", str(path), "Use the python version of CIFAR."
        )
    data = np.asarray(body["data"])
    labels = np.asarray(body[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(f"CIFAR 'data' must be uint8 N x 3072 with N labels, got {data.dtype} {data.shape} and "
                        f"{len(labels)} labels", str(path), "Use the python version of CIFAR.")  # fmt: skip
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"label {int(labels.max())} outside 0..{num_classes - 1}", str(path), "Fix the labels."
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels  # channel-planar rows -> HWC


def _names(path: Path, key: str, num_classes: int) -> list[str]:
    if not path.is_file():
        return [str(i) for i in range(num_classes)]
    names = read_pickle(path).get(key) or []
    names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    return names if len(names) == num_classes else [str(i) for i in range(num_classes)]


def cifar_kind(root: Path) -> tuple[str, Path] | None:
    """('cifar10' | 'cifar100', folder) when root (or its standard sub-folder) holds CIFAR pickles."""
    for sub, kind, probe in (
        ("cifar-10-batches-py", "cifar10", "data_batch_1"),
        ("cifar-100-python", "cifar100", "meta"),
    ):
        for folder in (root, root / sub):
            if (folder / probe).exists() and (kind == "cifar10" or (folder / "train").exists()):
                return kind, folder
    return None


def read_cifar(root: Path, kind: str) -> tuple[Split, Split, list[str]]:
    """(balanced train, test, class names) of a CIFAR-10/100 python folder."""
    if kind == "cifar10":
        parts = [_batch(root / n, "labels", 10) for n in C10_TRAIN]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = _batch(root / "test_batch", "labels", 10)
        names = _names(root / "batches.meta", "label_names", 10)
    else:
        train = _batch(root / "train", "fine_labels", 100)
        test = _batch(root / "test", "fine_labels", 100)
        names = _names(root / "meta", "fine_label_names", 100)
    return Split(train[1], train[0]), Split(test[1], test[0]), names


def write_cifar10(root: Path, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                  names: list[str]) -> None:  # fmt: skip
    """Write HWC uint8 32x32 images as the CIFAR-10 python folder (5 train batches, test_batch, batches.meta)."""
    root.mkdir(parents=True, exist_ok=True)

    def dump(path: Path, x: np.ndarray, y: np.ndarray, tag: str) -> None:
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072).astype(np.uint8)
        body = {b"batch_label": tag.encode(), b"labels": [int(v) for v in y], b"data": rows,
                b"filenames": [f"{tag.replace(' ', '_')}_{i:05d}.png".encode() for i in range(len(y))]}  # fmt: skip
        with open(path, "wb") as f:
            pickle.dump(body, f, protocol=2)

    for i, part in enumerate(np.array_split(np.arange(len(train_y)), 5)):
        dump(root / C10_TRAIN[i], train_x[part], train_y[part], f"training batch {i + 1} of 5")
    dump(root / "test_batch", test_x, test_y, "testing batch 1 of 1")
    meta = {b"num_cases_per_batch": int(np.ceil(len(train_y) / 5)), b"label_names": [n.encode() for n in names],
            b"num_vis": 3072}  # fmt: skip
    with open(root / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)


def write_default(root: Path, test_per_class: int = 50, seed: int = 0) -> None:
    """The embedded default: sklearn's 1,797 real 8x8 digits, upsampled to 32x32 RGB, written as a CIFAR-10 folder
    (per class `test_per_class` held out, seeded, as the balanced test_batch; the rest in data_batch_1..5)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.stack([np.asarray(Image.fromarray((im * 255 / 16).astype(np.uint8)).resize((32, 32), Image.BICUBIC))
                     for im in d.images])  # fmt: skip
    imgs = np.repeat(imgs[..., None], 3, axis=3)
    rng = np.random.RandomState(seed)
    test = np.concatenate([rng.permutation(np.where(d.target == c)[0])[:test_per_class] for c in range(10)])
    train = np.setdiff1d(np.arange(len(d.target)), test)
    train = train[rng.permutation(len(train))]
    write_cifar10(root, imgs[train], d.target[train], imgs[np.sort(test)], d.target[np.sort(test)],
                  [f"digit {c}" for c in range(10)])  # fmt: skip


# ------------------------------------------------------------------------------------------------ split files
def read_split_file(path: Path, root: Path, num_classes: int | None = None) -> Split:
    """An OLTR-style list: one 'relative/path.jpg label' per line; every named image must exist under root."""
    if not path.is_file():
        raise DataError(
            "split file not found", str(path), "Give --split-file a 'relative/path.jpg label' list."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(
            f"cannot read split file ({type(e).__name__})", str(path), "Use UTF-8 text."
        ) from None
    paths, labels = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"expected 'relative/path.jpg label', got {line.strip()[:60]!r}", f"{path}:{n}",
                            "One image path and one integer label per line.")  # fmt: skip
        label = int(parts[1])
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise DataError(
                f"label {label} outside 0..{(num_classes or 1) - 1}", f"{path}:{n}", "Fix the label."
            )
        img = root / parts[0].strip()
        if not img.is_file():
            raise DataError(f"image {parts[0].strip()!r} not found under {root}", f"{path}:{n}",
                            "Check --root (the folder the paths are relative to).")  # fmt: skip
        paths.append(img)
        labels.append(label)
    if not labels:
        raise DataError("split file lists no images", str(path), "One 'relative/path.jpg label' per line.")
    return Split(np.asarray(labels, np.int64), paths=paths)


def sibling_split(train_list: Path, *names: str) -> Path | None:
    """ImageNet_LT_train.txt -> ImageNet_LT_test.txt (first of names that exists)."""
    for name in names:
        cand = train_list.with_name(train_list.name.replace("train", name))
        if cand != train_list and cand.is_file():
            return cand
    return None


# ------------------------------------------------------------------------------------------------ ImageFolder
def read_folder(folder: Path, classes: list[str] | None = None) -> tuple[Split, list[str]]:
    """<folder>/<class>/<image>: class ids in sorted-name order (or the given class list)."""
    if not folder.is_dir():
        raise DataError("image folder not found", str(folder), f"Expected layout: {LAYOUT}.")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    classes = classes or found
    extra = sorted(set(found) - set(classes))
    if extra:
        raise DataError(f"class folders {extra[:3]} are not among the training classes", str(folder),
                        "Use the class folders of the train split.")  # fmt: skip
    paths, labels = [], []
    for c, name in enumerate(classes):
        for p in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            if p.suffix.lower() in IMAGE_EXT:
                paths.append(p)
                labels.append(c)
    if not paths:
        raise DataError("no images in the class folders", str(folder), f"Expected layout: {LAYOUT}.")
    return Split(np.asarray(labels, np.int64), paths=paths), classes


def detect_format(root: Path) -> str:
    kind = cifar_kind(root)
    if kind:
        return kind[0]
    if (root / "train").is_dir():
        return "folder"
    raise DataError("cannot tell the data layout", str(root), f"Expected one of: {LAYOUT}.")
