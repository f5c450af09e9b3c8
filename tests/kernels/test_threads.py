"""Numba parallel launches must not move torch's thread count (they share libgomp's per-thread setting)."""

from __future__ import annotations

import numpy as np
import torch

from mlkit.kernels.crf import crf_nll_torch
from mlkit.kernels.threads import keep_torch_threads


def test_crf_numba_kernel_keeps_torch_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        e = torch.zeros(2, 3, 4, requires_grad=True)
        nll = crf_nll_torch(e, torch.zeros(2, 3, dtype=torch.int64), torch.tensor([3, 2]), torch.zeros(6, 6))
        nll.sum().backward()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_keep_torch_threads_restores_a_changed_count():
    before = torch.get_num_threads()
    try:
        with keep_torch_threads():
            torch.set_num_threads(before + 1)
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)
    assert np.isfinite(before)
