"""Unsupervised Feature Fusion (UFF, spec §2.6): two MLP branches and the patch-wise contrastive loss."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _mlp(dim: int, ratio: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim), nn.Linear(dim, ratio * dim), nn.GELU(), nn.Linear(ratio * dim, dim)
    )


class UFF(nn.Module):
    """chi_pt, chi_rgb (LN -> Linear -> GELU -> Linear) and the loss-only heads sigma_pt, sigma_rgb (-> 256)."""

    def __init__(self, pt_dim: int, rgb_dim: int, ratio: int = 4, head_dim: int = 256) -> None:
        super().__init__()
        self.chi_pt = _mlp(pt_dim, ratio)
        self.chi_rgb = _mlp(rgb_dim, ratio)
        self.sigma_pt = nn.Linear(pt_dim, head_dim)
        self.sigma_rgb = nn.Linear(rgb_dim, head_dim)

    def forward(self, x_pt: torch.Tensor, x_rgb: torch.Tensor) -> torch.Tensor:
        """Fused patch features [chi_pt(x_pt) || chi_rgb(x_rgb)] (point part first)."""
        return torch.cat([self.chi_pt(x_pt), self.chi_rgb(x_rgb)], dim=-1)

    def loss(self, x_pt: torch.Tensor, x_rgb: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """One-directional (rgb -> pt) InfoNCE over the N patch pairs: 2T * CE(q k^T / T, diagonal)."""
        q = F.normalize(self.sigma_rgb(self.chi_rgb(x_rgb)), dim=1)
        k = F.normalize(self.sigma_pt(self.chi_pt(x_pt)), dim=1)
        logits = q @ k.T / temperature
        return 2 * temperature * F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def rgb_to_point_grid(
    rgb: np.ndarray, rgb_grid: int, pairs: str = "aligned", point_grid: int | None = None
) -> np.ndarray:
    """RGB patch rows (g*g, D) for each point patch (default 2g x 2g): block replication, or the reference's order.

    "reference" reproduces the original's misaligned training pairs (spec §8): fused row 784j+i gets RGB patch
    (4i+j) mod 784.
    """
    g2 = point_grid or 2 * rgb_grid
    n_rgb = rgb_grid * rgb_grid
    if pairs == "reference":
        p = np.arange(g2 * g2)
        idx = (4 * (p % n_rgb) + p // n_rgb) % n_rgb
        return rgb[idx]
    f = g2 // rgb_grid
    r, c = np.divmod(np.arange(g2 * g2), g2)
    return rgb[(r // f) * rgb_grid + c // f]


def foreground(x_pt: np.ndarray, strict: bool) -> np.ndarray:
    """Patches with point support: all dims non-zero (reference, Point-MAE) or any non-zero (sparse FPFH)."""
    return np.all(x_pt != 0, axis=1) if strict else np.any(x_pt != 0, axis=1)


def train_uff(
    samples: list[tuple[Any, Any]],
    cfg: dict[str, Any],
    device: str,
    generator: torch.Generator,
    track: Any,
    log: Any,
) -> UFF:
    """Train UFF on cached (rgb, pt) patch features of all categories; returns the model in eval mode."""
    u = cfg["uff"]
    rgb0, pt0 = samples[0]
    rgb_grid = int(round(math.sqrt(rgb0.shape[0])))
    pt_grid = int(round(math.sqrt(pt0.shape[0])))
    strict = str(cfg["point_backbone"]).startswith("pointmae")
    model = UFF(pt0.shape[1], rgb0.shape[1], int(u["hidden_ratio"])).to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=float(cfg["lr"]), betas=(0.9, 0.95), weight_decay=u["weight_decay"]
    )
    bs = max(1, min(int(cfg["batch_size"]), len(samples)))
    steps = int(u["steps"]) or int(cfg["epochs"]) * math.ceil(len(samples) / bs)
    warm = min(int(u["warmup_steps"]), max(0, steps - 1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, warm, steps))
    model.train()
    last = float("nan")
    for step in track(_steps(steps), "UFF", steps):
        pick = torch.randperm(len(samples), generator=generator)[:bs].tolist()
        xs_pt, xs_rgb = [], []
        for i in pick:
            rgb, pt = np.asarray(samples[i][0], np.float32), np.asarray(samples[i][1], np.float32)
            fg = foreground(pt, strict)
            xs_pt.append(pt[fg])
            xs_rgb.append(rgb_to_point_grid(rgb, rgb_grid, str(u["pairs"]), pt_grid)[fg])
        x_pt, x_rgb = np.concatenate(xs_pt), np.concatenate(xs_rgb)
        if len(x_pt) < 2:
            continue
        sub = torch.randperm(len(x_pt), generator=generator)[: int(u["pairs_per_step"]) or None].numpy()
        loss = model.loss(torch.from_numpy(x_pt[sub]).to(device), torch.from_numpy(x_rgb[sub]).to(device),
                          float(u["temperature"]))  # fmt: skip
        if not torch.isfinite(loss):
            from mlkit.core.errors import RunFailure

            raise RunFailure(
                f"UFF loss is {loss.item()} at step {step}", None, "Lower --lr or check the features."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        last = float(loss.item())
        if step == 0 or (step + 1) % max(1, steps // 4) == 0:
            log(f"UFF step {step + 1}/{steps}: loss {last:.4f}")
    model.eval()
    return model


def fuse(model: UFF | None, rgb: np.ndarray, pt: np.ndarray, device: str, chunk: int = 8192) -> np.ndarray:
    """Fused features (n_pt, Dp + Dr) of one sample with aligned replication of the RGB grid."""
    grid = int(round(math.sqrt(rgb.shape[0])))
    x_rgb = rgb_to_point_grid(
        np.asarray(rgb, np.float32), grid, "aligned", int(round(math.sqrt(pt.shape[0])))
    )
    x_pt = np.asarray(pt, np.float32)
    out = []
    with torch.no_grad():
        for s in range(0, len(x_pt), chunk):
            out.append(model(torch.from_numpy(x_pt[s : s + chunk]).to(device),
                             torch.from_numpy(x_rgb[s : s + chunk]).to(device)).float().cpu().numpy())  # fmt: skip
    return np.concatenate(out)


def _lr_factor(step: int, warm: int, total: int) -> float:
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _steps(n: int) -> Iterator[int]:
    yield from range(n)


# the authors' FeatureFusionBlock names (M3DM `models/feature_fusion.py`) -> this module's
AUTHORS_UFF_KEYS = {"xyz_norm.": "chi_pt.0.", "xyz_mlp.fc1.": "chi_pt.1.", "xyz_mlp.fc2.": "chi_pt.3.",
                    "rgb_norm.": "chi_rgb.0.", "rgb_mlp.fc1.": "chi_rgb.1.", "rgb_mlp.fc2.": "chi_rgb.3.",
                    "xyz_head.": "sigma_pt.", "rgb_head.": "sigma_rgb."}  # fmt: skip


def _read_uff_file(path: str) -> Any:
    """torch.load with weights_only; the authors' checkpoints (MAE's save_model: {'model', 'optimizer', 'epoch',
    'scaler', 'args'}) also hold an argparse.Namespace, which is allowed and nothing else."""
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def uff_state_dict(ck: Any) -> dict:
    """The UFF weights of a file's content in this module's names: an mlkit checkpoint (uff.*), a plain state_dict,
    or the authors' released format ({'model': FeatureFusionBlock state_dict}, 'module.' prefixes stripped)."""
    sd = ck if isinstance(ck, dict) else {}
    for key in ("model", "state_dict"):
        if isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    sd = {str(k).removeprefix("module."): v for k, v in sd.items()}
    if any(k.startswith("uff.") for k in sd):
        sd = {k[4:]: v for k, v in sd.items() if k.startswith("uff.")}
    if any(k.startswith(tuple(AUTHORS_UFF_KEYS)) for k in sd):
        out = {}
        for k, v in sd.items():
            pre = next((a for a in AUTHORS_UFF_KEYS if k.startswith(a)), None)
            if pre is not None:
                out[AUTHORS_UFF_KEYS[pre] + k[len(pre):]] = v
        sd = out
    return sd


