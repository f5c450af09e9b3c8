"""Segment evaluation (spec §8): mIoU with void ignored, per-class IoU, confusion matrix, under two protocols,
and the PNGs people look at (palette masks, heatmap overlays).

Protocols: `standard` = every image at its own resolution, void (255) ignored; `original` = the TW-autoencoder
repository's: centre square crop resized to `crop`, boundary/void 255 mapped to background.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mlkit.tasks.segment.data import VOID, Item, Store, square, to_input, voc_palette

PROTOCOLS = ("standard", "original")


def confusion(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """K x K counts (rows: truth, cols: prediction) over pixels whose truth is a class (not void)."""
    ok = (target >= 0) & (target < k)
    return np.bincount(k * target[ok].astype(np.int64) + pred[ok], minlength=k * k).reshape(k, k)


def iou_from(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU; NaN for a class absent from both truth and prediction."""
    tp = np.diag(conf).astype(np.float64)
    den = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, tp / np.maximum(den, 1), np.nan)


def eval_batches(items: list[Item], store: Store, protocol: str, crop: int | None, bs: int = 32
                 ) -> Iterator[tuple[list[Item], np.ndarray, np.ndarray]]:  # fmt: skip
    """(items, inputs N x 3 x H x W, masks N x H x W int64 with void -1) grouped by image shape."""
    group: list[tuple[Item, np.ndarray, np.ndarray]] = []
    for it in items:
        img, mask = store.get(it)
        if mask is None:
            mask = np.full(img.shape[:2], VOID, np.uint8)
        if protocol == "original":
            img, mask = square(img, mask, crop, None)
            mask = np.where(mask == VOID, 0, mask)
        if group and (len(group) >= bs or group[0][1].shape != img.shape):
            yield _stack(group)
            group = []
        group.append((it, img, mask))
    if group:
        yield _stack(group)


def _stack(group: list[tuple[Item, np.ndarray, np.ndarray]]) -> tuple[list[Item], np.ndarray, np.ndarray]:
    x = np.stack([to_input(g[1]) for g in group])
    y = np.stack([np.where(g[2] == VOID, -1, g[2].astype(np.int64)) for g in group])
    return [g[0] for g in group], x, y


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, items: list[Item], store: Store, k: int, protocol: str,
                   crop: int | None, device: str) -> dict[str, object]:  # fmt: skip
    """Confusion matrix, per-class IoU, mIoU, pixel accuracy and image-label micro-F1 of a SegNet."""
    model.eval()
    conf = np.zeros((k, k), np.int64)
    tp = fp = fn = 0
    for batch, x, y in eval_batches(items, store, protocol, crop):
        z, h = model(torch.from_numpy(x).to(device))
        pred = h.argmax(1).cpu().numpy()
        conf += confusion(pred.reshape(-1), y.reshape(-1), k)
        got = (z[:, 1:] > 0).cpu().numpy()
        want = np.zeros_like(got)
        for i, it in enumerate(batch):
            for c in it.labels:
                if 0 < c < k:
                    want[i, c - 1] = True
        tp, fp, fn = (
            tp + int((got & want).sum()),
            fp + int((got & ~want).sum()),
            fn + int((~got & want).sum()),
        )
    iou = iou_from(conf)
    return {"miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0, "iou": iou,
            "pixel_acc": float(np.diag(conf).sum() / max(conf.sum(), 1)), "confusion": conf,
            "cls_f1": 2 * tp / max(2 * tp + fp + fn, 1)}  # fmt: skip


# ------------------------------------------------------------------------------------------------ PNGs
def write_mask(path: Path, mask: np.ndarray) -> Path:
    """A palette PNG of class indices (VOC colours), 255 = void."""
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(voc_palette())
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def _colour(mask: np.ndarray) -> np.ndarray:
    pal = np.asarray(voc_palette(), np.uint8).reshape(256, 3)
    return pal[mask.astype(np.int64)]


def write_overlay(path: Path, img: np.ndarray, heat: np.ndarray, pred: np.ndarray, classes: tuple[str, ...],
                  truth: np.ndarray | None = None, scale: int = 4) -> Path:  # fmt: skip
    """One PNG row: image | truth (if any) | prediction | each class's heatmap over the image (red +, blue -)."""
    import matplotlib

    cmap = matplotlib.colormaps["bwr"]
    panels = [img, *([_colour(truth)] if truth is not None else []), _colour(pred)]
    base = img.astype(np.float32) / 255.0
    for c in range(heat.shape[0]):
        m = (
            float(np.percentile(np.abs(heat[c]), 99)) or 1.0
        )  # robust scale: a few spikes do not hide the rest
        col = cmap(0.5 + 0.5 * heat[c] / m)[..., :3]
        a = np.clip(np.abs(heat[c]) / m, 0, 1)[..., None] * 0.8
        panels.append(((1 - a) * base * 0.7 + a * col) * 255)
    gap = np.full((img.shape[0], 2, 3), 255, np.uint8)
    row = np.concatenate([x for p in panels for x in (np.asarray(p, np.uint8), gap)][:-1], 1)
    im = Image.fromarray(row).resize((row.shape[1] * scale, row.shape[0] * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path
