"""torchrun with 2 gloo processes: `mi train` on a stream, each rank its own batches, gradients averaged each step."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import torchrun

pytestmark = pytest.mark.dist


def test_torchrun_trains_demi_on_two_ranks(tmp_path):
    out = torchrun(tmp_path,
           "mi", "train", "--stream", "--dim", "6", "--true-mi", "3", "--project", str(tmp_path / "runs"), "--json",
           "--quiet", "--device", "cpu", "--set", "epochs=2", "--set", "steps_per_epoch=10", "--set", "hidden=16",
           "--set", "eval_batches=2")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    body = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][0])
    runs = list((tmp_path / "runs" / "mi").iterdir())
    assert len(runs) == 1 and (runs[0] / "weights" / "best.pt").is_file()
    ck = torch.load(runs[0] / "weights" / "best.pt", weights_only=True)
    assert ck["task"] == "mi" and "test/term2" in body["metrics"]
