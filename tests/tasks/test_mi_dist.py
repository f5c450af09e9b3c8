"""torchrun with 2 gloo processes: `mi train` on a stream, each rank its own batches, gradients averaged each step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.dist


def test_torchrun_trains_demi_on_two_ranks(tmp_path):
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), MLKIT_CACHE=str(tmp_path / "c"),
               OMP_NUM_THREADS="1")  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mlkit",
           "mi", "train", "--stream", "--dim", "6", "--true-mi", "3", "--project", str(tmp_path / "runs"), "--json",
           "--quiet", "--device", "cpu", "--set", "epochs=2", "--set", "steps_per_epoch=10", "--set", "hidden=16",
           "--set", "eval_batches=2"]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    body = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][0])
    runs = list((tmp_path / "runs" / "mi").iterdir())
    assert len(runs) == 1 and (runs[0] / "weights" / "best.pt").is_file()
    ck = torch.load(runs[0] / "weights" / "best.pt", weights_only=True)
    assert ck["task"] == "mi" and "test/term2" in body["metrics"]
