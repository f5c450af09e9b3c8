"""Target models of `mlkit attack`: train a built-in one (A/B/C, CIFAR ResNets), save it as a target file, or load a user's file
(an `mlkit attack target` file, a state dict of a built-in arch, or a TorchScript module); always frozen, eval mode."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mlkit.core.errors import DataError
from mlkit.tasks.attack.model import TARGET_ARCHS, Stat, Target, dims_of, freeze, stat_list, target_net

FORMAT = "mlkit-attack-target"


def fit_classifier(net: Target, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch: int,
                   seed: int, soft: torch.Tensor | None = None, opt: Any = None) -> Any:  # fmt: skip
    """Adam on cross-entropy (hard labels y, or soft labels `soft`: distillation); returns the optimizer."""
    g = torch.Generator().manual_seed(seed)
    opt = opt or torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g).to(x.device)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            z = net(x[idx])
            loss = F.cross_entropy(z, y[idx]) if soft is None else -(soft[idx] * F.log_softmax(z, 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return opt


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    net.eval()
    hit = sum(int((net(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return hit / max(1, len(x))


def train_target(cfg: dict, x: torch.Tensor, y: torch.Tensor, log: Callable[[str], Any] | None = None,
                 arch: str | None = None, k: int = 10, mean: Stat = 0.0, std: Stat = 1.0) -> Target:  # fmt: skip
    """Train the built-in `arch` (k classes, x's channels) on (x, y) with Adam (lr `target_lr`, `target_epochs`,
    `target_batch`); mean / std: the normalisation inside the wrapper."""
    arch = arch or cfg["target_arch"]
    if log:
        log(f"training target model {arch.upper()} ({cfg['target_epochs']} epochs on {len(x)} images)")
    with torch.random.fork_rng(devices=[]):  # the run's own RNG stream does not depend on the target being cached
        torch.manual_seed(int(cfg["seed"]))
        net = Target(target_net(arch, k, int(x.shape[1])), mean, std).to(x.device)
        fit_classifier(net, x, y, int(cfg["target_epochs"]), float(cfg["target_lr"]), int(cfg["target_batch"]),
                       int(cfg["seed"]))  # fmt: skip
    return freeze(net)


def save_target(net: Target, arch: str, path: Path) -> None:
    body = {"format": FORMAT, "arch": arch, "mean": stat_list(net.mean), "std": stat_list(net.std),
            "state_dict": {k: v.detach().cpu() for k, v in net.net.state_dict().items()}}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(body, tmp)
    tmp.replace(path)


def load_target(path: str | Path, arch: str, mean: Stat, std: Stat) -> tuple[Target, str]:
    """(frozen target, arch or 'script') from a target file; DataError naming the file when it is not a model."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError("target model file not found", str(p), "Give --target an existing model file.")
    bad = ("not a model file", str(p),
           "Give an `mlkit attack target` file, a state dict of target_arch a|b|c, or a TorchScript module.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a TorchScript archive: torch.load would dispatch, we do it below
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a plain checkpoint: maybe TorchScript, else not a model
        obj = None
    if obj is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                mod = torch.jit.load(str(p), map_location="cpu")
        except Exception:  # noqa: BLE001
            raise DataError(*bad) from None
        return freeze(Target(mod, mean, std)), "script"
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        arch, mean, std, sd = obj.get("arch"), obj.get("mean", 0.0), obj.get("std", 1.0), obj.get("state_dict")
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd = obj["state_dict"]
    else:
        sd = obj
    if arch not in TARGET_ARCHS or not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DataError(*bad)
    sd = {k.removeprefix("module.").removeprefix("net."): v for k, v in sd.items()}
    try:
        ch, k = dims_of(sd)
        net = target_net(arch, k, ch)
        net.load_state_dict(sd)
        tgt = Target(net, mean, std)
    except (RuntimeError, TypeError, ValueError, IndexError):
        raise DataError(f"state dict does not fit target arch {arch.upper()}", str(p),
                        f"Set --target-arch to the arch the weights belong to ({' | '.join(TARGET_ARCHS)}).") from None  # fmt: skip
    return freeze(tgt), arch
