"""Segment training steps: the bundle of loaded data, batch assembly (crop/resize/flip), the semi-supervised
batch sampler of spec §2.5, the classification pretraining stage and one training epoch of any arch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mlkit.tasks.segment.augment import photometric
from mlkit.tasks.segment.data import VOID, SegData, Store, square, to_input
from mlkit.tasks.segment.loss import class_loss, tw_step_loss
from mlkit.tasks.segment.model import SegNet


@dataclass
class Bundle:
    data: SegData
    labelled: set[str]
    store: Store = field(default_factory=Store)

    @property
    def k(self) -> int:
        return len(self.data.classes)


def make_batch(b: Bundle, idx: list[int], with_mask: bool, size: int, hflip: bool, gen: torch.Generator,
               device: str, photo: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(x, y_pix, y_img) for train items idx: random square crop -> size, random flip, with `photo` the original's
    photometric augmentations; y_pix -1 = ignore."""
    xs, ys, ls = [], [], []
    for i in idx:
        it = b.data.train[i]
        img, mask = b.store.get(it)
        masked = with_mask and mask is not None and it.stem in b.labelled
        off = tuple(float(v) for v in torch.rand(2, generator=gen))
        img, mask = square(img, mask if masked else None, size, off)
        flip = hflip and bool(torch.rand(1, generator=gen) < 0.5)
        if flip:
            img = img[:, ::-1]
            mask = mask[:, ::-1] if mask is not None else None
        if photo:
            img = photometric(np.ascontiguousarray(img), gen)
        lab = np.zeros(b.k, np.float32)
        lab[0] = 1.0
        if masked and mask is not None:
            present = np.unique(mask)
            lab[[int(c) for c in present if 0 < c < b.k]] = 1.0  # labels recomputed from the cropped mask
            ys.append(np.where(mask == VOID, -1, mask.astype(np.int64)))
        else:
            lab[[c for c in it.labels if 0 < c < b.k]] = 1.0
            ys.append(np.full(img.shape[:2], -1, np.int64))
        xs.append(to_input(np.ascontiguousarray(img)))
        ls.append(lab)
    t = torch.from_numpy
    return t(np.stack(xs)).to(device), t(np.stack(ys)).to(device), t(np.stack(ls)).to(device)


def semi_batches(n_lab: int, n_unl: int, bs: int, n_batches: int, gen: torch.Generator, labelled_only: bool
                 ) -> list[tuple[list[int], list[int]]]:  # fmt: skip
    """Per batch (positions in the labelled pool, positions in the unlabelled pool), spec §2.5: each batch draws
    round(0.5 B + U(-0.5, 0.5)) labelled images (pool reshuffled when exhausted), the rest unlabelled."""
    pools = {"l": (n_lab, [], 0), "u": (n_unl, [], 0)}

    def draw(key: str, k: int) -> list[int]:
        n, perm, pos = pools[key]
        out = []
        while len(out) < k and n > 0:
            if pos >= len(perm):
                perm, pos = torch.randperm(n, generator=gen).tolist(), 0
            out.append(perm[pos])
            pos += 1
        pools[key] = (n, perm, pos)
        return out

    res = []
    for _ in range(n_batches):
        if labelled_only or n_unl == 0:
            nl = bs
        elif n_lab == 0:
            nl = 0
        else:
            nl = int(round(0.5 * bs + float(torch.rand(1, generator=gen)) - 0.5))
        lab = draw("l", nl)
        res.append((lab, draw("u", bs - len(lab))))
    return res


def pretrain(cfg: dict, b: Bundle, model: SegNet, gen: torch.Generator, device: str) -> float:
    """Classification pretraining of the encoder on image labels of all train images (AdamW, pretrain_lr)."""
    opt = torch.optim.AdamW(model.encoder.parameters(), lr=float(cfg["pretrain_lr"]),
                            weight_decay=float(cfg["weight_decay"]))  # fmt: skip
    bs, n, last = int(cfg["batch_size"]), len(b.data.train), 0.0
    model.train()
    for _ in range(int(cfg["pretrain_epochs"])):
        perm = torch.randperm(n, generator=gen).tolist()
        for s in range(0, n - bs + 1 if n >= bs else 1, bs):
            x, _, yi = make_batch(b, perm[s : s + bs], False, int(cfg["image_size"]), bool(cfg["hflip"]), gen,
                                  device, bool(cfg.get("photometric", False)))  # fmt: skip
            opt.zero_grad()
            loss = class_loss(model.classify(x), yi)
            loss.backward()
            opt.step()
            last = float(loss.detach())
    return last


def train_epoch(cfg: dict, b: Bundle, model: SegNet, net: Any, opt: Any, gen: torch.Generator, device: str,
                tick: Any, rank: int = 0, world: int = 1) -> dict[str, float]:  # fmt: skip
    """One epoch of ceil(N_train / B) steps (std-unet: batches of pixel-labelled images only)."""
    lab = [i for i, it in enumerate(b.data.train) if it.stem in b.labelled and it.mask is not None]
    labset = set(lab)
    unl = [i for i in range(len(b.data.train)) if i not in labset]
    bs = int(cfg["batch_size"])
    std = cfg["arch"] == "std-unet"
    if std and not lab:
        return {"train/loss": float("nan")}
    plan = semi_batches(len(lab), len(unl), bs, math.ceil(len(b.data.train) / bs), gen, std)
    plan = (
        plan[: len(plan) // world * world] if world > 1 else plan
    )  # every rank runs the same number of steps
    model.train()
    tot = {"loss": 0.0, "pixel": 0.0, "cls": 0.0}
    steps = 0
    for pl, pu in plan[rank::world]:
        idx = [lab[i] for i in pl] + [unl[i] for i in pu]
        x, y, yi = make_batch(b, idx, True, int(cfg["image_size"]), bool(cfg["hflip"]), gen, device,
                              bool(cfg.get("photometric", False)))  # fmt: skip
        opt.zero_grad()
        out = tw_step_loss(model, x, y, yi, float(cfg["alpha"]), float(cfg["beta"]), cfg["grad_mode"],
                           classes=not std, fwd=net)  # fmt: skip
        if world > 1 and cfg["grad_mode"] == "iterative" and cfg["arch"] == "tw":
            _all_reduce_grads(model, world)  # the iterative path calls the bare model, outside DDP's hooks
        opt.step()
        for k in tot:
            tot[k] += float(out[k])
        steps += 1
        if tick():
            break
    return {f"train/{k}": v / max(steps, 1) for k, v in tot.items()}


def _all_reduce_grads(model: torch.nn.Module, world: int) -> None:
    import torch.distributed as tdist

    for p in model.parameters():
        if p.grad is not None:
            tdist.all_reduce(p.grad)
            p.grad /= world
