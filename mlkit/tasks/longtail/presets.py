"""longtail config: `--preset paper` (the paper's whole protocol, spec §2) and value checks; plus the PNG writers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.config import set_dotted
from mlkit.core.errors import UsageError

# dotted key -> value; filled only where the user did not set the key (spec §2.1 / §2.2, ViT-B/16 at 224)
PAPER_FINETUNE: dict[str, Any] = {
    "arch": "vit-base", "input_size": 224, "epochs": 100, "batch_size": 1024, "lr": 1.0e-3 * 1024 / 256,
    "min_lr": 1.0e-6, "warmup_epochs": 10, "weight_decay": 0.05, "betas": [0.9, 0.999], "layer_decay": 0.75,
    "drop_path": 0.1, "smoothing": 0.1, "mixup": 0.8, "cutmix": 1.0, "mixup_prob": 1.0, "mixup_switch_prob": 0.5,
    "mixup_mode": "batch", "loss": "bal_bce", "tau": 1.0, "aug.scale": [0.08, 1.0], "aug.hflip": 0.5,
    "aug.randaug": "rand-m9-mstd0.5-inc1", "aug.re_prob": 0.25, "aug.crop_pct": 0.875, "select": "last",
    "mgp.epochs": 800, "mgp.lr": 1.5e-4 * 4096 / 256, "mgp.warmup_epochs": 40, "mgp.scale": [0.2, 1.0],
    "mgp.decoder_dim": 512, "mgp.decoder_depth": 8, "mgp.decoder_heads": 16, "mgp.mask_ratio": 0.75,
    "mgp.norm_pix": True, "mgp.betas": [0.9, 0.95], "mgp.weight_decay": 0.05,
}  # fmt: skip
PAPER_PRETRAIN: dict[str, Any] = {"batch_size": 4096}

CHOICES = {"stage": ("finetune", "pretrain"), "select": ("last", "best"), "format": ("auto", "cifar10", "cifar100", "split", "folder"),
           "norm": ("auto", "cifar", "imagenet", "imagenet-lt", "inat"), "mixup_mode": ("batch", "pair", "elem")}  # fmt: skip


def paper_norm(cfg: dict) -> str:
    """The paper's mean/std for the data: CIFAR, ImageNet-LT, iNat18, else ImageNet's."""
    name = f"{cfg['data'] or ''} {cfg['split_file'] or ''}".lower()
    if cfg["format"] in ("cifar10", "cifar100") or "cifar" in name or not (cfg["data"] or cfg["split_file"]):
        return "cifar"
    if "imagenet_lt" in name or "imagenet-lt" in name:
        return "imagenet-lt"
    return "inat" if "inat" in name else "imagenet"


def finalize(cfg: dict, explicit: frozenset[str], mode: str) -> dict:
    """Apply --preset paper to unset keys, derive the pretrain stage's epochs, check values (exit 2)."""
    from mlkit.tasks.longtail.loss import LOSSES
    from mlkit.tasks.longtail.model import ARCHS

    if cfg["preset"] not in (None, "", "paper"):
        raise UsageError(f"unknown preset {cfg['preset']!r}", "--preset", "Use --preset paper (or none).")
    if cfg["preset"] == "paper":
        table = dict(PAPER_FINETUNE, norm=paper_norm(cfg))
        if cfg["stage"] == "pretrain":
            table.update(PAPER_PRETRAIN)
        for key, value in table.items():
            if key not in explicit:
                set_dotted(cfg, key, value)
    if (
        cfg["stage"] == "pretrain"
    ):  # `mlkit longtail pretrain` runs mgp.epochs at mgp.lr unless --epochs / --lr
        if "epochs" not in explicit:
            cfg["epochs"] = int(cfg["mgp"]["epochs"])
        if "lr" not in explicit:
            cfg["lr"] = float(cfg["mgp"]["lr"])
    for key, ok in CHOICES.items():
        if cfg[key] not in ok:
            raise UsageError(f"unknown {key} {cfg[key]!r}", key, f"Use one of {', '.join(ok)}.")
    if cfg["loss"] not in LOSSES:
        raise UsageError(f"unknown loss {cfg['loss']!r}", "--loss", f"Use one of {', '.join(LOSSES)}.")
    if cfg["arch"] not in ARCHS:
        raise UsageError(f"unknown arch {cfg['arch']!r}", "--arch", f"Use one of {', '.join(ARCHS)}.")
    patch = ARCHS[cfg["arch"]][0]
    if int(cfg["input_size"]) % patch or int(cfg["input_size"]) < patch:
        raise UsageError(
            f"input_size {cfg['input_size']} is not a multiple of the patch size {patch}", "--input-size"
        )
    if cfg["lt"]["profile"] not in ("exp", "step", "none") or float(cfg["lt"]["rho"]) < 1:
        raise UsageError("lt.profile must be exp, step or none and lt.rho >= 1", "lt")
    if not 0.0 <= float(cfg["mgp"]["mask_ratio"]) < 1.0:
        raise UsageError("mgp.mask_ratio must be in [0, 1)", "mgp.mask_ratio")
    if int(cfg["batch_size"]) < 2:
        raise UsageError("batch_size must be >= 2 (Mixup pairs images)", "--batch-size")
    init = str(cfg["init"] or "mgp")
    if init not in ("mgp", "random"):
        if not Path(init).expanduser().exists():
            raise UsageError(
                f"--init {init!r} does not exist", "--init", "Give an MGP run dir or .pt, or mgp / random."
            )
        init = str(Path(init).expanduser().resolve())
    cfg["init"] = init
    return cfg


# ------------------------------------------------------------------------------------------------ PNGs
def write_samples(folder: Path, split: Any, classes: list[str], per_class: int = 1, limit: int = 10) -> None:
    """A few test images as PNGs (what `predict` reads; the contract test's sample inputs)."""
    folder.mkdir(parents=True, exist_ok=True)
    seen: dict[int, int] = {}
    for i, y in enumerate(split.labels):
        y = int(y)
        if seen.get(y, 0) >= per_class:
            continue
        seen[y] = seen.get(y, 0) + 1
        split.image(i).save(folder / f"test{i:05d}_class{y}.png")
        if sum(seen.values()) >= min(limit, len(classes) * per_class):
            break


def reconstruction_png(path: Path, mae: Any, ds: Any, device: str, n: int = 8) -> None:
    """Rows: input, masked input, MAE reconstruction (visible patches pasted back), for n test images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from mlkit.tasks.longtail.model import patchify, unpatchify

    n = min(n, len(ds))
    x = torch.stack([ds[i][0] for i in range(n)]).to(device)
    mae.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _, pred, mask = mae(x)
    p = mae.patch
    tgt = patchify(x, p)
    if mae.norm_pix:  # undo the per-patch normalisation with the true patch statistics (for display only)
        pred = pred * (tgt.var(-1, keepdim=True) + 1e-6) ** 0.5 + tgt.mean(-1, keepdim=True)
    m = mask[..., None]
    masked = unpatchify(tgt * (1 - m), p)
    recon = unpatchify(tgt * (1 - m) + pred * m, p)
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2), squeeze=False)
    for j in range(n):
        for r, img in enumerate((x[j], masked[j], recon[j])):
            a = img.permute(1, 2, 0).cpu().numpy()
            a = (a - a.min()) / max(float(np.ptp(a)), 1e-6)
            axes[r, j].imshow(a)
            axes[r, j].axis("off")
    for r, t in enumerate(("input", "visible 25%", "reconstruction")):
        axes[r, 0].set_title(t, fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
