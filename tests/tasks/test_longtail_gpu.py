"""longtail CUDA paths (skipped without CUDA): the masking kernel on CUDA equals the CPU path, an MGP and a BFT step
under bf16 autocast, and a tiny train run with --device cuda."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_masking_kernel_cuda_matches_cpu() -> None:
    from mlkit.kernels.mae_mask import random_masking, unshuffle

    x, noise = torch.randn(4, 49, 32), torch.rand(4, 49)
    cpu = random_masking(x, 0.75, noise)
    gpu = random_masking(x.cuda(), 0.75, noise.cuda())
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())
    tok = torch.randn(1, 1, 32)
    assert torch.equal(unshuffle(cpu[0], tok, cpu[2]), unshuffle(gpu[0], tok.cuda(), gpu[2]).cpu())


def test_mgp_and_bft_steps_under_bf16_autocast() -> None:
    from mlkit.tasks.longtail.loss import LongTailLoss
    from mlkit.tasks.longtail.model import MAE, build_vit

    mae = MAE(build_vit("lt-tiny", 28, 0)).cuda()
    x = torch.randn(16, 3, 28, 28, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _, _ = mae(x)
    loss.backward()
    assert torch.isfinite(loss)
    vit = build_vit("lt-tiny", 28, 10).cuda()
    crit = LongTailLoss("bal_bce", torch.arange(1, 11) * 10.0).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        z = vit(x)
    loss = crit(z, torch.eye(10, device="cuda")[torch.arange(16) % 10])
    loss.backward()
    assert torch.isfinite(loss) and vit.head.weight.grad is not None


def test_tiny_train_on_cuda(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mlkit.cli import main

    rc = main(["longtail", "train", "--device", "cuda", "--quiet", "--json", "--project", str(tmp_path),
               "--epochs", "2", "--set", "mgp.epochs=1"])  # fmt: skip
    assert rc == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["metrics"]["test/balanced_acc"] <= 1.0
