"""longtail training steps: the MGP epoch (MAE on visible tokens), the BFT epoch (timm Mixup/CutMix + a long-tail
loss), the warm-up + cosine schedule with layer-wise lr scales, and batched inference."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlkit.core.runtime import Ctx
from mlkit.tasks.longtail import pipeline as P
from mlkit.tasks.longtail.data import LTData
from mlkit.tasks.longtail.loss import LongTailLoss


@dataclass
class Bundle:
    """Loaded data plus what the steps share: normalisation, datasets, the loss with the train prior, Mixup."""

    data: LTData
    mean: list[float]
    std: list[float]
    train: P.ImageSet
    mgp: P.ImageSet
    val: P.ImageSet
    test: P.ImageSet
    loss: LongTailLoss
    mixup: Any

    @property
    def counts(self) -> np.ndarray:
        return self.data.counts


def make_bundle(cfg: dict, data: LTData, device: str) -> Bundle:
    from timm.data import Mixup

    mean, std = P.norm_stats(cfg, data)
    ev = P.transform(cfg, False, mean, std)
    loss = LongTailLoss(
        cfg["loss"], torch.as_tensor(data.counts), float(cfg["tau"]), float(cfg["cb_beta"])
    ).to(device)
    mix = None
    if float(cfg["mixup"]) > 0 or float(cfg["cutmix"]) > 0:
        mix = Mixup(mixup_alpha=float(cfg["mixup"]), cutmix_alpha=float(cfg["cutmix"]), prob=float(cfg["mixup_prob"]),
                    switch_prob=float(cfg["mixup_switch_prob"]), mode=str(cfg["mixup_mode"]),
                    label_smoothing=float(cfg["smoothing"]), num_classes=len(data.classes))  # fmt: skip
    return Bundle(data, mean, std, P.ImageSet(data.train, P.transform(cfg, True, mean, std)),
                  P.ImageSet(data.train, P.transform(cfg, True, mean, std, "pretrain")),
                  P.ImageSet(data.val, ev), P.ImageSet(data.test, ev), loss, mix)  # fmt: skip


def autocast(cfg: dict, device: str) -> Any:
    """bf16 autocast on CUDA when cfg amp is on; nothing on CPU."""
    if cfg["amp"] and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def lr_at(step: int, total: int, warmup: int, base: float, floor: float) -> float:
    """Linear warm-up to base over `warmup` steps, then half-cycle cosine to floor at `total` (per-step, as MAE)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return floor + (base - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)  # timm's layer-wise decay groups carry lr_scale


def targets(cfg: dict, b: Bundle, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's Mixup/CutMix with smoothed mixed targets, or smoothed one-hots (off s/C, on 1 - s + s/C)."""
    from timm.data.mixup import mixup_target

    if b.mixup is not None and len(x) % 2 == 0:
        return b.mixup(x, y)
    return x, mixup_target(y, len(b.data.classes), 1.0, float(cfg["smoothing"]))


def mgp_epoch(cfg: dict, ctx: Ctx, net: nn.Module, opt: torch.optim.Optimizer, b: Bundle, epoch: int, epochs: int,
              lr: float, gen: torch.Generator, tick: Callable[[], bool]) -> float:  # fmt: skip
    """One MAE epoch over the LT train images (labels unused); returns the mean loss."""
    m = cfg["mgp"]
    loader = P.train_loader(cfg, ctx, b.mgp, gen, epoch)
    n = len(loader)
    net.train()
    total, steps = 0.0, 0
    for i, (x, _) in enumerate(loader):
        set_lr(opt, lr_at(epoch * n + i, epochs * n, int(m["warmup_epochs"]) * n, lr, 0.0))
        x = x.to(ctx.device, non_blocking=True)
        with autocast(cfg, ctx.device):
            loss, _, _ = net(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, steps = total + float(loss.detach()), steps + 1
        if tick():
            break
    return total / max(steps, 1)


def bft_epoch(cfg: dict, ctx: Ctx, net: nn.Module, opt: torch.optim.Optimizer, b: Bundle, epoch: int,
              gen: torch.Generator, tick: Callable[[], bool], ema: Any = None) -> float:  # fmt: skip
    """One Balanced Fine-Tuning epoch; returns the mean training loss."""
    loader = P.train_loader(cfg, ctx, b.train, gen, epoch)
    n, epochs = len(loader), int(cfg["epochs"])
    net.train()
    total, steps = 0.0, 0
    for i, (x, y) in enumerate(loader):
        set_lr(opt, lr_at(epoch * n + i, epochs * n, int(cfg["warmup_epochs"]) * n, float(cfg["lr"]),
                          float(cfg["min_lr"])))  # fmt: skip
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        x, t = targets(cfg, b, x, y)
        with autocast(cfg, ctx.device):
            z = net(x)
        loss = b.loss(z, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if float(cfg["clip_grad"]) > 0:
            nn.utils.clip_grad_norm_(net.parameters(), float(cfg["clip_grad"]))
        opt.step()
        if ema is not None:
            ema.update(ctx.unwrap(net).vit, step=epoch * n + i)
        total, steps = total + float(loss.detach()), steps + 1
        if tick():
            break
    return total / max(steps, 1)


@torch.no_grad()
def logits_of(model: nn.Module, ds: Any, cfg: dict, device: str) -> tuple[torch.Tensor, np.ndarray]:
    """Plain logits (N, C) of a dataset and its labels."""
    model.eval()
    outs, labels = [], []
    for x, y in P.eval_loader(cfg, ds):
        with autocast(cfg, device):
            outs.append(model(x.to(device)).float().cpu())
        labels.append(y.numpy())
    c = outs[0].shape[1] if outs else 0
    return (torch.cat(outs) if outs else torch.zeros(0, c)), (
        np.concatenate(labels) if labels else np.zeros(0, int)
    )


@torch.no_grad()
def mgp_val_loss(mae: nn.Module, ds: Any, cfg: dict, device: str, seed: int = 0) -> float:
    """MAE loss on a split with masks from a fixed seed (the global RNG streams are left as they were)."""
    mae.eval()
    total, n = 0.0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for x, _ in P.eval_loader(cfg, ds):
            with autocast(cfg, device):
                loss, _, _ = mae(x.to(device))
            total, n = total + float(loss) * len(x), n + len(x)
    return total / max(n, 1)
