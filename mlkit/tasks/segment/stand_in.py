"""The toy's stand-in for ImageNet weights: classification pretraining of an encoder on many seeded `shapes`
images with image labels only (`mlkit segment pretrain`).

The paper's encoders start from ImageNet and then learn VOC's classes from ~10k image labels; TW's heatmaps are only as
good as that classifier. 600 `shapes` images are too few for any small net to learn the shape classes (val label
accuracy at chance), so the toy experiment of the README starts every model from an encoder pretrained here, the way
the paper starts every model from the same ImageNet + VOC-label checkpoint. The output is a plain encoder state_dict
for `--encoder-weights`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mlkit.tasks.segment import data as D
from mlkit.tasks.segment.loss import class_loss
from mlkit.tasks.segment.model import build_encoder


def shapes_arrays(n: int, size: int, seed: int, lo: float = 0.2, hi: float = 0.45, n_fg: int = 3
                  ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """n seeded shapes images in memory: inputs (n, 3, size, size) scaled as in training, labels (n, 1 + n_fg),
    background = 1."""
    rng, bgs = np.random.default_rng(seed), D._backgrounds()
    x = np.empty((n, 3, size, size), np.float32)
    lab = np.zeros((n, len(D.shape_classes(n_fg))), np.float32)
    lab[:, 0] = 1.0
    for i in range(n):
        img, mask = D.draw_sample(rng, bgs, size, lo, hi, n_fg)
        x[i] = D.to_input(img)
        lab[i, [int(c) for c in np.unique(mask) if c > 0]] = 1.0
    return torch.from_numpy(x), torch.from_numpy(lab)


def label_accuracy(enc: torch.nn.Module, x: torch.Tensor, lab: torch.Tensor, batch: int = 500) -> float:
    """Per-class image-label accuracy over the foreground classes (logit > 0 = present), eval mode."""
    was = enc.training
    enc.eval()
    with torch.no_grad():
        z = torch.cat([enc(x[s : s + batch]) for s in range(0, len(x), batch)])
    enc.train(was)
    return float(((z[:, 1:] > 0).float() == lab[:, 1:]).float().mean())


def pretrain_encoder(encoder: str, width: int, images: int, epochs: int, size: int, seed: int, lr: float,
                     batch: int, log: Callable[[str], None], n_fg: int = 3) -> tuple[torch.nn.Module, float]:  # fmt: skip
    """Train `encoder` on `images` seeded shapes images (a tenth, at most 1000, held out) with the task's image
    loss (multilabel soft margin x B, background weight 0), AdamW, random flips; returns it and its val accuracy."""
    x, lab = shapes_arrays(images, size, seed, n_fg=n_fg)
    n_val = min(1000, max(1, images // 10))
    xv, lv, x, lab = x[-n_val:], lab[-n_val:], x[:-n_val], lab[:-n_val]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    enc = build_encoder(encoder, lab.shape[1], width)
    opt = torch.optim.AdamW(enc.parameters(), lr=lr)
    acc = 0.0
    for ep in range(epochs):
        enc.train()
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x) - batch + 1, batch):
            idx = perm[s : s + batch]
            xb = x[idx]
            flip = torch.rand(len(idx), 1, 1, 1, generator=gen) < 0.5
            xb = torch.where(flip, xb.flip(-1), xb)
            opt.zero_grad()
            class_loss(enc(xb), lab[idx]).backward()
            opt.step()
        acc = label_accuracy(enc, xv, lv)
        log(f"pretrain epoch {ep + 1}/{epochs}: val label accuracy {acc:.3f}")
    return enc, acc


def save_encoder(enc: torch.nn.Module, out: Path) -> None:
    from mlkit.core.checkpoint import save

    save(enc.state_dict(), out)
