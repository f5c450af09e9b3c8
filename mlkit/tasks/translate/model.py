"""nn.Modules of `mlkit translate` (spec §2.1): DRIT's content / attribute encoders, generators, multi-scale domain
discriminators and the size-agnostic content discriminator. Widths and depths are parameters: the paper's are
width 64 (content 256 ch at H/4), 3 + 1 residual blocks, 3-scale 4-layer D; the CPU default is much smaller.

Effective behaviours of the original kept on purpose: its LeakyReLUConv2d never applies the instance norm it is
given (a string-comparison bug), so D and D^c have no norm; LeakyReLU slopes are 0.01 except 0.2 in the attribute
encoder; the generators' upsampling "INS" layers are LayerNorm over (C, H, W) with per-channel affine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def init_weights(m: nn.Module) -> None:
    """Conv / linear weights N(0, 0.02), biases 0 (the original's gaussian_weights_init on convs)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and hasattr(m, "weight"):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def rconv(i: int, o: int, k: int, s: int = 1, sn: bool = False) -> list[nn.Module]:
    """Reflection pad (k // 2, or 1 for k = 4 as the original) + conv; optional spectral norm."""
    conv = nn.Conv2d(i, o, k, s)
    return [nn.ReflectionPad2d(1 if k == 4 else k // 2), nn.utils.parametrizations.spectral_norm(conv) if sn else conv]


class ResBlock(nn.Module):
    """RConv3 -> IN -> ReLU -> RConv3 -> IN, plus the skip."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*rconv(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
                                  *rconv(ch, ch, 3), nn.InstanceNorm2d(ch))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GaussianNoise(nn.Module):
    """x + N(0, 1) in training mode only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x) if self.training else x


class ContentEncoder(nn.Module):
    """One domain's E^c: RConv7 + LReLU, `down` x (RConv3 s2 + IN + ReLU), `res` residual blocks, then the
    `shared` tail (one residual block + training noise), the same module object in both domains."""

    def __init__(self, cin: int, width: int, down: int, res: int, shared: nn.Module) -> None:
        super().__init__()
        layers: list[nn.Module] = [*rconv(cin, width, 7), nn.LeakyReLU(0.01, True)]
        ch = width
        for _ in range(down):
            layers += [*rconv(ch, 2 * ch, 3, 2), nn.InstanceNorm2d(2 * ch), nn.ReLU(True)]
            ch *= 2
        layers += [ResBlock(ch) for _ in range(res)]
        self.own = nn.Sequential(*layers)
        self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(self.own(x))


class BasicBlock(nn.Module):
    """LReLU(0.2) -> RConv3 -> LReLU(0.2) -> RConv3 (-> o) -> AvgPool2, plus AvgPool2 -> 1x1 conv."""

    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.LeakyReLU(0.2), *rconv(i, i, 3), nn.LeakyReLU(0.2), *rconv(i, o, 3),
                                  nn.AvgPool2d(2))  # fmt: skip
        self.short = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(i, o, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.short(x)


class AttrEncoder(nn.Module):
    """Concat mode E^a: RConv4 s2, BasicBlocks w -> 2w -> 3w -> 4w, LReLU(0.2), global average pool, two linear
    heads (mu, log sigma^2). Returns (mu, logvar)."""

    def __init__(self, cin: int, width: int, nz: int) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(*rconv(cin, w, 4, 2), BasicBlock(w, 2 * w), BasicBlock(2 * w, 3 * w),
                                 BasicBlock(3 * w, 4 * w), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # fmt: skip
        self.mu, self.logvar = nn.Linear(4 * w, nz), nn.Linear(4 * w, nz)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return self.mu(h), self.logvar(h)


class AttrEncoderFeat(nn.Module):
    """Feature-wise mode E^a (deterministic): RConv7 -> w, four conv4 s2 (2w, 4w, 4w, 4w), ReLU, GAP, 1x1 -> nz.
    Returns (z, None); regularised by 0.01 mean(z^2) instead of KL."""

    def __init__(self, cin: int, width: int, nz: int) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [*rconv(cin, w, 7), nn.ReLU(True)]
        for i, o in ((w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w), (4 * w, 4 * w)):
            layers += [*rconv(i, o, 4, 2), nn.ReLU(True)]
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Conv2d(4 * w, nz, 1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.net(x), None


class LayerNormCHW(nn.Module):
    """LayerNorm over (C, H, W) of each sample, then a per-channel affine (the original's upsampling 'INS')."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.gamma, self.beta = nn.Parameter(torch.ones(ch)), nn.Parameter(torch.zeros(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x, x.shape[1:], eps=1e-5)
        return x * self.gamma[:, None, None] + self.beta[:, None, None]


def _up(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(i, o, 3, 2, 1, output_padding=1), LayerNormCHW(o), nn.ReLU(True))


def _tile(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, z[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])], 1)


class GeneratorConcat(nn.Module):
    """Concat mode G: the `shared` residual block, then z tiled and concatenated before `res` residual blocks and
    before every upsampling (ConvT3 s2 + LN + ReLU, halving channels) and the final ConvT1 -> tanh."""

    def __init__(self, content_ch: int, nz: int, cout: int, up: int, res: int, shared: nn.Module) -> None:
        super().__init__()
        self.shared = shared
        ch = content_ch + nz
        self.res = nn.Sequential(*[ResBlock(ch) for _ in range(res)])
        self.ups = nn.ModuleList()
        for _ in range(up):
            self.ups.append(_up(ch + nz, (ch + nz) // 2))
            ch = (ch + nz) // 2
        self.out = nn.Sequential(nn.ConvTranspose2d(ch + nz, cout, 1), nn.Tanh())

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.res(_tile(z, self.shared(c)))
        for u in self.ups:
            h = u(_tile(z, h))
        return self.out(_tile(z, h))


class MLPBlock(nn.Module):
    """Feature-wise residual block: each half = conv3 + IN -> concat the z chunk -> 1x1 (2C -> 2C) + ReLU ->
    1x1 (2C -> C) + ReLU; plus the skip."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.ModuleList([nn.Sequential(*rconv(ch, ch, 3), nn.InstanceNorm2d(ch)) for _ in range(2)])
        self.mix = nn.ModuleList([nn.Sequential(nn.Conv2d(2 * ch, 2 * ch, 1), nn.ReLU(True),
                                                nn.Conv2d(2 * ch, ch, 1), nn.ReLU(True)) for _ in range(2)])  # fmt: skip

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = x
        for conv, mix in zip(self.conv, self.mix):
            h = mix(_tile(z, conv(h)))
        return x + h


class GeneratorFeat(nn.Module):
    """Feature-wise mode G: MLP(nz -> 256 -> 256 -> res * C) split into one chunk per MLPBlock, then `up`
    ConvT3 s2 (LN, ReLU) halving channels, ConvT1 -> tanh; `shared` residual block first, as in concat mode."""

    def __init__(self, content_ch: int, nz: int, cout: int, up: int, res: int, shared: nn.Module) -> None:
        super().__init__()
        self.shared, self.n = shared, res
        self.mlp = nn.Sequential(nn.Linear(nz, 256), nn.ReLU(True), nn.Linear(256, 256), nn.ReLU(True),
                                 nn.Linear(256, res * content_ch))  # fmt: skip
        self.blocks = nn.ModuleList([MLPBlock(content_ch) for _ in range(res)])
        ch, ups = content_ch, []
        for _ in range(up):
            ups.append(_up(ch, ch // 2))
            ch //= 2
        self.ups = nn.Sequential(*ups, nn.ConvTranspose2d(ch, cout, 1), nn.Tanh())

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.shared(c)
        for blk, zc in zip(self.blocks, self.mlp(z).chunk(self.n, 1)):
            h = blk(h, zc)
        return self.ups(h)


class MultiScaleD(nn.Module):
    """PatchGAN at `scales` scales (input downsampled by AvgPool3 s2 p1, padding not counted): per scale `layers`
    RConv4 s2 (w, 2w, 4w, ...) + LReLU(0.01), then a 1x1 conv to a logit map. No norm; optional spectral norm."""

    def __init__(self, cin: int, width: int, layers: int, scales: int, sn: bool = False) -> None:
        super().__init__()
        self.nets = nn.ModuleList()
        for _ in range(scales):
            mods, ch = [], cin
            for k in range(layers):
                o = width * 2**k
                mods += [*rconv(ch, o, 4, 2, sn), nn.LeakyReLU(0.01, True)]
                ch = o
            self.nets.append(nn.Sequential(*mods, nn.Conv2d(ch, 1, 1)))
        self.down = nn.AvgPool2d(3, 2, 1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, net in enumerate(self.nets):
            outs.append(net(x))
            if i + 1 < len(self.nets):
                x = self.down(x)
        return outs


class ContentD(nn.Module):
    """D^c, size-agnostic: `layers` conv k s2 (zero padding k // 2) + LReLU(0.01) at C channels, global average
    pool, 1x1 -> one logit per sample (the original's fixed 54x54 -> 1x1 stack breaks on other sizes)."""

    def __init__(self, ch: int, layers: int = 3, k: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for _ in range(layers):
            mods += [nn.Conv2d(ch, ch, k, 2, k // 2), nn.LeakyReLU(0.01, True)]
        self.net = nn.Sequential(*mods, nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, 1, 1), nn.Flatten())

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.net(c)[:, 0]


class DRIT(nn.Module):
    """Everything a checkpoint holds. Keys of the per-domain dicts: 'a', 'b'. Shared objects: enc_c[*].shared is
    self.shared_enc, gen[*].shared is self.shared_gen."""

    def __init__(self, cfg: dict, ch: tuple[int, int] = (3, 3)) -> None:
        super().__init__()
        m = cfg["model"]
        w, down, nz = int(m["width"]), int(m["down"]), int(m["nz"])
        self.nz, self.concat, self.zero_attr = nz, bool(m["concat"]), bool(m["zero_attr"])
        cc = w * 2**down
        self.content_ch = cc
        self.shared_enc = nn.Sequential(ResBlock(cc), GaussianNoise())
        self.shared_gen = ResBlock(cc)
        gen = GeneratorConcat if self.concat else GeneratorFeat
        att = AttrEncoder if self.concat else AttrEncoderFeat
        doms = dict(zip("ab", ch))
        self.enc_c = nn.ModuleDict({d: ContentEncoder(c, w, down, int(m["enc_res"]), self.shared_enc)
                                    for d, c in doms.items()})  # fmt: skip
        self.enc_a = nn.ModuleDict({d: att(c, int(m["attr_width"]), nz) for d, c in doms.items()})
        self.gen = nn.ModuleDict({d: gen(cc, nz, c, down, int(m["gen_res"]), self.shared_gen) for d, c in doms.items()})
        dw, dl, ds, sn = int(m["dis_width"]), int(m["dis_layers"]), int(m["dis_scales"]), bool(m["spectral_norm"])
        self.dis = nn.ModuleDict({k: MultiScaleD(doms[k[0]], dw, dl, ds, sn) for k in ("a", "b", "a2", "b2")})
        self.dis_c = ContentD(cc, int(m["dc_layers"]), int(m["dc_kernel"]))
        self.apply(init_weights)

    def groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameter groups stepped separately (the original's optimizers), each parameter listed once."""
        g = {"enc_c": self.enc_c, "enc_a": self.enc_a, "gen": self.gen, "dis_c": self.dis_c,
             **{f"dis_{k}": v for k, v in self.dis.items()}}  # fmt: skip
        return {k: list(dict.fromkeys(v.parameters())) for k, v in g.items()}

    def attr(self, d: str, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(z, mu, logvar) of images x of domain d; z = mu + eps * sigma when sampling (concat mode)."""
        mu, logvar = self.enc_a[d](x)
        if logvar is None or not sample:
            return mu, mu, logvar
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), mu, logvar
