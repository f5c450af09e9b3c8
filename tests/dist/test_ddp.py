"""Training under torchrun with 2 gloo processes on CPU (opt-in: -m dist)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import subprocess_env

pytestmark = pytest.mark.dist


def test_torchrun_two_ranks_one_run_dir_equal_weights(tmp_path):
    runs = tmp_path / "runs"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "mlkit", "toy", "train", "--device", "cpu", "--epochs", "2", "--project", str(runs), "--quiet",
        "--set", "rank_hash=true",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(OMP_NUM_THREADS="1"), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    dirs = list((runs / "toy").iterdir())
    assert [d.name for d in dirs] == ["train"]
    ck = torch.load(dirs[0] / "weights" / "last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ck["state_dict"])  # the unwrapped model is saved
    assert ck["epoch"] == 1
    hashes = [(dirs[0] / f"rank{r}.sha").read_text() for r in (0, 1)]
    assert hashes[0] == hashes[1]
