"""mlkit.kernels.lrp: K heatmaps from one batched VJP equal the explicit unrolled LRP-eps decoder (eval BN)."""

from __future__ import annotations

import pytest
import torch
from bn_fixtures import randomise_bn

from mlkit.kernels.lrp import gxi_heatmaps, reference_heatmaps
from mlkit.tasks.segment.model import build_encoder


def _encoder(k: int, width: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomise_bn(build_encoder("tiny", k, width).double()).eval()


@pytest.mark.parametrize("seed,k,width,size", [(0, 4, 8, 16), (1, 3, 4, 20), (2, 6, 8, 17)])
def test_vjp_equals_unrolled_decoder(seed: int, k: int, width: int, size: int) -> None:
    enc = _encoder(k, width, seed)
    x = torch.rand(3, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    z, h = gxi_heatmaps(enc, x)
    z2, h2 = reference_heatmaps(enc, x, eps=1e-14)
    assert h.shape == (3, k, size, size)
    torch.testing.assert_close(z, z2)
    torch.testing.assert_close(h, h2, rtol=1e-4, atol=1e-4 * float(h2.detach().abs().max()))


def test_vjp_is_differentiable() -> None:
    enc = _encoder(4, 4, 3)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    _, h = gxi_heatmaps(enc, x, create_graph=True)
    h.square().sum().backward()
    assert enc.conv1.weight.grad is not None and float(enc.conv1.weight.grad.abs().sum()) > 0
