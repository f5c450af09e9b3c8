"""Image-sentence score, sentence->image InfoNCE and the lambda ramp (spec §2.2-2.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ramp(step: int, every: int = 500, cap: float = 3.0) -> float:
    """lambda(step) = min(0.001 + floor(step / every), cap): 0.001, then 1.001, 2.001, 3.0 (a step ramp)."""
    return min(0.001 + step // every, cap)


def region_phrase(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """s[i, p, j, r] = <g[i, p], f[j, r]>: every phrase of sentence i against every region of image j."""
    return torch.einsum("ipe,jre->ipjr", g, f)


def image_sentence(
    s: torch.Tensor, rmask: torch.Tensor, pmask: torch.Tensor, scale: float = 2.0
) -> torch.Tensor:
    """L[i, j] = scale * sum_{valid p of i} max_{valid r of j} s[i, p, j, r] (max before the sum)."""
    m = s.masked_fill(~rmask[None, None], float("-inf")).amax(-1)  # [B, P, B]
    return scale * m.masked_fill(~pmask[..., None], 0.0).sum(1)


def info_nce(
    logits: torch.Tensor, img: torch.Tensor | None = None, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Sentence->image InfoNCE with in-batch negatives; other captions of the same image are masked (img given);
    rows: the sentences that count (those with a valid phrase)."""
    b = logits.shape[0]
    if img is not None:
        same = img[:, None] == img[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    ce = F.cross_entropy(logits, torch.arange(b, device=logits.device), reduction="none")
    if rows is None:
        return ce.mean()
    return ce[rows].mean() if bool(rows.any()) else logits.sum() * 0.0
