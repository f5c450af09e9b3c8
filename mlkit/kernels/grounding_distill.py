"""Hot spot of `grounding` (spec §2.4, §5): the detector-distillation targets and loss for a whole batch.

For each mapped phrase p of sentence i: r^ = argmax_r s(r, p) over the paired image's valid regions; its K
IoU-neighbours N_K(r^) (precomputed per image, `iou_neighbours`); teacher q = softmax_k(P_det(c(p)|r_k) / T);
student softmax_k(s(r_k, p)); loss = mean over mapped phrases of CE(q, student). `distill_batched` does it with
gathers over [B, P, K] (no Python loop; CPU or CUDA); `distill_loop` is the original's way (a Python loop over the
batch and the phrases) and `distill_ref_np` a NumPy reference. Boxes follow bbox.pyx: IoU with +0.001 on sides.
"""

from __future__ import annotations

import numpy as np
import torch

EPS_SIDE = 0.001


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, m] IoU of (x1, y1, x2, y2) boxes, widths and heights + 0.001 (bbox.pyx, continuous coordinates)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = min(p[2], q[2]) - max(p[0], q[0]) + EPS_SIDE
            ih = min(p[3], q[3]) - max(p[1], q[1]) + EPS_SIDE
            if iw > 0 and ih > 0:
                ua = (p[2] - p[0] + EPS_SIDE) * (p[3] - p[1] + EPS_SIDE) + (q[2] - q[0] + EPS_SIDE) * (
                    q[3] - q[1] + EPS_SIDE) - iw * ih  # fmt: skip
                out[i, j] = iw * ih / ua
    return out


def box_iou(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Batched IoU [..., n, m] of boxes [..., n, 4] and [..., m, 4] (torch; any device)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = rb - lt + EPS_SIDE
    inter = torch.where((wh > 0).all(-1), wh[..., 0] * wh[..., 1], torch.zeros((), dtype=wh.dtype))
    area_a = (a[..., 2] - a[..., 0] + EPS_SIDE) * (a[..., 3] - a[..., 1] + EPS_SIDE)
    area_b = (b[..., 2] - b[..., 0] + EPS_SIDE) * (b[..., 3] - b[..., 1] + EPS_SIDE)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter)


def iou_neighbours(boxes: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """[R, K] int16: for each valid region, the K valid regions of highest IoU with it (itself first); -1 pads."""
    r = len(boxes)
    out = np.full((r, k), -1, np.int16)
    valid = np.flatnonzero(mask)
    if len(valid) == 0:
        return out
    iou = box_iou(boxes[valid], boxes[valid]).numpy()
    iou[np.arange(len(valid)), np.arange(len(valid))] = 2.0  # itself first, whatever ties
    order = np.argsort(-iou, axis=1, kind="stable")[:, :k]
    out[valid, : order.shape[1]] = valid[order]
    return out


def teacher_column(det: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """[B, P, R]: P_det(c(p) | r) for every phrase's class (cls < 0 gives column 0, masked by the caller)."""
    idx = cls.clamp(min=0).long()[:, None, :].expand(-1, det.shape[1], -1)
    return det.gather(2, idx).transpose(1, 2)


def distill_batched(s: torch.Tensor, rmask: torch.Tensor, neigh: torch.Tensor, tcol: torch.Tensor,
                    valid: torch.Tensor, temp: float = 1.0) -> tuple[torch.Tensor, int]:  # fmt: skip
    """(mean CE over valid phrases, their count). s, tcol [B,P,R]; rmask [B,R]; neigh [B,R,K] long; valid [B,P]."""
    b, p, _ = s.shape
    k = neigh.shape[-1]
    with torch.no_grad():
        rhat = s.masked_fill(~rmask[:, None, :], float("-inf")).argmax(-1)  # [B, P]
        nb = neigh.gather(1, rhat[..., None].expand(b, p, k))  # [B, P, K]
        ok = nb >= 0
        nb = nb.clamp(min=0)
        t = tcol.gather(2, nb).float() / temp
        q = torch.softmax(t.masked_fill(~ok, float("-inf")), -1)
    logp = torch.log_softmax(s.gather(2, nb).masked_fill(~ok, float("-inf")), -1)
    ce = -(q * logp.masked_fill(~ok, 0.0)).sum(-1)
    n = int(valid.sum())
    if n == 0:
        return s.sum() * 0.0, 0
    return ce[valid].mean(), n


def distill_loop(s: torch.Tensor, rmask: torch.Tensor, neigh: torch.Tensor, tcol: torch.Tensor,
                 valid: torch.Tensor, temp: float = 1.0) -> tuple[torch.Tensor, int]:  # fmt: skip
    """The original's way: a Python loop over the batch and the phrases (the benchmark's baseline)."""
    terms = []
    for i in range(s.shape[0]):
        regions = torch.nonzero(rmask[i]).flatten()
        for j in range(s.shape[1]):
            if not bool(valid[i, j]):
                continue
            rhat = regions[s[i, j, regions].argmax()]
            nb = neigh[i, rhat]
            nb = nb[nb >= 0]
            q = torch.softmax(tcol[i, j, nb].float().detach() / temp, 0)
            terms.append(-(q * torch.log_softmax(s[i, j, nb], 0)).sum())
    if not terms:
        return s.sum() * 0.0, 0
    return torch.stack(terms).mean(), len(terms)


def distill_ref_np(s: np.ndarray, rmask: np.ndarray, neigh: np.ndarray, tcol: np.ndarray, valid: np.ndarray,
                   temp: float = 1.0) -> float:  # fmt: skip
    """NumPy reference of the loss value (float64)."""
    vals = []
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            if not valid[i, j]:
                continue
            sc = np.where(rmask[i], s[i, j], -np.inf)
            nb = neigh[i, int(sc.argmax())]
            nb = nb[nb >= 0]
            t = tcol[i, j, nb].astype(np.float64) / temp
            q = np.exp(t - t.max())
            q /= q.sum()
            z = s[i, j, nb].astype(np.float64)
            logp = z - z.max() - np.log(np.exp(z - z.max()).sum())
            vals.append(-(q * logp).sum())
    return float(np.mean(vals)) if vals else 0.0


def soft_distill(s: torch.Tensor, rmask: torch.Tensor, det: torch.Tensor, sidx: torch.Tensor, sw: torch.Tensor,
                 valid: torch.Tensor) -> tuple[torch.Tensor, int]:  # fmt: skip
    """--distill soft: teacher over all regions, t_r = sum_k w_k P_det(c_k | r) (5 best classes), softmax over r."""
    b, p, _ = s.shape
    idx = sidx.long().reshape(b, 1, p * sidx.shape[-1]).expand(-1, det.shape[1], -1)
    cols = det.gather(2, idx).reshape(b, det.shape[1], p, -1).float()  # [B, R, P, 5]
    t = (cols * sw[:, None].float()).sum(-1).transpose(1, 2)  # [B, P, R]
    m = ~rmask[:, None, :]
    q = torch.softmax(t.masked_fill(m, float("-inf")), -1)
    logp = torch.log_softmax(s.masked_fill(m, float("-inf")), -1)
    ce = -(q * logp.masked_fill(m, 0.0)).sum(-1)
    n = int(valid.sum())
    return (ce[valid].mean() if n else s.sum() * 0.0), n
