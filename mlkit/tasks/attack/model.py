"""nn.Modules of `mlkit attack`: the AdvGAN generators (MNIST 1x28x28; the CycleGAN ResNet generator for other
shapes, e.g. CIFAR 3x32x32) and discriminator, the paper's target models A/B/C (logits, ReLU) and the CIFAR ResNets
(ResNet-32 as in the paper, ResNet-8/20 of the same family for CPUs), the eval-mode normalising target wrapper, and
the bundle the checkpoint holds."""

from __future__ import annotations

import torch
from torch import nn

TARGET_ARCHS = ("a", "b", "c", "resnet8", "resnet20", "resnet32")
MNIST_ARCHS = ("a", "b", "c")  # fixed 28x28 inputs (their FC sizes)


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


class CycleGenerator(nn.Module):
    """The CycleGAN ResNet generator the spec gives for 3-channel 32x32 inputs: c7s1-8, d16, d32, R32 x4, u16, u8,
    c7s1-3 (reflect-padded 7x7 convs, stride-2 3x3 down, fractionally strided 3x3 up, instance norm, ReLU), tanh.
    Any channel count; height and width divisible by 4."""

    def __init__(self, ch: int = 3, width: int = 8) -> None:
        super().__init__()
        w = width

        def block(conv: nn.Module, o: int) -> list[nn.Module]:
            return [conv, nn.InstanceNorm2d(o), nn.ReLU(True)]

        self.net = nn.Sequential(
            nn.ReflectionPad2d(3), *block(nn.Conv2d(ch, w, 7), w),
            *block(nn.Conv2d(w, 2 * w, 3, 2, 1), 2 * w), *block(nn.Conv2d(2 * w, 4 * w, 3, 2, 1), 4 * w),
            *[ResBlock(4 * w) for _ in range(4)],
            *block(nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, output_padding=1), 2 * w),
            *block(nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1), w),
            nn.ReflectionPad2d(3), nn.Conv2d(w, ch, 7), nn.Tanh(),
        )  # fmt: skip
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def generator_kind(shape: tuple[int, int, int]) -> str:
    """'mnist' for 1x28x28 inputs (the spec's MNIST generator), else 'cyclegan'."""
    return "mnist" if tuple(shape) == (1, 28, 28) else "cyclegan"


class Discriminator(nn.Module):
    """x (B,ch,H,W) -> probability of 'real' (B,): Conv4 s2 x3 (28: 13/5/1; 32: 15/6/2), Conv1, sigmoid, averaged
    over the output map (the spec gives D for MNIST only; for RGB it takes 3 input channels)."""

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


class BasicBlock(nn.Module):
    def __init__(self, i: int, o: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(True),
            nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o),
        )  # fmt: skip
        self.skip = nn.Identity() if stride == 1 and i == o else \
            nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def cifar_resnet(depth: int, k: int = 10, ch: int = 3) -> nn.Module:
    """He et al.'s CIFAR ResNet-(6n+2): 3x3 conv 16, three stages of n basic blocks (16, 32, 64 channels, stride 2
    at stages 2 and 3, 1x1 projection shortcuts where the shape changes), global average pool, FC k."""
    n = (depth - 2) // 6
    layers: list[nn.Module] = [nn.Conv2d(ch, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True)]
    i = 16
    for o, s in ((16, 1), (32, 2), (64, 2)):
        for j in range(n):
            layers.append(BasicBlock(i, o, s if j == 0 else 1))
            i = o
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, k))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def dims_of(sd: dict) -> tuple[int, int]:
    """(input channels, classes) of a target state dict: the first conv's in-channels, the last linear's rows."""
    convs = [v for v in sd.values() if getattr(v, "ndim", 0) == 4]
    fcs = [v for v in sd.values() if getattr(v, "ndim", 0) == 2]
    return (int(convs[0].shape[1]) if convs else 1), (int(fcs[-1].shape[0]) if fcs else 10)


def target_net(arch: str, k: int = 10, ch: int = 1) -> nn.Module:
    """Target models (logits): the paper's MNIST A, B (Tramer et al.), C (Carlini & Wagner; the port's target) for
    28x28 inputs, and the CIFAR ResNets resnet8 / resnet20 / resnet32 (any input size)."""
    if arch.startswith("resnet") and arch[6:].isdigit():
        return cifar_resnet(int(arch[6:]), k, ch)
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


Stat = "float | list[float] | torch.Tensor"


def stat(v: float | list | torch.Tensor) -> torch.Tensor:
    """A normalisation statistic: a scalar, or one value per channel shaped (C, 1, 1)."""
    t = torch.as_tensor(v, dtype=torch.float32).detach().clone()
    return t.reshape(-1, 1, 1) if t.numel() > 1 else t.reshape(())


def stat_list(t: torch.Tensor) -> float | list[float]:
    return [float(v) for v in t.flatten()] if t.numel() > 1 else float(t)


class Target(nn.Module):
    """A classifier on [0, 1] pixels: normalisation lives inside, so every epsilon is in pixel units."""

    def __init__(self, net: nn.Module, mean: Stat = 0.0, std: Stat = 1.0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", stat(mean))
        self.register_buffer("std", stat(std))

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

    def __init__(self, target: Target, surrogate: Target | None = None, width: int = 8,
                 shape: tuple[int, int, int] = (1, 28, 28), k: int = 10) -> None:  # fmt: skip
        super().__init__()
        ch = int(shape[0])
        gen = Generator if generator_kind(shape) == "mnist" else CycleGenerator
        self.G, self.D = gen(ch=ch, width=width), Discriminator(ch=ch, width=width)
        self.target = freeze(target)
        self.surrogate = surrogate
        self.shape, self.k = tuple(int(v) for v in shape), int(k)

    def train(self, mode: bool = True) -> AdvGAN:  # the target never leaves eval mode
        super().train(mode)
        self.target.eval()
        return self
