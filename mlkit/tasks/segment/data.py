"""Segment data (spec §3): the seeded `shapes` generator, the generic folder layout and Pascal VOC 2012.

Every loader returns a `SegData`: class names, and train/val/test lists of `Item`s (stem, image path, mask path or
None, image-level label set). Pixels are read lazily (`Store`), checked (a mask of the wrong size is a DataError
naming the file) and scaled as in the original ((x + 1) / 256, no mean/std normalisation).
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mlkit.core.errors import DataError, UsageError
from mlkit.tasks.segment.budget import choose_labelled  # noqa: F401 - re-exported

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")  # fmt: skip
SHAPE_CLASSES = ("background", "disc", "square", "triangle")
HORSE = "horse"  # the optional 4th shapes class (spec §3): skimage's horse silhouette
VOID = 255


@dataclass
class Item:
    stem: str
    image: Path
    mask: Path | None
    labels: frozenset[int]


@dataclass
class SegData:
    classes: tuple[str, ...]
    train: list[Item]
    val: list[Item]
    test: list[Item]
    root: Path
    fmt: str
    labelled: list[str] = field(default_factory=list)  # train stems whose masks are used (the label budget)


def voc_palette() -> list[int]:
    """The Pascal VOC colour map (256 entries, flat RGB)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


# ------------------------------------------------------------------------------------------------ shapes
def _backgrounds() -> list[np.ndarray]:
    import skimage.data as sd
    from sklearn.datasets import load_sample_image

    out = [np.stack([getattr(sd, n)()] * 3, -1) for n in ("brick", "grass", "gravel")]
    out += [getattr(sd, n)()[..., :3] for n in ("astronaut", "coffee", "chelsea")]
    out += [load_sample_image(n) for n in ("china.jpg", "flower.jpg")]
    return [np.asarray(b, np.uint8) for b in out]