def load_uff(path: str, sample: tuple[np.ndarray, np.ndarray], ratio: int, log: Any = None) -> UFF:
    """A trained UFF, reused across category runs (`--uff PATH`): an mlkit anomaly checkpoint (its uff.* weights),
    a plain UFF state_dict, or the authors' released UFF checkpoint; the feature widths must match this run's
    extractors (exit 3 otherwise)."""
    import pickle

    from mlkit.core.errors import DataError

    try:
        ck = _read_uff_file(path)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise DataError(f"cannot read the UFF file ({e.__class__.__name__})", str(path),
                        "Give best.pt of an mlkit anomaly fusion/triple run, a UFF state_dict, or the authors' "
                        "UFF checkpoint.") from None  # fmt: skip
    sd = uff_state_dict(ck)
    rgb_dim, pt_dim = sample[0].shape[1], sample[1].shape[1]
    model = UFF(pt_dim, rgb_dim, ratio)
    own = model.state_dict()
    if set(sd) != set(own) or any(tuple(sd[k].shape) != tuple(own[k].shape) for k in own):
        raise DataError(f"no UFF for point {pt_dim}-d / rgb {rgb_dim}-d features in this file", str(path),
                        "Train it with the same --rgb-backbone and --point-backbone.")  # fmt: skip
    model.load_state_dict(sd)
    if log:
        log(f"UFF loaded from {path} (not trained in this run)")
    return model.eval()
