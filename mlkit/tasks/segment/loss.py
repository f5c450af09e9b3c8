"""Segment losses (spec §2.3): pixel CE on heatmaps (ignore -1), multilabel soft margin x B (bg weight 0),
and the one-shot / iterative gradient modes (same gradients; iterative keeps one class's decoder graph)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mlkit.tasks.segment.model import SegNet


def pixel_loss(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean CE over pixels with y >= 0 (images without a mask carry -1 everywhere); 0 when none are labelled."""
    if not bool((y >= 0).any()):
        return h.sum() * 0.0
    return F.cross_entropy(h, y, ignore_index=-1)


def class_loss(z: torch.Tensor, y_img: torch.Tensor) -> torch.Tensor:
    """multilabel_soft_margin with weight 0 on the background class, multiplied by the batch size."""
    w = torch.ones(z.shape[1], device=z.device, dtype=z.dtype)
    w[0] = 0.0
    return F.multilabel_soft_margin_loss(z, y_img, weight=w) * z.shape[0]


def tw_step_loss(net: SegNet, x: torch.Tensor, y: torch.Tensor, y_img: torch.Tensor, alpha: float, beta: float,
                 mode: str = "oneshot", pixels: bool = True, classes: bool = True, fwd: Any = None
                 ) -> dict[str, torch.Tensor]:  # fmt: skip
    """Forward + backward of one step (gradients accumulate in net's parameters); returns the detached losses.

    oneshot: all K heatmaps in one graph. iterative (TW only): K heatmaps without graph, then per class c the
    graph of H_c alone spliced into the detached stack, backward of the pixel loss (graph retained), finally the
    classification loss; the summed gradients equal the one-shot ones."""
    if mode == "iterative" and net.arch == "tw" and pixels:
        z, sc = net.decoder.record(x), net.scale(x)
        with torch.no_grad():
            h_all = net.decoder.heatmaps(z) * sc
        lp = h_all.new_zeros(())
        for c in range(z.shape[1]):
            hc = net.decoder.heatmaps(z, [c]) * sc
            h = torch.cat([h_all[:, :c], hc, h_all[:, c + 1 :]], 1)
            lp = pixel_loss(h, y)
            (alpha * lp).backward(retain_graph=True)
        lc = class_loss(z, y_img) if classes else z.sum() * 0.0
        (beta * lc).backward()
        return {"loss": (alpha * lp + beta * lc).detach(), "pixel": lp.detach(), "cls": lc.detach()}
    z, h = (fwd or net)(x)  # fwd: the DDP wrapper under torchrun
    lp = pixel_loss(h, y) if pixels else h.sum() * 0.0
    lc = class_loss(z, y_img) if classes else z.sum() * 0.0
    loss = alpha * lp + beta * lc
    loss.backward()
    return {"loss": loss.detach(), "pixel": lp.detach(), "cls": lc.detach()}