def _background(rng: np.random.Generator, bgs: list[np.ndarray], size: int) -> np.ndarray:
    if rng.random() < 0.15:  # coloured noise
        base = rng.uniform(0, 255, 3)
        return np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    b = bgs[int(rng.integers(len(bgs)))]
    side = int(rng.integers(size, 3 * size + 1))  # mild zoom: smooth, photo-like backgrounds
    y, x = int(rng.integers(0, b.shape[0] - side + 1)), int(rng.integers(0, b.shape[1] - side + 1))
    crop = Image.fromarray(b[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
    arr = np.asarray(crop, np.float32)
    if b.shape[-1] == 3 and np.allclose(b[..., 0], b[..., 1]):  # grey texture: tint it
        arr = arr * rng.uniform(0.4, 1.2, 3)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _polygon(cls: int, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    n = 4 if cls == 2 else 3
    rr = r * (1.25 if cls == 3 else 1.15)  # similar areas
    return [(cx + rr * math.cos(angle + 2 * math.pi * k / n), cy + rr * math.sin(angle + 2 * math.pi * k / n))
            for k in range(n)]  # fmt: skip


def shape_classes(n_fg: int = 3, where: str = "shapes.classes") -> tuple[str, ...]:
    """Class names of a shapes set with 3 foreground classes, or 4 with the horse silhouette (else a usage error
    naming `where`, the flag or key the count came from)."""
    if n_fg not in (3, 4):
        raise UsageError(f"shapes have 3 or 4 foreground classes, not {n_fg}", where, "4 adds the horse silhouette.")
    return SHAPE_CLASSES + ((HORSE,) if n_fg == 4 else ())


@lru_cache(maxsize=1)
def _horse() -> Image.Image:
    """skimage's horse silhouette (True = background there) as an 'L' mask cropped to its bounding box."""
    import skimage.data as sd

    sil = ~np.asarray(sd.horse(), bool)
    ys, xs = np.nonzero(sil)
    return Image.fromarray((sil[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] * 255).astype(np.uint8), "L")


def _paste_horse(img: Image.Image, mask: Image.Image, rng: np.random.Generator, cx: float, cy: float, r: float,
                 colour: tuple[int, ...], cls: int) -> None:  # fmt: skip
    """The horse scaled to width 2r, flipped at random, turned by up to 30 degrees, centred at (cx, cy)."""
    sil = _horse()
    w = max(int(round(2 * r)), 2)
    h = max(int(round(2 * r * sil.height / sil.width)), 2)
    s = sil.resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        s = s.transpose(Image.FLIP_LEFT_RIGHT)
    s = s.rotate(float(rng.uniform(-30, 30)), Image.BILINEAR, expand=True).point(lambda v: 255 if v >= 128 else 0)
    pos = (int(round(cx - s.width / 2)), int(round(cy - s.height / 2)))
    img.paste(Image.new("RGB", s.size, colour), pos, s)
    mask.paste(Image.new("L", s.size, cls), pos, s)


def draw_sample(rng: np.random.Generator, bgs: list[np.ndarray], size: int, lo: float = 0.2, hi: float = 0.45,
                n_fg: int = 3) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One image (size x size x 3 uint8) and its mask (0 = bg): 1-3 shapes of lo..hi x side, colour random;
    classes 1..n_fg (n_fg 4 adds the horse silhouette)."""
    ss = 4  # supersampling for smooth edges
    img = Image.fromarray(_background(rng, bgs, size)).resize((size * ss, size * ss), Image.NEAREST)
    mask = Image.new("L", (size * ss, size * ss), 0)
    di, dm = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, n_fg + 1))
        r = rng.uniform(lo, hi) * size * ss / 2
        cx, cy = rng.uniform(r, size * ss - r), rng.uniform(r, size * ss - r)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if cls == 4:
            _paste_horse(img, mask, rng, cx, cy, r, colour, cls)
        elif cls == 1:
            box = [cx - r, cy - r, cx + r, cy + r]
            di.ellipse(box, fill=colour)
            dm.ellipse(box, fill=cls)
        else:
            pts = _polygon(cls, cx, cy, r, rng.uniform(0, 2 * math.pi))
            di.polygon(pts, fill=colour)
            dm.polygon(pts, fill=cls)
    x = np.asarray(img.resize((size, size), Image.BOX), np.float32)
    x = np.clip(x + rng.normal(0, 4, x.shape), 0, 255).astype(np.uint8)
    return x, np.asarray(mask.resize((size, size), Image.NEAREST), np.uint8)


def write_shapes(root: Path, train: int, val: int, size: int, seed: int, lo: float = 0.2, hi: float = 0.45,
                 classes: int = 3) -> Path:  # fmt: skip
    """Write the `shapes` set in the generic layout: images/, masks/, labels.csv, split.csv, classes.txt."""
    rng = np.random.default_rng(seed)
    bgs = _backgrounds()
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rows, splits = [], []
    for i in range(train + val):
        stem = f"shape{i:05d}"
        x, m = draw_sample(rng, bgs, size, lo, hi, classes)
        Image.fromarray(x).save(root / "images" / f"{stem}.png")
        Image.fromarray(m).save(root / "masks" / f"{stem}.png")
        rows.append((stem, ";".join(str(c) for c in sorted(set(np.unique(m).tolist()) - {0}))))
        splits.append((stem, "train" if i < train else "val"))
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    with (root / "split.csv").open("w", newline="") as f:
        csv.writer(f).writerows(splits)
    (root / "classes.txt").write_text("\n".join(shape_classes(classes)) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------------ generic
def _read_labels(path: Path, classes: tuple[str, ...]) -> dict[str, frozenset[int]]:
    out: dict[str, frozenset[int]] = {}
    names = {c: i for i, c in enumerate(classes)}
    with path.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or (n == 1 and row[0] == "stem"):
                continue
            labels = set()
            for tok in (row[1] if len(row) > 1 else "").split(";"):
                tok = tok.strip()
                if not tok:
                    continue
                if tok in names:
                    labels.add(names[tok])
                elif tok.lstrip("c").isdigit() and int(tok.lstrip("c")) < len(classes):
                    labels.add(int(tok.lstrip("c")))
                else:
                    raise DataError(f"unknown class '{tok}'", f"{path} line {n}",
                                    "Write class indices or names from classes.txt, ';'-separated.")  # fmt: skip
            out[row[0]] = frozenset(labels)
    return out


def load_generic(root: Path, seed: int) -> SegData:
    """images/*.png|jpg, masks/*.png (same stem, 255 = ignore), optional labels.csv, split.csv, classes.txt."""
    img_dir = root / "images"
    if not img_dir.is_dir():
        raise DataError("images/ folder not found", str(img_dir), "Expected <root>/images/*.png|jpg.")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not images:
        raise DataError("no images", str(img_dir), "Put .png or .jpg files there.")
    cpath = root / "classes.txt"
    if cpath.is_file():
        classes = tuple(c.strip() for c in cpath.read_text(encoding="utf-8").splitlines() if c.strip())
    else:
        mx = 0
        for p in sorted((root / "masks").glob("*.png")):
            u = np.unique(np.asarray(Image.open(p)))
            mx = max(mx, int(u[u != VOID].max(initial=0)))
        classes = tuple(["background"] + [f"class{i}" for i in range(1, mx + 1)])
    labels = _read_labels(root / "labels.csv", classes) if (root / "labels.csv").is_file() else {}
    items = []
    for p in images:
        m = root / "masks" / f"{p.stem}.png"
        mask = m if m.is_file() else None
        if p.stem in labels:
            lab = labels[p.stem]
        elif mask is not None:
            u = np.unique(np.asarray(Image.open(mask)))
            lab = frozenset(int(c) for c in u if 0 < c < len(classes))
        else:
            raise DataError("image has neither a mask nor a labels.csv row", str(p), "Add one of them.")
        items.append(Item(p.stem, p, mask, lab))
    split = {}
    if (root / "split.csv").is_file():
        with (root / "split.csv").open(newline="", encoding="utf-8") as f:
            split = {r[0]: r[1].strip() for r in csv.reader(f) if len(r) >= 2}
    else:  # seeded 80/20
        perm = np.random.default_rng(seed).permutation(len(items))
        split = {items[i].stem: ("val" if k < len(items) // 5 else "train") for k, i in enumerate(perm)}
    train = [it for it in items if split.get(it.stem) == "train"]
    val = [it for it in items if split.get(it.stem) == "val" and it.mask is not None]
    test = [it for it in items if split.get(it.stem) == "test" and it.mask is not None] or val
    if not val:
        raise DataError("no validation images with masks", str(root), "split.csv needs 'stem,val' rows.")
    return SegData(classes, train, val, test, root, "generic")


# ------------------------------------------------------------------------------------------------ VOC
def _voc_root(root: Path) -> Path:
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise DataError(
        "JPEGImages/ not found", str(root), "Give the VOC2012 folder (JPEGImages, Annotations, ...)."
    )


def _xml_labels(path: Path) -> frozenset[int]:
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError):
        raise DataError("unreadable annotation", str(path), "Annotations/*.xml must be VOC XML.") from None
    idx = {c: i for i, c in enumerate(VOC_CLASSES)}
    names = [(o.findtext("name") or "").strip() for o in tree.getroot().iter("object")]
    bad = [n for n in names if n not in idx]
    if bad:
        raise DataError(f"unknown VOC class '{bad[0]}'", str(path), "Object names must be VOC class names.")
    return frozenset(idx[n] for n in names)


def _ids(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(
            "split list not found", str(path), "VOC needs ImageSets/Segmentation/{train,val}.txt."
        )
    return [s.split()[0] for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


def load_voc(
    root: Path, masks: str = "SegmentationClass", train_list: str = "", pool: str = "all"
) -> SegData:
    """VOC 2012: train pool = JPEGImages minus seg-val (pool=all) or the seg train list only (pool=seg)."""
    r = _voc_root(root)
    mdir = r / masks
    if not mdir.is_dir():
        raise DataError(f"{masks}/ folder not found", str(mdir), "Use voc.masks: SegmentationClass or "
                        "SegmentationClassAug (SBD, with voc.train_list: train_aug.txt).")  # fmt: skip
    seg = r / "ImageSets" / "Segmentation"
    tl = (
        Path(train_list)
        if train_list and Path(train_list).is_absolute()
        else seg / (train_list or "train.txt")
    )
    if train_list and not tl.is_file() and (r / train_list).is_file():
        tl = r / train_list
    masked, val_ids = set(_ids(tl)), _ids(seg / "val.txt")
    vs = set(val_ids)
    ann = r / "Annotations"

    def item(stem: str, with_mask: bool) -> Item:
        img = r / "JPEGImages" / f"{stem}.jpg"
        m = mdir / f"{stem}.png"
        if with_mask and not m.is_file():
            raise DataError("mask not found", str(m), f"Every listed id needs {masks}/<id>.png.")
        if (ann / f"{stem}.xml").is_file():
            lab = _xml_labels(ann / f"{stem}.xml")
        elif with_mask:
            u = np.unique(np.asarray(Image.open(m)))
            lab = frozenset(int(c) for c in u if 0 < c < len(VOC_CLASSES))
        else:
            raise DataError(
                "annotation not found", str(ann / f"{stem}.xml"), "Image-only ids need Annotations."
            )
        return Item(stem, img, m if with_mask else None, lab)

    stems = sorted(p.stem for p in (r / "JPEGImages").glob("*.jpg")) if pool == "all" else sorted(masked)
    train = [item(s, s in masked) for s in stems if s not in vs]
    val = [item(s, True) for s in val_ids]
    return SegData(VOC_CLASSES, train, val, val, r, "voc")


def detect_format(root: Path) -> str:
    if (root / "images").is_dir():
        return "generic"
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return "voc"
    raise DataError(
        "unknown dataset layout", str(root), "Expected images/ (generic) or JPEGImages/ (VOC 2012)."
    )


# ------------------------------------------------------------------------------------------------ pixels
class Store:
    """Decoded (image, mask) arrays, cached in memory up to `limit` items."""

    def __init__(self, limit: int = 6000) -> None:
        self.limit, self.cache = limit, {}

    def get(self, it: Item) -> tuple[np.ndarray, np.ndarray | None]:
        key = str(it.image)
        if key in self.cache:
            return self.cache[key]
        try:
            img = np.asarray(Image.open(it.image).convert("RGB"), np.uint8)
        except OSError:
            raise DataError("unreadable image", str(it.image), "Images must be PNG or JPEG.") from None
        mask = None
        if it.mask is not None:
            try:
                mask = np.asarray(Image.open(it.mask), np.uint8)
            except OSError:
                raise DataError(
                    "unreadable mask", str(it.mask), "Masks must be single-channel PNGs."
                ) from None
            if mask.ndim != 2 or mask.shape != img.shape[:2]:
                raise DataError(f"mask of size {mask.shape[::-1]} for an image of size {img.shape[1::-1]}",
                                str(it.mask), "A mask must have its image's size, one index per pixel.")  # fmt: skip
        if len(self.cache) < self.limit:
            self.cache[key] = (img, mask)
        return img, mask


def square(img: np.ndarray, mask: np.ndarray | None, size: int | None, off: tuple[float, float] | None
           ) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Square crop of side = short side (offset fractions off, None = centre), resized to size (None: keep)."""
    h, w = img.shape[:2]
    s = min(h, w)
    fy, fx = off if off is not None else (0.5, 0.5)
    y, x = int(round((h - s) * fy)), int(round((w - s) * fx))
    img = img[y : y + s, x : x + s]
    mask = mask[y : y + s, x : x + s] if mask is not None else None
    if size is not None and s != size:
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
        if mask is not None:
            mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST))
    return img, mask


def to_input(img: np.ndarray) -> np.ndarray:
    """HWC uint8 -> CHW float32 scaled (x + 1) / 256."""
    return (img.astype(np.float32).transpose(2, 0, 1) + 1.0) / 256.0
