"""segment CUDA paths (skipped without CUDA): the TW decoder's heatmaps and gradients on CUDA equal the CPU ones for
both LRP rules, the batched-VJP kernel matches the unrolled decoder on CUDA, and a short train run with --device cuda."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlkit.tasks.segment.loss import tw_step_loss
from mlkit.tasks.segment.model import SegNet, build_encoder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _pair(rule: str) -> tuple[SegNet, SegNet]:
    nets = []
    for dev in ("cpu", "cuda"):
        torch.manual_seed(0)
        nets.append(SegNet("tw", build_encoder("tiny", 4, 8), 4, 1e-8, 0.0, rule).double().to(dev).train())
    return nets[0], nets[1]


@pytest.mark.parametrize("rule", ["epsilon", "alpha-beta"])
def test_heatmaps_and_gradients_cuda_match_cpu(rule: str) -> None:
    cpu, gpu = _pair(rule)
    x = torch.rand(6, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 4, (6, 32, 32))
    y[3:] = -1
    yi = (torch.rand(6, 4) < 0.5).double()
    for net, dev in ((cpu, "cpu"), (gpu, "cuda")):
        tw_step_loss(net, x.to(dev), y.to(dev), yi.to(dev), 1.0, 1.0, "oneshot")
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(a.grad, b.grad.cpu(), rtol=1e-6, atol=1e-9)
    with torch.no_grad():
        h_cpu, h_gpu = cpu.eval()(x)[1], gpu.eval()(x.cuda())[1]
    torch.testing.assert_close(h_cpu, h_gpu.cpu(), rtol=1e-6, atol=1e-9)


def test_batched_vjp_matches_decoder_on_cuda() -> None:
    from mlkit.kernels.lrp import gxi_heatmaps

    torch.manual_seed(1)
    net = SegNet("tw", build_encoder("tiny", 4, 8), 4, 1e-14, 1.0).double().cuda().eval()
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64, device="cuda")
    _, h = net(x)
    _, g = gxi_heatmaps(net.encoder, x, create_graph=False)
    torch.testing.assert_close(h.detach(), g.detach(), rtol=1e-4, atol=1e-4 * float(h.detach().abs().max()))


def test_train_on_cuda(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mlkit.cli import main

    rc = main(["segment", "train", "--device", "cuda", "--project", str(tmp_path), "--json", "--quiet",
               "--lrp-rule", "alpha-beta", "--max-steps", "3", "--set", "shapes.train=48", "--set", "shapes.val=16",
               "--set", "pretrain_epochs=1", "--set", "viz=1"])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    assert "test/miou" in json.loads(cap.out)["metrics"]
