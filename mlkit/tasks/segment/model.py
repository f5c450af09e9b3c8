"""Segment models (spec §2.1, §2.4, §5): nn.Modules only.

Encoders are ResNet-shaped (conv1, bn1, relu, maxpool, layer1.., avgpool, fc): the tiny CPU net of §5 or a
torchvision ResNet-18/50 with in-place ReLUs switched off (they would overwrite recorded tensors). `SegNet` wraps
an encoder with one of three heads: the tied-weight unrolled-LRP decoder (`tw`, no parameters of its own), a
symmetric U-Net decoder (`std-unet`) or the same U-Net plus the encoder's classifier (`mt-unet`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlkit.tasks.segment.decoder import LRPDecoder

ARCHS = ("tw", "std-unet", "mt-unet")
ENCODERS = ("tiny", "resnet18", "resnet50", "vgg16", "vgg16_bn")


class Block(nn.Module):
    """A basic residual block (two 3x3 convs with BN, 1x1 strided shortcut when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        sc = x if self.downsample is None else self.downsample(x)
        return self.relu(out + sc)


class TinyEncoder(nn.Module):
    """§5: 3x3 stem (width ch) + BN + maxpool, one residual block, one strided block (2 x width), GAP, Linear."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        self.layer1 = nn.Sequential(Block(width, width))
        self.layer2 = nn.Sequential(Block(width, 2 * width, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return encode(self, x)[0]


def layers(enc: nn.Module) -> list[nn.Module]:
    return [getattr(enc, n) for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(enc, n)]


def encode(enc: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits z and the skip features of a ResNet-shaped encoder ([stem, layer1, layer2, ...]) or of a VGG (the
    map before each max-pool)."""
    if hasattr(enc, "features"):
        feats, h = [], x
        for m in enc.features:
            if isinstance(m, nn.MaxPool2d):
                feats.append(h)
            h = m(h)
        return enc.classifier(torch.flatten(enc.avgpool(h), 1)), feats
    f0 = enc.relu(enc.bn1(enc.conv1(x)))
    feats = [f0]
    h = enc.maxpool(f0)
    for layer in layers(enc):
        h = layer(h)
        feats.append(h)
    return enc.fc(torch.flatten(enc.avgpool(h), 1)), feats


def build_encoder(name: str, num_classes: int, width: int) -> nn.Module:
    if name == "tiny":
        return TinyEncoder(num_classes, width)
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    if name.startswith("vgg"):  # 224-style head: AdaptiveAvgPool 7x7 and three Linear layers, the last one to K
        net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    else:
        net.fc = nn.Linear(net.fc.in_features, num_classes)
    for m in net.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return net


class UNetDecoder(nn.Module):
    """Symmetric U-Net decoder over the encoder's skip features (untied, learnable), 3x3 head to K."""

    def __init__(self, chans: list[int], num_classes: int) -> None:
        super().__init__()
        self.ups, self.fuse = nn.ModuleList(), nn.ModuleList()
        c = chans[-1]
        for skip in reversed(chans[:-1]):
            self.ups.append(nn.Sequential(nn.ConvTranspose2d(c, skip, 2, 2), nn.BatchNorm2d(skip), nn.ReLU()))
            self.fuse.append(nn.Sequential(nn.Conv2d(2 * skip, skip, 3, 1, 1, bias=False), nn.BatchNorm2d(skip),
                                           nn.ReLU()))  # fmt: skip
            c = skip
        self.head = nn.Conv2d(c, num_classes, 3, 1, 1)

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        h = feats[-1]
        for up, fuse, skip in zip(self.ups, self.fuse, reversed(feats[:-1])):
            h = up(h)
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = fuse(torch.cat([h, skip], 1))
        if h.shape[-2:] != size:
            h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        return self.head(h)


class SegNet(nn.Module):
    """forward(x) -> (z, H): image logits z (N,K) and segmentation logits H (N,K,H,W)."""

    def __init__(self, arch: str, encoder: nn.Module, num_classes: int, eps: float = 1e-8,
                 heat_scale: float = 1.0, rule: str = "epsilon", lrp_alpha: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.arch, self.num_classes = arch, num_classes
        self.heat_scale = heat_scale  # constant CE temperature on the heatmaps; 0 = the pixel count H*W
        self.encoder = encoder
        self.unet: UNetDecoder | None = None
        if arch == "tw":
            object.__setattr__(self, "decoder", LRPDecoder(encoder, eps, rule, lrp_alpha))  # not a submodule: owns nothing
        else:
            was = encoder.training
            encoder.eval()
            with torch.no_grad():
                _, feats = encode(encoder, torch.zeros(1, 3, 64, 64, dtype=next(encoder.parameters()).dtype))
            encoder.train(was)
            self.unet = UNetDecoder([f.shape[1] for f in feats], num_classes)

    def scale(self, x: torch.Tensor) -> float:
        return float(x.shape[-1] * x.shape[-2]) if self.heat_scale == 0 else self.heat_scale

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The plain classifier (pretraining stage, benchmark baseline)."""
        return encode(self.encoder, x)[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.arch == "tw":
            z = self.decoder.record(x)
            return z, self.decoder.heatmaps(z) * self.scale(x)
        z, feats = encode(self.encoder, x)
        return z, self.unet(feats, x.shape[-2:])
