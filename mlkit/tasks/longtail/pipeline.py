"""longtail input pipeline: which data the config names, normalisation, timm's transforms, datasets and loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mlkit.core.errors import DataError
from mlkit.core.runtime import Ctx
from mlkit.tasks.longtail import data as D

NORMS = {  # spec §2.2
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet-lt": ((0.4797, 0.4577, 0.4077), (0.2790, 0.2712, 0.2861)),
    "inat": ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192)),
}


def default_root(cfg: dict, log: Any = None) -> Path:
    """The embedded default: sklearn's digits as a CIFAR-10 pickle folder, built once into $MLKIT_CACHE."""
    from mlkit.core.artifact import cached

    s = {"test_per_class": int(cfg["default"]["test_per_class"]), "seed": int(cfg["default"]["seed"]), "v": 1}
    return cached(
        "longtail-digits", s, lambda tmp: D.write_default(tmp, s["test_per_class"], s["seed"]), log=log
    )


def data_format(cfg: dict, root: Path | None) -> str:
    if cfg["split_file"]:
        return "split"
    if cfg["format"] != "auto":
        return str(cfg["format"])
    return D.detect_format(root) if root is not None else "cifar10"


def load(cfg: dict, log: Any = None) -> D.LTData:
    """The train / val / test splits the config names; CIFAR train sets go through the LT construction."""
    root = Path(cfg["data"]).expanduser() if cfg["data"] else None
    fmt = data_format(cfg, root)
    if fmt in ("cifar10", "cifar100"):
        root = root if root is not None else default_root(cfg, log)
        found = D.cifar_kind(root)
        folder = found[1] if found else root
        train, test, names = D.read_cifar(folder, fmt)
        lt, subset = cfg["lt"], list(range(len(train)))
        if lt["profile"] != "none":
            pool = np.bincount(train.labels, minlength=len(names))
            n_max = int(lt["n_max"]) or int(pool.min())
            counts = D.lt_counts(n_max, len(names), float(lt["rho"]), str(lt["profile"]))
            keep = D.lt_subset(train.labels, counts, int(lt["seed"]), str(folder))
            train, subset = train.subset(keep), [int(i) for i in keep]
        return D.LTData(train, test, test, names, f"{fmt}:{folder}", subset)
    if fmt == "split":
        sf = Path(cfg["split_file"]).expanduser()
        img_root = Path(cfg["root"] or cfg["data"] or sf.parent).expanduser()
        train = D.read_split_file(sf, img_root)
        c = int(train.labels.max()) + 1
        test_file = cfg["test_split_file"] or D.sibling_split(sf, "test", "val")
        if test_file is None:
            raise DataError(
                "no test split file", str(sf), "Pass --test-split-file (e.g. ImageNet_LT_test.txt)."
            )
        test = D.read_split_file(Path(test_file).expanduser(), img_root, c)
        val_file = cfg["val_split_file"] or D.sibling_split(sf, "val")
        val = D.read_split_file(Path(val_file).expanduser(), img_root, c) if val_file else test
        return D.LTData(train, test, val, [str(i) for i in range(c)], f"split:{sf}")
    if fmt == "folder":
        if root is None:
            raise DataError("folder format needs --data", "--data", f"Expected layout: {D.LAYOUT}.")
        train, classes = D.read_folder(root / "train")
        test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
        if test_dir is None:
            raise DataError("no val/ or test/ folder", str(root), f"Expected layout: {D.LAYOUT}.")
        test, _ = D.read_folder(test_dir, classes)
        val = D.read_folder(root / "val", classes)[0] if (root / "val").is_dir() else test
        return D.LTData(train, test, val, classes, f"folder:{root}")
    raise DataError(f"unknown format {fmt!r}", "format", "Use auto, cifar10, cifar100, split or folder.")


def norm_stats(cfg: dict, data: D.LTData, limit: int = 2000) -> tuple[list[float], list[float]]:
    """Per-channel mean/std: a named table of spec §2.2, or `auto` = measured on (up to `limit`) train images."""
    if cfg["norm"] != "auto":
        mean, std = NORMS[cfg["norm"]]
        return list(mean), list(std)
    n = len(data.train)
    idx = np.linspace(0, n - 1, min(n, limit)).astype(int)
    if data.train.arrays is not None:
        px = data.train.arrays[idx].reshape(-1, 3).astype(np.float64) / 255.0
    else:
        px = np.concatenate([np.asarray(data.train.image(int(i))).reshape(-1, 3) for i in idx]) / 255.0
    return [float(v) for v in px.mean(0)], [float(max(v, 1e-3)) for v in px.std(0)]


def transform(cfg: dict, train: bool, mean: list[float], std: list[float], stage: str = "finetune") -> Any:
    """timm's create_transform: RandomResizedCrop (+flip, RandAugment, RandomErasing for BFT) or resize+centre crop."""
    from timm.data import create_transform

    a, size = cfg["aug"], int(cfg["input_size"])
    if not train:
        return create_transform(size, is_training=False, crop_pct=float(a["crop_pct"]), interpolation=a["interpolation"],
                                mean=tuple(mean), std=tuple(std))  # fmt: skip
    mgp = stage == "pretrain"
    return create_transform(
        size, is_training=True, scale=tuple(cfg["mgp"]["scale"] if mgp else a["scale"]), hflip=float(a["hflip"]),
        color_jitter=None, auto_augment=None if mgp or not a["randaug"] else str(a["randaug"]),
        interpolation=a["interpolation"], mean=tuple(mean), std=tuple(std),
        re_prob=0.0 if mgp else float(a["re_prob"]), re_mode="pixel", re_count=1,
    )  # fmt: skip


class ImageSet(Dataset):
    """(transformed image, label) pairs of one split."""

    def __init__(self, split: D.Split, tf: Any) -> None:
        self.split, self.tf = split, tf

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.tf(self.split.image(i)), int(self.split.labels[i])


def train_loader(cfg: dict, ctx: Ctx, ds: Dataset, gen: torch.Generator, epoch: int) -> DataLoader:
    """Shuffled by the epoch's generator (DistributedSampler under torchrun); per-rank batch = batch_size / world."""
    world = ctx.dist.world_size if ctx.dist.enabled else 1
    bs = max(2, int(cfg["batch_size"]) // world)
    sampler = ctx.sampler(ds, shuffle=True, drop_last=True)
    if sampler is not None:
        sampler.set_epoch(epoch)
    # drop_last: timm's batch-mode Mixup needs an even batch, and a 1-image last batch would dominate a step
    drop = len(ds) // world >= bs
    return DataLoader(ds, batch_size=bs, shuffle=False, sampler=sampler if sampler is not None else
                      torch.randperm(len(ds), generator=gen).tolist(), drop_last=drop,
                      num_workers=int(cfg["workers"]))  # fmt: skip


def eval_loader(cfg: dict, ds: Dataset) -> DataLoader:
    return DataLoader(
        ds, batch_size=max(int(cfg["batch_size"]), 64), shuffle=False, num_workers=int(cfg["workers"])
    )
