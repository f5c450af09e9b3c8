"""RGB (or grey) image data of `mlkit attack`: CIFAR-10 / CIFAR-100 python pickles and image folders, read by the
longtail task's readers (restricted unpickler, ImageFolder walk), turned into the attack's [0, 1] float arrays.

Layouts (`--data ROOT`, detected in this order: MNIST idx files, CIFAR pickles, folders):
  CIFAR-10: ROOT/{data_batch_1..5, test_batch, batches.meta} (or ROOT/cifar-10-batches-py/...); CIFAR-100 likewise.
  folders:  ROOT/train/<class>/*.png|jpg with ROOT/test/<class>/ (or ROOT/val/<class>/) as the test split, or
            ROOT/<class>/*.png|jpg (torchvision ImageFolder's layout) with a seeded stratified split of
            `folder_test` of each class as the test split. Class ids are the sorted folder names (as ImageFolder).
Images of a folder are resized to `image_size` (0: the first train image's size); they are grey (1 channel) when
every image is grey (R = G = B), else RGB. An empty class folder, or a file that does not decode, is a DataError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlkit.core.errors import DataError
from mlkit.tasks.longtail import data as LT

LAYOUT = ("CIFAR pickles <root>/{data_batch_1..5,test_batch,batches.meta}; image folders <root>/train/<class>/*.png "
          "+ <root>/test|val/<class>/, or <root>/<class>/*.png (seeded split)")  # fmt: skip


def kind(root: Path) -> str | None:
    """'cifar10' | 'cifar100' | 'folder' | None (not one of these layouts)."""
    found = LT.cifar_kind(root)
    if found:
        return found[0]
    if root.is_dir() and any(p.is_dir() for p in root.iterdir()):
        return "folder"
    return None


def read_cifar(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(train x, train y, test x, test y, class names): x uint8 (n, 3, 32, 32)."""
    which, folder = LT.cifar_kind(root)  # type: ignore[misc]
    tr, te, names = LT.read_cifar(folder, which)
    chw = lambda s: np.ascontiguousarray(s.arrays.transpose(0, 3, 1, 2))  # noqa: E731
    return chw(tr), tr.labels, chw(te), te.labels, names


def _check_classes(folder: Path) -> None:
    """Every class folder holds at least one image (ImageFolder would fail later, and silently skew the classes)."""
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not any(p.suffix.lower() in LT.IMAGE_EXT for p in d.iterdir() if p.is_file()):
            raise DataError("class folder has no images", str(d),
                            f"Put *.png/*.jpg images in it or remove it ({', '.join(LT.IMAGE_EXT)}).")  # fmt: skip


def _stratified(labels: np.ndarray, frac: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    test = []
    for c in np.unique(labels):
        idx = rng.permutation(np.where(labels == c)[0])
        k = int(round(frac * len(idx)))
        if len(idx) < 2 or k < 1:
            raise DataError(f"class {int(c)} has {len(idx)} images: too few for a {frac:g} test split", where,
                            "Add images, raise folder_test, or give train/ and test/ sub-folders.")  # fmt: skip
        test.append(idx[: min(k, len(idx) - 1)])
    te = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(labels)), te), te


def _pixels(split: LT.Split, size: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    """(n, h, w, 3) uint8 from the split's files, resized to `size` (default: the first image's size)."""
    from PIL import Image

    out = []
    for i in range(len(split)):
        im = split.image(i)  # DataError naming the file when it does not decode
        if size is None:
            size = (im.height, im.width)
        if (im.height, im.width) != size:
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        out.append(np.asarray(im, dtype=np.uint8))
    return np.stack(out), size  # type: ignore[return-value]


def read_folders(root: Path, image_size: int, test_frac: float, seed: int) -> tuple:
    """(train x, train y, test x, test y, class names): x uint8 (n, c, h, w), c = 1 when every image is grey."""
    tr_dir = root / "train"
    te_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None) if tr_dir.is_dir() else None
    if tr_dir.is_dir() and te_dir is None:
        raise DataError("train/ has no test/ or val/ beside it", str(root),
                        "Add <root>/test/<class>/ images, or use <root>/<class>/ folders (seeded split).")  # fmt: skip
    size = (image_size, image_size) if image_size > 0 else None
    if te_dir is not None:
        _check_classes(tr_dir)
        _check_classes(te_dir)
        tr, names = LT.read_folder(tr_dir)
        te, _ = LT.read_folder(te_dir, names)
        xtr, size = _pixels(tr, size)
        xte, _ = _pixels(te, size)
        ytr, yte = tr.labels, te.labels
    else:
        _check_classes(root)
        sp, names = LT.read_folder(root)
        x, size = _pixels(sp, size)
        a, b = _stratified(sp.labels, test_frac, seed, str(root))
        rng = np.random.RandomState(seed)
        a = a[rng.permutation(len(a))]  # a shuffled train split (the val images are its last ones)
        xtr, ytr, xte, yte = x[a], sp.labels[a], x[b], sp.labels[b]
    if len(names) < 2:
        raise DataError(f"{len(names)} class folder(s): an attack needs at least 2 classes", str(root),
                        f"Expected layout: {LAYOUT}.")  # fmt: skip
    grey = all(bool((a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all()) for a in (xtr, xte))
    chw = lambda a: np.ascontiguousarray(a[..., :1] if grey else a).transpose(0, 3, 1, 2)  # noqa: E731
    return chw(xtr), ytr, chw(xte), yte, names


def synth_cifar(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """n seeded RGB images (uint8, 3 x size x size) of 10 classes: a coloured shape (class = shape x colour family)
    on a textured background with random position, scale and noise; a CPU-sized stand-in for CIFAR-10."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    hues = [(220, 60, 40), (40, 90, 220)]  # colour family: reddish / bluish
    out = np.zeros((n, 3, size, size), np.uint8)
    for i, lab in enumerate(labels):
        shape, fam = int(lab) % 5, int(lab) // 5
        bg = rng.integers(40, 200, 3)
        a = np.clip(bg + rng.normal(0, 18, (size, size, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(a)
        d = ImageDraw.Draw(im)
        r = rng.uniform(0.22, 0.38) * size
        cx, cy = rng.uniform(r, size - r, 2)
        col = tuple(int(np.clip(c + rng.normal(0, 25), 0, 255)) for c in hues[fam])
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == 0:
            d.ellipse(box, fill=col)
        elif shape == 1:
            d.rectangle(box, fill=col)
        elif shape == 2:
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)
        elif shape == 3:
            d.line([(cx - r, cy - r), (cx + r, cy + r)], fill=col, width=max(2, int(r / 3)))
            d.line([(cx - r, cy + r), (cx + r, cy - r)], fill=col, width=max(2, int(r / 3)))
        else:
            d.ellipse(box, outline=col, width=max(2, int(r / 3)))
        out[i] = np.asarray(im).transpose(2, 0, 1)
    return out, labels.astype(np.int64)


def write_synth_cifar(folder: Path, train: int, test: int, seed: int) -> None:
    """Seeded synthetic images written as a CIFAR-10 python folder (longtail's writer: the exact pickle layout)."""
    x, y = synth_cifar(train + test, seed)
    hwc = x.transpose(0, 2, 3, 1)
    names = [f"{s} {c}" for c in ("red", "blue") for s in ("disc", "square", "triangle", "cross", "ring")]
    LT.write_cifar10(Path(folder), hwc[:train], y[:train], hwc[train:], y[train:], names)
