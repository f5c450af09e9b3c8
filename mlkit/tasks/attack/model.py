"""nn.Modules of `mlkit attack`: the AdvGAN generator and discriminator (MNIST, 1x28x28), the paper's target
models A/B/C (logits, ReLU), the eval-mode normalising target wrapper, and the bundle the checkpoint holds."""

from __future__ import annotations

import torch
from torch import nn

TARGET_ARCHS = ("a", "b", "c")


def _init(m: nn.Module) -> None:
    """Conv weights N(0, 0.02); BatchNorm gamma N(1, 0.02), beta 0 (the port's init)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), nn.BatchNorm2d(ch),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """x (B,1,28,28) -> raw perturbation in (-1, 1): encoder 26/12/5, 4 residual blocks, decoder 11/23/28, tanh."""

    def __init__(self, ch: int = 1, width: int = 8) -> None:
        super().__init__()
        w = width

        def down(i: int, o: int, s: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, s, bias=True), nn.InstanceNorm2d(o), nn.ReLU(True)]

        def up(i: int, o: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(i, o, 3, 2, bias=False), nn.InstanceNorm2d(o), nn.ReLU(True)]

        self.net = nn.Sequential(
            *down(ch, w, 1), *down(w, 2 * w, 2), *down(2 * w, 4 * w, 2),
            *[ResBlock(4 * w) for _ in range(4)],
            *up(4 * w, 2 * w), *up(2 * w, w),
            # ConvT6 s1 (8 -> 1): a stride-1 transposed conv is a conv with padding k - 1 and flipped, transposed
            # kernels, the same function class; this form takes the fast conv path (2x on CPU, 36 % of G's time)
            nn.Conv2d(w, ch, 6, 1, padding=5, bias=False), nn.Tanh(),
        )  # fmt: skip
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Discriminator(nn.Module):
    """x (B,1,28,28) -> probability of 'real' (B,): Conv4 s2 x3 (13/5/1), Conv1, sigmoid."""

    def __init__(self, ch: int = 1, width: int = 8) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(ch, w, 4, 2), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, bias=False), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 1, 1), nn.Sigmoid(),
        )  # fmt: skip
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1).mean(1)


def target_net(arch: str, k: int = 10, ch: int = 1) -> nn.Module:
    """The paper's MNIST target models (logits): A, B (Tramer et al.), C (Carlini & Wagner; the port's target)."""
    r = nn.ReLU
    if arch == "a":
        return nn.Sequential(nn.Conv2d(ch, 64, 5), r(), nn.Conv2d(64, 64, 5), r(), nn.Dropout(0.25), nn.Flatten(),
                             nn.Linear(64 * 20 * 20, 128), r(), nn.Dropout(0.5), nn.Linear(128, k))  # fmt: skip
    if arch == "b":
        return nn.Sequential(nn.Dropout(0.2), nn.Conv2d(ch, 64, 8, 2, padding=3), r(), nn.Conv2d(64, 128, 6, 2), r(),
                             nn.Conv2d(128, 128, 5), r(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(128, k))  # fmt: skip
    if arch == "c":
        return nn.Sequential(
            nn.Conv2d(ch, 32, 3), r(), nn.Conv2d(32, 32, 3), r(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), r(), nn.Conv2d(64, 64, 3), r(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * 4 * 4, 200), r(), nn.Dropout(0.5), nn.Linear(200, 200), r(), nn.Linear(200, k),
        )  # fmt: skip
    raise ValueError(f"unknown target arch {arch!r}")


class Target(nn.Module):
    """A classifier on [0, 1] pixels: normalisation lives inside, so every epsilon is in pixel units."""

    def __init__(self, net: nn.Module, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def freeze(m: nn.Module) -> nn.Module:
    """Eval mode (dropout off, BN statistics fixed) and no parameter gradients; input gradients still flow."""
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


class AdvGAN(nn.Module):
    """What a checkpoint holds: G, D, the frozen target f (the black box b in the black-box settings) and, for
    the black-box settings, the distilled surrogate that G is trained against."""

    def __init__(self, target: Target, surrogate: Target | None = None, width: int = 8) -> None:
        super().__init__()
        self.G, self.D = Generator(width=width), Discriminator(width=width)
        self.target = freeze(target)
        self.surrogate = surrogate

    def train(self, mode: bool = True) -> AdvGAN:  # the target never leaves eval mode
        super().train(mode)
        self.target.eval()
        return self
