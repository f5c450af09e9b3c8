"""The unrolled LRP decoder with weights tied to the encoder (spec §2.2): LRP-eps (default) or LRP-alpha-beta.

`LRPDecoder` is a plain object, not an nn.Module: it owns no parameters. Forward hooks on the encoder record each
layer's input (BN also its output); `heatmaps(z)` then runs the LRP-eps rules backwards through the very same
weight tensors (conv -> conv_transpose2d with W, linear -> W^T), batched over the requested classes: relevance
has a leading class axis (k, N, ...) against the recorded (N, ...) activations. Gradients flow through the
recorded activations, the tied weights and the logits; biases and BN scales are detached as in the original.

rule="alpha-beta" (spec §2.2, alternative rules): each conv with the BN after it is one affine layer with weights
s * W (s = gamma / sigma, detached); relevance is split by alpha z+ / sum z+ - beta z- / sum z- (biases take no
share; beta = alpha - 1, alpha = 1 is the z+ rule); residual adds split the same way; the first conv uses the z^B
rule with each image's global input min / max as bounds, so relevance reaches dark pixels too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_PASS = (nn.ReLU, nn.Dropout, nn.Sequential, nn.Identity, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU)
RULES = ("epsilon", "alpha-beta")
_HOOKED = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Linear)


def sdiv(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """u / v with v kept at |v| >= 1e-9 (sign preserved); 0 where v == 0."""
    vs = torch.copysign(v.abs().clamp(min=1e-9), v)  # sign kept: never towards zero; -0.0 counts as 0 below
    return torch.where(v == 0, torch.zeros_like(u), u / vs)


def stab(o: torch.Tensor, eps: float) -> torch.Tensor:
    """o + eps * sign(o) (sign(0) = +1): the LRP-eps stabiliser, never towards zero."""
    return o + torch.copysign(o.new_tensor(eps), o + 0.0)  # + 0.0 turns -0.0 into +0.0: sign(0) = +1


def _flat(r: torch.Tensor) -> torch.Tensor:
    return r.reshape(r.shape[0] * r.shape[1], *r.shape[2:])


def _unflat(r: torch.Tensor, k: int) -> torch.Tensor:
    return r.reshape(k, r.shape[0] // k, *r.shape[1:])


class LRPDecoder:
    """decoder.record(x) -> z (runs the encoder with recording on); decoder.heatmaps(z) -> (N, k, H, W)."""

    def __init__(self, encoder: nn.Module, eps: float = 1e-8, rule: str = "epsilon", alpha: float = 1.0) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown LRP rule {rule!r}; use one of {', '.join(RULES)}")
        if alpha < 1:
            raise ValueError(f"LRP alpha must be >= 1 (beta = alpha - 1), got {alpha}")
        self.rule, self.alpha = rule, float(alpha)
        for name, m in encoder.named_modules():
            if m is encoder or isinstance(m, _PASS + _HOOKED) or _is_block(m):
                continue
            raise ValueError(f"unrolled LRP does not support layer {name} ({type(m).__name__})")
        self.encoder, self.eps = encoder, eps
        self.rec: dict[nn.Module, Any] = {}
        self.active = False
        self.clone = not all(isinstance(b, _tiny_block()) for b in encoder.modules() if _is_block(b))
        self.handles = [
            m.register_forward_hook(self._hook) for m in encoder.modules() if isinstance(m, _HOOKED)
        ]

    def close(self) -> None:
        """Remove the recording hooks from the encoder."""
        for h in self.handles:
            h.remove()
        self.handles, self.rec = [], {}

    def _hook(self, m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if self.active:  # BN outputs are cloned: torchvision blocks add the shortcut to them in place
            self.rec[m] = (inp[0], out.clone() if isinstance(m, nn.BatchNorm2d) and self.clone else out)

    def record(self, x: torch.Tensor) -> torch.Tensor:
        """Run the encoder on x, recording every layer's input; must come right before heatmaps()."""
        self.active = True
        try:
            return self.encoder(x)
        finally:
            self.active = False

    def tied(self) -> list[nn.Module]:
        """The encoder layers whose weights the decoder uses (the tests check `is` identity)."""
        return [m for m in self.encoder.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]

    # ---------------------------------------------------------------- layer rules
    def _div(self, r: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """sdiv(r, o + eps sign(o)); with eps >= 1e-9 the stabilised denominator is never below 1e-9 in size."""
        if self.eps >= 1e-9:
            return r / stab(o, self.eps)
        return sdiv(r, stab(o, self.eps))

    def _pre(self, m: nn.Module, shape: int) -> torch.Tensor:
        """The layer's recorded output with its bias detached (value unchanged, no bias gradient via R)."""
        out = self.rec[m][1]
        if m.bias is None:
            return out
        b = m.bias.view(-1, *([1] * (out.dim() - 2))) if shape else m.bias
        return out - b + b.detach()

    def linear(self, m: nn.Linear, r: torch.Tensor) -> torch.Tensor:
        a = self.rec[m][0]
        if self.rule == "alpha-beta":
            return self._ab(a, r, m.weight, F.linear, lambda s, w: s @ w)
        return a * (self._div(r, self._pre(m, 0)) @ m.weight)

    def conv(self, m: nn.Conv2d, r: torch.Tensor, bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
        """Conv rule; with `bn` (the BN right after m) the BN rule is fused in: one K-sized multiply fewer."""
        a = self.rec[m][0]
        op = _out_pad(m, a)
        if self.rule == "alpha-beta":
            w = m.weight if bn is None else m.weight * self._bn_scale(bn).view(-1, 1, 1, 1)
            return self._ab(a, r, w, *self._conv_ops(m, op))
        if bn is not None:
            s = _flat(r * self._div(self._bn_factor(bn), self._pre(m, 1)))
        else:
            s = _flat(self._div(r, self._pre(m, 1)))
        c = F.conv_transpose2d(s, m.weight, None, m.stride, m.padding, op, m.groups, m.dilation)
        return a * _unflat(c, r.shape[0])

    def _conv_ops(self, m: nn.Conv2d, op: tuple[int, ...]) -> tuple[Any, Any]:
        fwd = lambda a, w: F.conv2d(a, w, None, m.stride, m.padding, m.dilation, m.groups)  # noqa: E731
        bwd = lambda s, w: F.conv_transpose2d(s, w, None, m.stride, m.padding, op, m.groups, m.dilation)  # noqa: E731
        return fwd, bwd

    def _ab(self, a: torch.Tensor, r: torch.Tensor, w: torch.Tensor, fwd: Any, bwd: Any) -> torch.Tensor:
        """LRP-alpha-beta for an affine layer with input a >= 0: R_in = a * (alpha W+^T R/z+ - beta W-^T R/z-)."""
        k = r.shape[0]
        parts = [(self.alpha, w.clamp(min=0))] + ([(1.0 - self.alpha, w.clamp(max=0))] if self.alpha > 1 else [])
        out = 0.0
        for coef, wpart in parts:
            c = bwd(_flat(sdiv(r, fwd(a, wpart).unsqueeze(0).expand_as(r))), wpart)
            out = out + coef * _unflat(c, k)
        return a * out

    def first(self, m: nn.Conv2d, r: torch.Tensor, bn: nn.BatchNorm2d | None) -> torch.Tensor:
        """The input layer: the conv rule (eps), or z^B with per-image global min / max bounds (alpha-beta)."""
        if self.rule != "alpha-beta":
            return self.conv(m, r, bn)
        x = self.rec[m][0]
        lo = x.detach().amin(dim=(1, 2, 3), keepdim=True).expand_as(x)
        hi = x.detach().amax(dim=(1, 2, 3), keepdim=True).expand_as(x)
        w = m.weight if bn is None else m.weight * self._bn_scale(bn).view(-1, 1, 1, 1)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        fwd, bwd = self._conv_ops(m, _out_pad(m, x))
        s = _flat(sdiv(r, (fwd(x, w) - fwd(lo, wp) - fwd(hi, wn)).unsqueeze(0).expand_as(r)))
        k = r.shape[0]
        return x * _unflat(bwd(s, w), k) - lo * _unflat(bwd(s, wp), k) - hi * _unflat(bwd(s, wn), k)

    def bn(self, m: nn.BatchNorm2d, r: torch.Tensor) -> torch.Tensor:
        return self._bn_factor(m) * r

    def _bn_scale(self, m: nn.BatchNorm2d) -> torch.Tensor:
        """s = gamma / sqrt(var + eps), detached (batch variance in train mode, running variance in eval)."""
        a = self.rec[m][0]
        if m.training or m.running_var is None:  # biased batch variance, two passes (3x faster than Tensor.var here)
            ad = a.detach()
            var = (ad - ad.mean((0, 2, 3), keepdim=True)).square().mean((0, 2, 3))
        else:
            var = m.running_var
        return ((m.weight if m.weight is not None else torch.ones_like(var)) / torch.sqrt(var + m.eps)).detach()

    def _bn_factor(self, m: nn.BatchNorm2d) -> torch.Tensor:
        """s * a / y, detached (computed without a graph)."""
        a, y = self.rec[m]
        with torch.no_grad():
            return self._bn_scale(m).view(1, -1, 1, 1) * sdiv(a, y)

    def maxpool(self, m: nn.MaxPool2d, r: torch.Tensor) -> torch.Tensor:
        a = self.rec[m][0]
        _, idx = F.max_pool2d(a.detach(), m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                              return_indices=True)  # fmt: skip
        k = r.shape[0]
        out = r.new_zeros(k * a.shape[0], a.shape[1], a.shape[2] * a.shape[3])
        ix = idx.flatten(2).expand(k, *idx.flatten(2).shape).reshape(k * a.shape[0], a.shape[1], -1)
        out = out.scatter_add(2, ix, _flat(r).flatten(2))  # accumulates where pooling windows overlap
        return _unflat(out, k).reshape(k, *a.shape)

    def avgpool(self, m: nn.AdaptiveAvgPool2d, r: torch.Tensor) -> torch.Tensor:
        """R_in = a * P^T sdiv(R, P a) with P the (separable) adaptive-pooling matrix: uniform windows, or the
        overlapping / repeating ones of e.g. VGG's 7x7 pool on an 8x8 or 1x1 map."""
        a, o = self.rec[m]
        ph, pw = (_pool_matrix(i, n, a) for i, n in zip(a.shape[-2:], o.shape[-2:]))
        return a * torch.einsum("...ij,ik,jl->...kl", sdiv(r, o), ph, pw)

    def block(self, blk: nn.Module, r: torch.Tensor) -> torch.Tensor:
        convs = [getattr(blk, f"conv{i}") for i in (1, 2, 3) if hasattr(blk, f"conv{i}")]
        bns = [getattr(blk, f"bn{i}") for i in (1, 2, 3) if hasattr(blk, f"bn{i}")]
        main = self.rec[bns[-1]][1]
        sc = self.rec[convs[0]][0] if blk.downsample is None else self.rec[blk.downsample[-1]][1]
        if self.rule == "alpha-beta":
            r_sc, r_main = self._split(sc, main, r)
        else:
            t = main + sc
            r_sc, r_main = sdiv(sc, t) * r, sdiv(main, t) * r
        for conv, bn in reversed(list(zip(convs, bns))):
            r_main = self.conv(conv, r_main, bn)
        if blk.downsample is not None:
            r_sc = self.conv(blk.downsample[0], r_sc, blk.downsample[1])
        return r_main + r_sc

    def _split(self, sc: torch.Tensor, main: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha-beta shares of a residual add: alpha u+ / (sum of +) - beta u- / (sum of -) for u in (sc, main)."""
        tp, tn = sc.clamp(min=0) + main.clamp(min=0), sc.clamp(max=0) + main.clamp(max=0)

        def share(u: torch.Tensor) -> torch.Tensor:
            out = self.alpha * sdiv(u.clamp(min=0), tp)
            return out - (self.alpha - 1.0) * sdiv(u.clamp(max=0), tn) if self.alpha > 1 else out

        return share(sc) * r, share(main) * r

    # ---------------------------------------------------------------- whole decoder
    def _vgg(self, r: torch.Tensor) -> torch.Tensor:
        """classifier^-1 (every Linear; ReLU / dropout pass) -> reshape -> avgpool^-1 -> features^-1."""
        enc = self.encoder
        for m in reversed([m for m in enc.classifier if isinstance(m, nn.Linear)]):
            r = self.linear(m, r)
        r = self.avgpool(enc.avgpool, r.reshape(r.shape[0], *self.rec[enc.avgpool][1].shape))
        feats = list(enc.features)
        for i in range(len(feats) - 1, -1, -1):
            m = feats[i]
            if isinstance(m, nn.MaxPool2d):
                r = self.maxpool(m, r)
            elif isinstance(m, nn.Conv2d):
                bn = feats[i + 1] if i + 1 < len(feats) and isinstance(feats[i + 1], nn.BatchNorm2d) else None
                r = self.first(m, r, bn) if i == 0 else self.conv(m, r, bn)
        return r

    def heatmaps(self, z: torch.Tensor, classes: list[int] | None = None) -> torch.Tensor:
        """Per-class heatmaps (N, k, H, W) for `classes` (default all K), relevance init z_c on class c."""
        enc = self.encoder
        cls = list(range(z.shape[1])) if classes is None else list(classes)
        onehot = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)[cls]  # (k, K)
        r = onehot[:, None, :] * z[None]  # (k, N, K): T[:, c] = z[:, c], undetached
        if hasattr(enc, "features"):  # torchvision VGG
            return self._vgg(r).sum(2).transpose(0, 1)
        r = self.linear(enc.fc, r)
        r = r.reshape(*r.shape, 1, 1)
        r = self.avgpool(enc.avgpool, r)
        for layer in reversed(
            [getattr(enc, n) for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(enc, n)]
        ):
            for blk in reversed(list(layer)):
                r = self.block(blk, r)
        r = self.first(enc.conv1, self.maxpool(enc.maxpool, r), enc.bn1)
        return r.sum(2).transpose(0, 1)


def _out_pad(m: nn.Conv2d, a: torch.Tensor) -> tuple[int, ...]:
    """conv_transpose2d's output_padding that gives back the recorded input size exactly (spec §8)."""
    return tuple(
        (a.shape[2 + i] + 2 * m.padding[i] - m.dilation[i] * (m.kernel_size[i] - 1) - 1) % m.stride[i] for i in range(2)
    )


def _pool_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) averaging matrix of adaptive pooling along one axis (torch's floor / ceil windows)."""
    p = like.new_zeros(n_out, n_in)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        p[i, lo:hi] = 1.0 / (hi - lo)
    return p


def _tiny_block() -> type:
    from mlkit.tasks.segment.model import Block

    return Block


def _is_block(m: nn.Module) -> bool:
    return hasattr(m, "conv1") and hasattr(m, "bn1") and hasattr(m, "downsample") and not hasattr(m, "fc")
