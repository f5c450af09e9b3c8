"""segment: data layouts (shapes, generic, VOC fixture), the tied-weight decoder's unit checks of spec §7, losses,
the sampler, and a tiny CLI run (train -> eval -> predict) on the embedded default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bn_fixtures import randomise_bn

from mlkit.tasks.segment.evaluation import confusion, iou_from
from mlkit.tasks.segment.loss import class_loss, pixel_loss, tw_step_loss
from mlkit.tasks.segment.model import SegNet, build_encoder
from mlkit.tasks.segment.steps import semi_batches


def _net(arch: str = "tw", k: int = 4, width: int = 4, seed: int = 0, eps: float = 1e-8) -> SegNet:
    torch.manual_seed(seed)
    return SegNet(arch, build_encoder("tiny", k, width), k, eps)


def _randomise_bn(net: SegNet) -> None:
    randomise_bn(net)


# ------------------------------------------------------------------------------------------------ model
def test_decoder_weight_is_encoder_weight() -> None:
    net = _net()
    assert not any(True for _ in net.decoder.__dict__.values() if isinstance(_, torch.nn.Parameter))
    names = {n for n, _ in net.named_parameters()}
    assert all(n.startswith("encoder.") for n in names), "the TW model has parameters outside the encoder"
    tied = net.decoder.tied()
    assert tied and all(any(m is e for e in net.encoder.modules()) for m in tied)
    assert net.decoder.encoder is net.encoder
    assert net.decoder.encoder.conv1.weight is net.encoder.conv1.weight
    assert net.decoder.encoder.fc.weight is net.encoder.fc.weight


def test_heatmap_shape_matches_input() -> None:
    net = _net().eval()
    for size in (16, 17, 32):
        z, h = net(torch.rand(2, 3, size, size))
        assert z.shape == (2, 4) and h.shape == (2, 4, size, size)


def test_relevance_conservation_eval_bn() -> None:
    net = _net(eps=1e-14).double()
    _randomise_bn(net)
    for m in net.modules():  # no bias anywhere: every unit's relevance is fully redistributed
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.zero_()
            m.bias.data.zero_()
    net.encoder.fc.bias.data.zero_()
    net.eval()
    net.heat_scale = 1.0
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    z, h = net(x)
    torch.testing.assert_close(h.sum((2, 3)), z, rtol=1e-6, atol=1e-9)


def test_lrp_eps_equals_gradient_times_input() -> None:
    net = _net(eps=1e-14, seed=1).double()
    _randomise_bn(net)
    net.eval()
    net.heat_scale = 1.0
    x = torch.rand(2, 3, 20, 20, dtype=torch.float64, requires_grad=True)
    z, h = net(x)
    for c in range(4):
        (g,) = torch.autograd.grad(z[:, c].sum(), x, retain_graph=True, create_graph=True)
        torch.testing.assert_close(
            h[:, c], (x * g).sum(1), rtol=1e-4, atol=1e-4 * float(h.detach().abs().max())
        )


@pytest.mark.parametrize("rule,alpha", [("epsilon", 1.0), ("alpha-beta", 1.0), ("alpha-beta", 2.0)])
def test_iterative_equals_oneshot_gradients(rule: str, alpha: float) -> None:
    x = torch.rand(6, 3, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 4, (6, 16, 16))
    y[3:] = -1
    yi = (torch.rand(6, 4) < 0.5).double()
    grads = []
    for mode in ("oneshot", "iterative"):
        net = _net(seed=2).double().train()
        net.decoder.rule, net.decoder.alpha = rule, alpha
        net.heat_scale = 0.0
        tw_step_loss(net, x, y, yi, 1.0, 1.0, mode)
        grads.append([p.grad.clone() for p in net.parameters()])
        assert all(bool(torch.isfinite(g).all()) for g in grads[-1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["std-unet", "mt-unet"])
def test_unet_baselines_shape(arch: str) -> None:
    net = _net(arch).train()
    z, h = net(torch.rand(2, 3, 16, 16))
    assert z.shape == (2, 4) and h.shape == (2, 4, 16, 16)
    assert any(n.startswith("unet.") for n, _ in net.named_parameters())


def test_losses() -> None:
    h = torch.randn(2, 4, 8, 8, requires_grad=True)
    assert float(pixel_loss(h, torch.full((2, 8, 8), -1)).detach()) == 0.0
    z = torch.zeros(5, 4)
    y = torch.zeros(5, 4)
    y[:, 0] = 1
    base = float(class_loss(z, y))  # bg weight 0: the bg label does not count, loss x B
    torch.testing.assert_close(base, 5 * 3 / 4 * float(np.log(2)), rtol=1e-5, atol=0)
    z2 = z.clone()
    z2[:, 0] = 50.0
    assert float(class_loss(z2, y)) == pytest.approx(base)


def test_semi_supervised_sampler() -> None:
    g = torch.Generator().manual_seed(0)
    plan = semi_batches(5, 100, 10, 40, g, False)
    counts = [len(lab) for lab, _ in plan]
    assert set(counts) <= {5} and all(len(a) + len(b) == 10 for a, b in plan)
    plan = semi_batches(30, 100, 9, 200, torch.Generator().manual_seed(0), False)
    counts = [len(lab) for lab, _ in plan]
    assert set(counts) == {4, 5} and abs(np.mean(counts) - 4.5) < 0.2
    assert all(len(u) == 0 for _, u in semi_batches(3, 100, 8, 5, g, True))


def test_unsupported_layer_raises() -> None:
    enc = build_encoder("tiny", 4, 4)
    enc.layer1.add_module("extra", torch.nn.Upsample(scale_factor=1))
    with pytest.raises(ValueError, match="does not support"):
        SegNet("tw", enc, 4)


def test_miou_confusion() -> None:
    t = np.array([0, 0, 1, 1, -1])
    p = np.array([0, 1, 1, 1, 0])
    c = confusion(p, t, 2)
    assert c.tolist() == [[1, 1], [0, 2]]
    np.testing.assert_allclose(iou_from(c), [0.5, 2 / 3])
