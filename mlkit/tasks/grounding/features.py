"""Region features (spec §3.3): per-image npz, the original's HDF5 layout, bottom-up-attention TSV; GloVe text
vectors; the handcrafted 77-d descriptors and fallback proposals (§3.4) used by the synthetic set and by predict
on images that come without features.

    features/<id>.npz   boxes float32 [R,4] (x1,y1,x2,y2 px), feats float32 [R,D], det_logits float32 [R,C+1]
    features/classes.txt  C class names (column 0 of det_logits is background)
    features/*.h5       the original's layout: one dataset per image id, [R, D + C+1 + 4] (h5py, if installed)
    features/*.tsv      bottom-up-attention: image_id, image_w, image_h, num_boxes, boxes, features (base64 f32)
"""

from __future__ import annotations

import base64
import csv
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mlkit.core.errors import DataError

PALETTE = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 70, 220), "yellow": (230, 210, 40),
           "purple": (150, 60, 190)}  # fmt: skip
BACKGROUND = (200, 200, 200)
FEATURE_DIM = 3 + len(PALETTE) + 64 + 5
FORMATS = ("auto", "npz", "h5", "tsv")


# ---------------------------------------------------------------- handcrafted descriptors (§3.4)
def pixel_maps(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: foreground (far from the grey background) and the nearest palette colour (-1: background)."""
    x = img.astype(np.float32)
    cols = np.array([BACKGROUND, *PALETTE.values()], np.float32)
    d = ((x[:, :, None, :] - cols[None, None]) ** 2).sum(-1)
    near = d.argmin(-1) - 1
    fg = np.sqrt(((x - np.array(BACKGROUND, np.float32)) ** 2).sum(-1)) > 60.0
    return fg, np.where(fg, near, -1)


def describe(img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[R, 77]: mean RGB (3), palette histogram (5), 8x8 foreground mask of the crop (64), x1,y1,x2,y2,area (5)."""
    h, w = img.shape[:2]
    fg, near = pixel_maps(img)
    out = np.zeros((len(boxes), FEATURE_DIM), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
        a, b = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
        c, d = int(np.clip(np.ceil(x2), a + 1, w)), int(np.clip(np.ceil(y2), b + 1, h))
        crop, lab, m = img[b:d, a:c].reshape(-1, 3), near[b:d, a:c].ravel(), fg[b:d, a:c]
        out[i, :3] = crop.mean(0) / 255.0
        out[i, 3:8] = np.bincount(lab[lab >= 0], minlength=5)[:5] / max(1, lab.size)
        ys = ((np.arange(16) + 0.5) * m.shape[0] / 16).astype(int)  # 16x16 nearest samples, 2x2 averaged
        xs = ((np.arange(16) + 0.5) * m.shape[1] / 16).astype(int)
        out[i, 8:72] = m[ys][:, xs].reshape(8, 2, 8, 2).mean((1, 3)).ravel()
        out[i, 72:] = (x1 / w, y1 / h, x2 / w, y2 / h, (x2 - x1) * (y2 - y1) / (w * h))
    return out


def fallback_proposals(img: np.ndarray, n: int) -> np.ndarray:
    """Boxes for an image without features: foreground components, then a multi-scale grid (poor on photos)."""
    from scipy import ndimage

    h, w = img.shape[:2]
    fg, _ = pixel_maps(img)
    lab, k = ndimage.label(fg)
    boxes = [
        (s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(lab) if s is not None
    ]
    boxes = [b for b in boxes if (b[2] - b[0]) * (b[3] - b[1]) >= 16]
    for frac in (0.3, 0.45, 0.65, 1.0):
        bw, bh = max(2, int(w * frac)), max(2, int(h * frac))
        for y in range(0, h - bh + 1, max(1, bh // 2)):
            for x in range(0, w - bw + 1, max(1, bw // 2)):
                boxes.append((x, y, x + bw, y + bh))
    return np.asarray(boxes[:n], np.float32)


# ---------------------------------------------------------------- readers
def read_classes(root: Path) -> list[str]:
    path = root / "features" / "classes.txt"
    if not path.is_file():
        return []
    names = [line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise DataError("duplicate class names", str(path), "List each detector class once, one per line.")
    return names


def detect_format(root: Path) -> str:
    d = root / "features"
    if any(d.glob("*.npz")):
        return "npz"
    if any(d.glob("*.h5")) or any(d.glob("*.hdf5")):
        return "h5"
    if any(d.glob("*.tsv")):
        return "tsv"
    raise DataError("no region features", str(d), "Put features/<id>.npz (boxes, feats, det_logits) there, or the "
                    "original's .h5 / bottom-up-attention .tsv; see `mlkit grounding --help`.")  # fmt: skip


def _check(image_id: str, boxes: np.ndarray, feats: np.ndarray, det: np.ndarray | None, n_cls: int,
           where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:  # fmt: skip
    if (
        boxes.ndim != 2
        or boxes.shape[1] != 4
        or feats.ndim != 2
        or len(feats) != len(boxes)
        or len(boxes) == 0
    ):
        raise DataError(f"bad feature shapes boxes {boxes.shape} feats {feats.shape} for image {image_id}", where,
                        "Want boxes [R,4] and feats [R,D] with the same R >= 1.")  # fmt: skip
    if not (np.isfinite(boxes).all() and np.isfinite(feats).all()):
        raise DataError(f"non-finite features for image {image_id}", where, "Re-extract the features.")
    if det is not None and (det.ndim != 2 or len(det) != len(boxes) or (n_cls and det.shape[1] != n_cls + 1)):
        raise DataError(f"det_logits {det.shape} do not match {len(boxes)} boxes and {n_cls} classes + background",
                        where, "Want det_logits [R, C+1], column 0 = background.")  # fmt: skip
    return boxes.astype(np.float32), feats.astype(np.float32), None if det is None else det.astype(np.float32)


def iter_features(root: Path, fmt: str, ids: list[str], n_cls: int) -> Iterator[tuple[str, tuple]]:
    """(image id, (boxes, feats, det_logits or None)) for every id, in order; DataError for a missing/bad one."""
    d = root / "features"
    if fmt == "npz":
        for i in ids:
            p = d / f"{i}.npz"
            if not p.is_file():
                raise DataError(
                    f"no features for image {i}", str(p), "Write features/<id>.npz for every image."
                )
            try:
                with np.load(p) as z:
                    boxes, feats = np.asarray(z["boxes"]), np.asarray(z["feats"])
                    det = np.asarray(z["det_logits"]) if "det_logits" in z.files else None
            except KeyError as e:
                raise DataError(
                    f"npz lacks {e}", str(p), "Save boxes, feats (and optionally det_logits)."
                ) from None
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise DataError(
                    f"unreadable npz ({type(e).__name__})", str(p), "Re-write the file."
                ) from None
            yield i, _check(i, boxes, feats, det, n_cls, str(p))
    elif fmt == "h5":
        try:
            import h5py  # optional: only for the original's layout
        except ImportError:
            raise DataError("HDF5 features need h5py, which is not installed", str(d),
                            "pip install h5py, or convert to features/<id>.npz.") from None  # fmt: skip
        files = sorted([*d.glob("*.h5"), *d.glob("*.hdf5")])
        handles = [h5py.File(f, "r") for f in files]
        try:
            for i in ids:
                h = next((x for x in handles if i in x), None)
                if h is None:
                    raise DataError(
                        f"no dataset for image {i}", ", ".join(map(str, files)), "One dataset per image id."
                    )
                a = np.asarray(h[i], np.float32)
                k = n_cls + 1 if n_cls else 0
                if a.ndim != 2 or a.shape[1] <= k + 4:
                    raise DataError(
                        f"dataset {i} has shape {a.shape}", str(h.filename), "Want [R, D + C+1 + 4]."
                    )
                yield i, _check(i, a[:, -4:], a[:, : a.shape[1] - k - 4], a[:, -4 - k : -4] if k else None, n_cls,
                                str(h.filename))  # fmt: skip
        finally:
            for x in handles:
                x.close()
    elif fmt == "tsv":
        want, found = set(ids), {}
        csv.field_size_limit(sys.maxsize)
        for f in sorted(d.glob("*.tsv")):
            with open(f, newline="", encoding="utf-8") as fh:
                for n, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
                    if len(row) < 6:
                        raise DataError(f"{len(row)} columns, want 6", f"{f} line {n}",
                                        "Rows: image_id, image_w, image_h, num_boxes, boxes, features.")  # fmt: skip
                    if row[0] not in want:
                        continue
                    try:
                        r = int(row[3])
                        boxes = np.frombuffer(base64.b64decode(row[4]), np.float32).reshape(r, 4)
                        feats = np.frombuffer(base64.b64decode(row[5]), np.float32).reshape(r, -1)
                    except (ValueError, base64.binascii.Error):
                        raise DataError("undecodable boxes/features", f"{f} line {n}",
                                        "base64 of float32 arrays, num_boxes rows each.") from None  # fmt: skip
                    found[row[0]] = _check(row[0], boxes, feats, None, n_cls, f"{f} line {n}")
        for i in ids:
            if i not in found:
                raise DataError(f"no features for image {i}", str(d), "Every image id needs a TSV row.")
            yield i, found.pop(i)
    else:
        raise DataError(f"unknown feature format '{fmt}'", str(d), f"Use one of {', '.join(FORMATS)}.")


def read_glove(path: Path, vocab: set[str]) -> tuple[list[str], np.ndarray]:
    """The vectors of the words in `vocab` from a GloVe text file (`word v1 ... vd` per line)."""
    if not path.is_file():
        raise DataError("word-vector file not found", str(path), "Pass a GloVe text file with --glove.")
    words, vecs, dim = [], [], None
    with open(path, encoding="utf-8", errors="strict") as fh:
        try:
            for n, line in enumerate(fh, 1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if dim is None:
                    dim = len(parts) - 1
                    if dim < 1:
                        raise DataError(
                            "no vector on the line", f"{path} line {n}", "Lines are 'word v1 ... vd'."
                        )
                if len(parts) - 1 != dim:
                    raise DataError(f"{len(parts) - 1} values, the first line has {dim}", f"{path} line {n}",
                                    "Every line is 'word v1 ... vd' with the same d.")  # fmt: skip
                if parts[0] in vocab:
                    try:
                        vecs.append(np.asarray(parts[1:], np.float32))
                    except ValueError:
                        raise DataError(
                            "a value is not a number", f"{path} line {n}", "Check the file."
                        ) from None
                    words.append(parts[0])
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text", str(path), "Use the GloVe text format in UTF-8.") from None
    if dim is None:
        raise DataError("empty word-vector file", str(path), "Pass a GloVe text file with --glove.")
    return words, (np.stack(vecs) if vecs else np.zeros((0, dim), np.float32))
