"""attack under torchrun with 2 gloo processes: G and D gradients all-reduced by hand; both ranks end equal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.dist


def test_torchrun_two_gloo_ranks(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        MLKIT_CACHE=str(tmp_path / "cache"),
        OMP_NUM_THREADS="1",
    )
    tiny = ["--set", "epochs=2", "--set", "target_epochs=1", "--set", "digits.train=400", "--set", "digits.test=100",
            "--set", "val=80", "--set", "batch_size=32"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mlkit",
           "attack", "train", "--device", "cpu", "--quiet", "--json", "--project", str(tmp_path / "runs"), *tiny]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.0 <= body["metrics"]["test/success"] <= 1.0
    assert (Path(body["run_dir"]) / "weights" / "best.pt").is_file()
