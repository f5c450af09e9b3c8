"""Evaluation (spec §2.6): R@1/5/10 (IoU >= 0.5, strict > 0.5 recorded too), pointing game, proposal upper bound,
per-type R@1, the baselines (random in expectation, centre, largest box, detector-direct); drawings for predict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from mlkit.kernels.grounding_distill import box_iou
from mlkit.tasks.grounding.data import GData, Phrases
from mlkit.tasks.grounding.flickr import EVAL_TYPES

KS = (1, 5, 10)


@torch.no_grad()
def phrase_scores(
    model: torch.nn.Module, data: GData, split: str, device: str, chunk: int = 256
) -> np.ndarray:
    """[M, R] s(r, p) of every evaluation phrase over its image's proposals; padded proposals are -inf."""
    ph, st = data.evals[split], data.store
    model.eval()
    out = np.full((len(ph.img), st.rmask.shape[1]), -np.inf, np.float32)
    for a in range(0, len(ph.img), chunk):
        img = ph.img[a : a + chunk]
        f = model.regions(torch.from_numpy(np.asarray(st.feats[img])).to(device))
        g = model.phrases(torch.from_numpy(ph.tok[a : a + chunk]).to(device))
        s = (f * g[:, None]).sum(-1).cpu().numpy()
        out[a : a + chunk] = np.where(st.rmask[img], s, -np.inf)
    return out


def _overlaps(ph: Phrases, boxes: np.ndarray, gt_mode: str) -> np.ndarray:
    """[M, R] IoU of each proposal with the phrase's ground truth (union box, or the best single box: 'any')."""
    if gt_mode == "union" or len(ph.img) == 0:
        return box_iou(boxes, ph.gt[:, None]).squeeze(-1).numpy()
    out = np.zeros(boxes.shape[:2])
    for m, bs in enumerate(ph.boxes):
        out[m] = box_iou(boxes[m], np.asarray(bs, np.float32)).numpy().max(1)
    return out


def _inside(ph: Phrases, boxes: np.ndarray) -> np.ndarray:
    """[M, R] whether each proposal's centre lies inside any ground-truth box of the phrase (pointing game)."""
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    out = np.zeros(boxes.shape[:2], bool)
    for m, bs in enumerate(ph.boxes):
        for x1, y1, x2, y2 in bs:
            out[m] |= (cx[m] >= x1) & (cx[m] <= x2) & (cy[m] >= y1) & (cy[m] <= y2)
    return out


def _ranked(
    rank: np.ndarray, iou: np.ndarray, inside: np.ndarray, thr: float, strict: bool
) -> dict[str, np.ndarray]:
    order = np.argsort(-rank, axis=1, kind="stable")
    hit = (iou > thr) if strict else (iou >= thr - 1e-9)
    hits = np.take_along_axis(hit, order, 1)
    out = {f"r{k}": hits[:, :k].any(1) for k in KS}
    out["pointing"] = np.take_along_axis(inside, order[:, :1], 1)[:, 0]
    return out


def _random(iou: np.ndarray, inside: np.ndarray, valid: np.ndarray, thr: float) -> dict[str, np.ndarray]:
    """A random proposal, in expectation: P(hit in top k) = 1 - C(R-h, k) / C(R, k) over the valid proposals."""
    r = valid.sum(1)
    h = ((iou >= thr - 1e-9) & valid).sum(1)
    out = {}
    for k in KS:
        out[f"r{k}"] = np.array([1.0 - math.comb(int(n - m), min(k, int(n))) / math.comb(int(n), min(k, int(n)))
                                 for n, m in zip(r, h)])  # fmt: skip
    out["pointing"] = (inside & valid).sum(1) / np.maximum(r, 1)
    return out


