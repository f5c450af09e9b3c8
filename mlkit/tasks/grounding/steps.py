"""One training pass: per-epoch shuffled (image, caption) pairs, batches gathered from the feature memmap,
L = L_nce + lambda(step) * L_dis (spec §2.3-2.5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mlkit.kernels.grounding_distill import distill_batched, distill_loop, soft_distill, teacher_column
from mlkit.tasks.grounding.data import GData
from mlkit.tasks.grounding.loss import image_sentence, info_nce, ramp, region_phrase


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[i, index[i, j], ...] for a [B, P, ...] tensor and a [B, P'] index."""
    return x.gather(1, index.view(*index.shape, *[1] * (x.dim() - 2)).expand(-1, -1, *x.shape[2:]))


def make_batch(data: GData, idx: np.ndarray, gen: torch.Generator, device: str, p_cap: int) -> dict[str, Any]:
    """Tensors of the pairs `idx`: regions of their images and up to p_cap phrases each (sampled when more)."""
    pr, st = data.pairs, data.store
    img = pr["img"][idx]
    order = np.argsort(img, kind="stable")  # memmap reads in file order
    uniq, inv = np.unique(img[order], return_inverse=True)
    rows = np.empty_like(inv)
    rows[order] = inv
    sel = lambda a: torch.from_numpy(np.ascontiguousarray(a[uniq][rows]))  # noqa: E731
    tok = torch.from_numpy(pr["tok"][idx])
    cls = torch.from_numpy(pr["cls"][idx].astype(np.int64))
    soft = torch.from_numpy(pr["soft"][idx])
    pmask = (tok > 0).any(-1)
    if tok.shape[1] > p_cap:  # more phrases than p_cap: sample p_cap of the valid ones at random
        key = torch.rand(pmask.shape, generator=gen) + (~pmask).float() * 2
        keep = key.argsort(1)[:, :p_cap]
        tok, cls, soft, pmask = (_take(x, keep) for x in (tok, cls, soft, pmask))
    p = max(1, int(pmask.sum(1).max()))
    first = (~pmask).float().argsort(dim=1, stable=True)[:, :p]  # valid phrases first, trim the padding
    tok, cls, soft, pmask = (_take(x, first) for x in (tok, cls, soft, pmask))
    out = {"img": torch.from_numpy(img), "feats": sel(st.feats), "rmask": sel(st.rmask),
           "neigh": sel(st.neigh).long(), "tok": tok, "cls": cls, "soft": soft, "pmask": pmask}  # fmt: skip
    if st.det is not None:
        out["det"] = sel(st.det)
    return {k: v.to(device) for k, v in out.items()}


def batch_loss(cfg: dict, net: Any, b: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
    f, g = net(b["feats"], b["tok"])
    s = region_phrase(f, g)  # [B, P, B, R]
    rows = b["pmask"].any(1)
    nce = info_nce(image_sentence(s, b["rmask"], b["pmask"], float(cfg["scale"])),
                   b["img"] if cfg["dedup_images"] else None, rows)  # fmt: skip
    parts = {"nce": float(nce.detach())}
    loss = nce
    mode = cfg["distill"]
    if mode != "none" and "det" in b:
        n_b = s.shape[0]
        ar = torch.arange(n_b, device=s.device)
        pair = s[ar, :, ar]  # [B, P, R]: each sentence's phrases against its own image
        if mode == "soft":
            valid = b["pmask"] & (b["soft"][..., 1].sum(-1) > 0)
            dis, n = soft_distill(pair, b["rmask"], b["det"], b["soft"][..., 0], b["soft"][..., 1], valid)
        else:
            valid = b["pmask"] & (b["cls"] >= 0)
            fn = distill_loop if cfg["distill_impl"] == "loop" else distill_batched
            dis, n = fn(pair, b["rmask"], b["neigh"], teacher_column(b["det"], b["cls"]), valid,
                        float(cfg["distill_temp"]))  # fmt: skip
        lam = ramp(step, int(cfg["ramp_every"]), float(cfg["ramp_cap"]))
        loss = loss + lam * dis
        parts.update(distill=float(dis.detach()), mapped=float(n), **{"lambda": lam})
    return loss, parts


def steps_per_epoch(data: GData, batch: int, world: int = 1) -> int:
    n = len(data.pairs["img"])
    return max(1, -(-n // batch) // world)


def train_epoch(cfg: dict, data: GData, net: Any, opt: torch.optim.Optimizer, gen: torch.Generator, device: str,
                epoch: int, tick: Callable[[], bool], rank: int = 0, world: int = 1) -> dict[str, float]:  # fmt: skip
    n, bs = len(data.pairs["img"]), int(cfg["batch_size"])
    perm = torch.randperm(n, generator=gen).numpy()
    per = steps_per_epoch(data, bs, world)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    net.train()
    for i in range(per):
        k = i * world + rank
        idx = perm[k * bs : (k + 1) * bs]
        if len(idx) < 2:  # a last batch of one sentence has no negative: reuse the epoch's first ones
            idx = perm[:bs]
        b = make_batch(data, idx, gen, device, int(cfg["max_phrases"]))
        loss, parts = batch_loss(cfg, net, b, epoch * per + i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        parts["loss"] = float(loss.detach())
        for key, v in parts.items():
            if key == "distill" and parts.get("mapped", 0) == 0:
                continue
            sums[key] = sums.get(key, 0.0) + v
            counts[key] = counts.get(key, 0) + 1
        if tick():
            break
    return {f"train/{k}": sums[k] / counts[k] for k in sums if k != "mapped"}
