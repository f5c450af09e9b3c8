"""Where `mlkit attack`'s images and target come from: --data (MNIST idx, CIFAR pickles, image folders) or the
embedded default (seeded digits as MNIST idx, or seeded RGB shapes as a CIFAR-10 folder), what the data decides
(shape, classes, archs, normalisation), and the target model (a user's file, or a built-in one trained and cached)."""

from __future__ import annotations

from pathlib import Path

import torch

from mlkit.core.artifact import cached
from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.tasks.attack import data as D
from mlkit.tasks.attack.model import MNIST_ARCHS, Target, generator_kind
from mlkit.tasks.attack.target import load_target, save_target, train_target


def data_root(cfg: dict, ctx: Ctx | None = None) -> Path:
    if cfg["data"]:
        return Path(cfg["data"]).expanduser()
    dg = cfg["digits"]
    s = {"train": int(dg["train"]), "test": int(dg["test"]), "seed": int(dg["seed"])}
    log = ctx.log if ctx else None
    if cfg["embedded"] == "cifar":  # seeded RGB shapes written as a CIFAR-10 python folder
        from mlkit.tasks.attack.images import write_synth_cifar

        return cached("attack-cifar-synth", {**s, "generator": 1}, lambda tmp: write_synth_cifar(tmp, **s), log=log)
    build = lambda tmp: D.write_digits(tmp, **s)  # noqa: E731
    return cached("attack-digits", {**s, "generator": D.GENERATOR_VERSION}, build, log=log)


_MEMO: dict[tuple, D.Digits] = {}  # the last data set read in this process (train, val, test and target share it)


def dataset(cfg: dict, ctx: Ctx | None = None) -> D.Digits:
    """The data set of --data (MNIST idx, CIFAR pickles or image folders) or the embedded default."""
    root = data_root(cfg, ctx)
    files = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in root.iterdir())) \
        if root.is_dir() else ()  # fmt: skip
    key = (str(root), files, int(cfg["image_size"]), float(cfg["folder_test"]), int(cfg["seed"]))
    if key not in _MEMO:
        ds = D.load_any(root, int(cfg["image_size"]), float(cfg["folder_test"]), int(cfg["seed"]))
        _MEMO.clear()
        _MEMO[key] = ds
    return _MEMO[key]


def resolve(cfg: dict, ds: D.Digits) -> dict:
    """What the data decides: input shape, classes k, the target / surrogate archs ('auto': C and A on 1x28x28
    images, ResNet-32 and ResNet-8 otherwise) and the target's normalisation (null: none on grey images, the train
    split's per-channel mean / std on RGB images)."""
    shape = tuple(int(v) for v in ds.train.x.shape[1:])
    k, mnist = len(ds.classes), shape[1:] == (28, 28)
    arch = cfg["target_arch"] if cfg["target_arch"] != "auto" else ("c" if mnist else "resnet32")
    sur = cfg["surrogate_arch"] if cfg["surrogate_arch"] != "auto" else ("a" if mnist else "resnet8")
    for key, a in (("target_arch", arch), ("surrogate_arch", sur)):
        if a in MNIST_ARCHS and not mnist:
            raise UsageError(f"{key} {a.upper()} takes 28x28 images, the data has {shape[1]}x{shape[2]}", key,
                             "Use resnet8 | resnet20 | resnet32 (or image_size=28 for folders).")  # fmt: skip
    if min(shape[1:]) < 22 or (generator_kind(shape) == "cyclegan" and (shape[1] % 4 or shape[2] % 4)):
        raise UsageError(f"images of {shape[1]}x{shape[2]}: the generator needs sides >= 22 and divisible by 4 "
                         "(or exactly 28x28 grey)", "image_size", "Set image_size (folders), e.g. 32.")  # fmt: skip
    if int(cfg["target_class"]) >= k:
        raise UsageError(f"target_class {cfg['target_class']} but the data has {k} classes", "target_class")
    mean, std = cfg["mean"], cfg["std"]
    if mean is None:
        mean = 0.0 if shape[0] == 1 else [round(float(v), 4) for v in ds.train.x.mean(axis=(0, 2, 3))]
    if std is None:
        std = 1.0 if shape[0] == 1 else [round(float(v), 4) for v in ds.train.x.std(axis=(0, 2, 3))]
    return {"shape": shape, "k": k, "arch": arch, "surrogate_arch": sur, "mean": mean, "std": std}


def load_split(cfg: dict, ctx: Ctx, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    digits = dataset(cfg, ctx)
    if which == "test":
        sp = digits.test
    else:
        n = len(digits.train.y) - int(cfg["val"])
        if n < 1:
            raise DataError(f"val = {cfg['val']} leaves no training images", str(digits.root), "Lower val.")
        sl = slice(0, n) if which == "train" else slice(n, None)
        sp = D.Split(digits.train.x[sl], digits.train.y[sl])
    return torch.from_numpy(sp.x).to(ctx.device), torch.from_numpy(sp.y).to(ctx.device)


def get_target(cfg: dict, ctx: Ctx, info: dict) -> tuple[Target, str]:
    """(target, kind: an arch or 'script'): the user's target file (normalisation: mean / std, default none), or
    the built-in arch trained on the train split (cached by its settings)."""
    if cfg["target"]:
        mean, std = (cfg["mean"] if cfg["mean"] is not None else 0.0), (cfg["std"] if cfg["std"] is not None else 1.0)
        net, kind = load_target(cfg["target"], info["arch"], mean, std)
        return net.to(ctx.device), kind
    root = data_root(cfg, ctx)
    files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in root.iterdir() if p.is_file())
    keys = ("target_epochs", "target_lr", "target_batch", "seed", "val", "image_size", "folder_test")
    s = {"data": str(root), "files": files, **{k: cfg[k] for k in keys},
         **{k: info[k] for k in ("arch", "k", "mean", "std")}}  # fmt: skip

    def build(tmp: Path) -> None:
        x, y = load_split(cfg, ctx, "train")
        net = train_target(cfg, x, y, ctx.log, info["arch"], info["k"], info["mean"], info["std"])
        save_target(net, info["arch"], tmp / "target.pt")

    folder = cached("attack-target", s, build, log=ctx.log)
    net, kind = load_target(folder / "target.pt", info["arch"], 0.0, 1.0)
    return net.to(ctx.device), kind


def check_target(cfg: dict, net: Target, x: torch.Tensor, info: dict) -> None:
    """The target takes the data's images and gives one logit per class (DataError naming the file otherwise)."""
    where = str(cfg["target"] or "built-in target")
    try:
        with torch.no_grad():
            z = net(x)
    except RuntimeError:
        raise DataError(f"target model does not take {'x'.join(map(str, info['shape']))} images", where,
                        "Give a target for this data's channels and size.") from None  # fmt: skip
    if z.ndim != 2 or z.shape[1] != info["k"]:
        raise DataError(f"target model gives outputs of shape {tuple(z.shape[1:])}, the data has {info['k']} classes",
                        where, "Give a target trained on these classes (one logit per class).")  # fmt: skip
