"""segment: the LRP-alpha-beta decoder rule (spec §2.2, alternative rules) against explicit dense references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from bn_fixtures import randomise_bn

from mlkit.cli import main
from mlkit.tasks.segment.decoder import LRPDecoder
from mlkit.tasks.segment.model import SegNet, build_encoder


def _net(rule: str = "alpha-beta", alpha: float = 1.0, seed: int = 0, width: int = 4) -> SegNet:
    torch.manual_seed(seed)
    net = SegNet("tw", build_encoder("tiny", 4, width), 4, 1e-8, 1.0, rule, alpha).double()
    randomise_bn(net)
    return net.eval()


def _dense(conv: torch.nn.Conv2d, shape: tuple[int, ...]) -> torch.Tensor:
    """The conv as a dense (out, in) matrix over flattened single images, built column by column."""
    n_in = int(torch.tensor(shape).prod())
    eye = torch.eye(n_in, dtype=conv.weight.dtype).reshape(n_in, *shape)
    with torch.no_grad():
        cols = F.conv2d(eye, conv.weight, None, conv.stride, conv.padding)
    return cols.reshape(n_in, -1).T


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_alpha_beta_conv_matches_explicit_sum(alpha: float) -> None:
    """R_i = sum_j a_i (alpha w+_ij / z+_j - beta w-_ij / z-_j) R_j, written out with a dense weight matrix."""
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(2, 3, 3, 2, 1, bias=False).double()
    a = torch.rand(1, 2, 7, 7, dtype=torch.float64)
    r = torch.randn(1, 1, 3, 4, 4, dtype=torch.float64)  # (k, N, C, H, W)
    dec = LRPDecoder(torch.nn.Sequential(), rule="alpha-beta", alpha=alpha)
    dec.rec[conv] = (a, conv(a))
    got = dec.conv(conv, r).reshape(-1)
    w = _dense(conv, (2, 7, 7))
    av, rv = a.reshape(-1), r.reshape(-1)
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    zp, zn = wp @ av, wn @ av
    contrib = alpha * wp * av / zp[:, None] - (alpha - 1) * wn * av / torch.where(zn == 0, 1.0, zn)[:, None]
    torch.testing.assert_close(got, contrib.T @ rv, rtol=1e-10, atol=1e-12)


def test_alpha1_conserves_relevance_with_biases() -> None:
    """The z+ rule gives biases no share: sum_pixels H_c = z_c exactly, the fc bias included. (BN shifts are
    zeroed: a unit switched on by its shift alone has no positive contribution to pass its relevance to.)"""
    net = _net()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.zero_()
            m.bias.data.zero_()
    assert float(net.encoder.fc.bias.detach().abs().sum()) > 0
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    z, h = net(x)
    torch.testing.assert_close(h.sum((2, 3)), z, rtol=1e-9, atol=1e-12)


def test_alpha1_heatmaps_follow_the_logit_sign_and_reach_dark_pixels() -> None:
    """z^B at the input: every pixel's share is >= 0 (times z_c), also where x is at its lower bound (0 here),
    where LRP-eps (= Gradient x Input) gives exactly 0."""
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    x[:, :, 4:10, 4:10] = 0.0
    z, h = (t.detach() for t in _net()(x))
    assert bool(((h * z.sign()[:, :, None, None]) >= -1e-12).all())
    assert float(h[:, :, 4:10, 4:10].abs().sum()) > 0
    h_eps = _net(rule="epsilon")(x)[1].detach()
    assert float(h_eps[:, :, 4:10, 4:10].abs().max()) == 0.0


def test_alpha_beta_on_torchvision_resnet() -> None:
    torch.manual_seed(0)
    enc = build_encoder("resnet18", 3, 0).double().eval()
    net = SegNet("tw", enc, 3, 1e-8, 1.0, "alpha-beta", 1.0).eval()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    z, h = net(x)
    assert h.shape == (2, 3, 32, 32)
    torch.testing.assert_close(h.sum((2, 3)), z, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("override", ["lrp_rule=gamma", "lrp_alpha=0.5"])
def test_bad_rule_is_a_usage_error(override: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["segment", "train", "--set", override, "--check"]) == 2
    assert "lrp_" in capsys.readouterr().err


@pytest.fixture(scope="module")
def vgg() -> torch.nn.Module:
    torch.manual_seed(0)
    enc = build_encoder("vgg16_bn", 3, 0).double()
    randomise_bn(enc)
    return enc.eval()


def test_vgg16_eps_equals_gradient_times_input(vgg: torch.nn.Module) -> None:
    """The whole VGG unrolls: 13 conv+BN, 5 max-pools, the 7x7 adaptive pool on a 2x2 map (overlapping,
    repeating windows) and all three Linear layers; LRP-eps with eps -> 0 equals Gradient x Input."""
    net = SegNet("tw", vgg, 3, 1e-14, 1.0)
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    z, h = net(x)
    assert h.shape == (2, 3, 64, 64)
    for c in range(3):
        (g,) = torch.autograd.grad(z[:, c].sum(), x, retain_graph=True)
        torch.testing.assert_close(h[:, c].detach(), (x * g).sum(1), rtol=1e-4,
                                   atol=1e-4 * float(h.detach().abs().max()))  # fmt: skip
    net.decoder.close()


def test_vgg16_unet_baselines_and_alpha_beta(vgg: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    net = SegNet("tw", vgg, 3, 1e-8, 1.0, "alpha-beta", 1.0)
    with torch.no_grad():
        z, h = net(x)
    assert h.shape == (2, 3, 64, 64) and bool(torch.isfinite(h).all())
    net.decoder.close()
    unet = SegNet("mt-unet", vgg, 3).double().eval()
    with torch.no_grad():
        z, h = unet(x)
    assert z.shape == (2, 3) and h.shape == (2, 3, 64, 64)