def grounding_metrics(scores: np.ndarray, data: GData, split: str, gt_mode: str = "union", thr: float = 0.5,
                      baselines: bool = True) -> dict[str, float]:  # fmt: skip
    """Metrics of a model's scores, per-type R@1, the upper bound and (optionally) the baselines' rows."""
    ph, st = data.evals[split], data.store
    if len(ph.img) == 0:
        return {f"{split}/r{k}": 0.0 for k in KS} | {f"{split}/pointing": 0.0, f"{split}/upper_bound": 0.0}
    boxes, valid = np.asarray(st.boxes[ph.img]), np.asarray(st.rmask[ph.img])
    iou, inside = _overlaps(ph, boxes, gt_mode) * valid, _inside(ph, boxes) & valid
    res = _ranked(scores, iou, inside, thr, False)
    out = {f"{split}/{k}": float(v.mean()) for k, v in res.items()}
    out[f"{split}/r1_strict"] = float(_ranked(scores, iou, inside, thr, True)["r1"].mean())
    out[f"{split}/upper_bound"] = float(((iou >= thr - 1e-9) & valid).any(1).mean())
    out[f"{split}/phrases"] = float(len(ph.img))
    for t in EVAL_TYPES:
        m = np.array([t in ts for ts in ph.types])
        if m.any():
            out[f"{split}/type/{t}/r1"] = float(res["r1"][m].mean())
    if not baselines:
        return out
    neg = np.where(valid, 0.0, -np.inf)
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    w, h = data.sizes[ph.img, 0:1], data.sizes[ph.img, 1:2]
    rows = {"random": _random(iou, inside, valid, thr),
            "centre": _ranked(neg - np.hypot(cx - w / 2, cy - h / 2), iou, inside, thr, False),
            "largest": _ranked(neg + (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]), iou, inside,
                               thr, False)}  # fmt: skip
    if st.det is not None:
        det = np.asarray(st.det[ph.img], np.float32)
        mapped = ph.cls >= 0
        p = np.take_along_axis(det, np.clip(ph.cls, 0, None)[:, None, None], 2)[..., 0]
        d = _ranked(neg + p, iou, inside, thr, False)
        rnd = rows["random"]
        rows["detector"] = {k: np.where(mapped, d[k], rnd[k]) for k in d}
        out[f"{split}/mapped_phrases"] = float(mapped.mean())
    for name, r in rows.items():
        for k, v in r.items():
            out[f"{split}/baseline/{name}/{k}"] = float(np.mean(v))
    return out


def markdown(metrics: dict[str, float], split: str = "test", label: str = "model") -> str:
    """The results table (R@1/5/10, pointing) for the model and the baselines, then per-type R@1."""
    lines = ["| method | R@1 | R@5 | R@10 | pointing |", "|---|---|---|---|---|"]
    rows = [(n, f"{split}/baseline/{n}/") for n in ("random", "centre", "largest", "detector")] + [
        (label, f"{split}/")
    ]
    for name, pre in rows:
        if f"{pre}r1" in metrics:
            vals = " | ".join(f"{metrics[f'{pre}{k}']:.4f}" for k in ("r1", "r5", "r10", "pointing"))
            lines.append(f"| {name} | {vals} |")
    ub = metrics.get(f"{split}/upper_bound")
    if ub is not None:
        lines.append(f"\nproposal upper bound (any proposal with IoU >= 0.5): {ub:.4f}; phrases: "
                     f"{int(metrics.get(f'{split}/phrases', 0))}\n")  # fmt: skip
    types = [(t, metrics[f"{split}/type/{t}/r1"]) for t in EVAL_TYPES if f"{split}/type/{t}/r1" in metrics]
    if types:
        lines += ["| type | R@1 |", "|---|---|", *[f"| {t} | {v:.4f} |" for t, v in types]]
    return "\n".join(lines) + "\n"


def heatmap(size: tuple[int, int], boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """[H, W]: per pixel, the max score over the proposals that cover it (NaN where none does)."""
    w, h = size
    out = np.full((h, w), -np.inf, np.float32)
    for (x1, y1, x2, y2), s in zip(boxes, scores):
        a, b = int(max(0, np.floor(y1))), int(min(h, np.ceil(y2)))
        c, d = int(max(0, np.floor(x1))), int(min(w, np.ceil(x2)))
        out[a:b, c:d] = np.maximum(out[a:b, c:d], s)
    return np.where(np.isfinite(out), out, np.nan)


def draw(
    image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, phrase: str, out: Path, top: int = 3
) -> tuple[Path, Path]:
    """<out>.png: the top box (thick) and the next ones (thin) with the phrase; <out>_heat.png: the score heat map."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    out.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(image).convert("RGB")
    scale = max(1, 384 // max(img.size))
    big = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    d = ImageDraw.Draw(big)
    order = np.argsort(-scores)[:top]
    for r in order[::-1]:
        col = (0, 200, 0) if r == order[0] else (255, 160, 0)
        d.rectangle([float(v) * scale for v in boxes[r]], outline=col, width=3 if r == order[0] else 1)
    x1, y1 = boxes[order[0]][:2] * scale
    label = f"{phrase} ({scores[order[0]]:.2f})"
    d.rectangle([x1, max(0, y1 - 12), x1 + 6 * len(label) + 4, max(12, y1)], fill=(0, 0, 0))
    d.text((x1 + 2, max(0, y1 - 12)), label, fill=(255, 255, 255))
    p1 = out.with_suffix(".png")
    big.save(p1)
    hm = heatmap(img.size, boxes, scores)
    lo, hi = np.nanmin(hm) if np.isfinite(hm).any() else 0.0, np.nanmax(hm) if np.isfinite(hm).any() else 1.0
    z = np.nan_to_num((hm - lo) / max(hi - lo, 1e-6), nan=0.0)
    rgb = (colormaps["jet"](z)[..., :3] * 255).astype(np.float32)
    blend = (0.5 * np.asarray(img, np.float32) + 0.5 * rgb).astype(np.uint8)
    p2 = out.parent / f"{out.name}_heat.png"
    Image.fromarray(blend).resize(big.size, Image.NEAREST).save(p2)
    return p1, p2
