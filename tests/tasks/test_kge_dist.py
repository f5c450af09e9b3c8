"""kge under torchrun (2 gloo processes): DDP training on the embedded default, rank-sharded batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.dist
TINY = ["--epochs", "2", "--set", "model.dim=16", "--set", "synth.entities=80", "--set", "synth.triples=600",
        "--set", "synth.relations=6", "--quiet", "--json", "--device", "cpu"]  # fmt: skip


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO), env.get("PYTHONPATH", "")]),
               MLKIT_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")  # fmt: skip
    return env


def test_torchrun_ddp_training_matches_one_process(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mlkit",
           "kge", "train", "--project", str(tmp_path / "runs"), *TINY]  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(out) == 1 and 0 < out[0]["metrics"]["test/mrr"] <= 1
    one = subprocess.run([sys.executable, "-m", "mlkit", "kge", "train", "--project", str(tmp_path / "r1"), *TINY],
                         cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    single = json.loads(one.stdout.strip().splitlines()[-1])["metrics"]
    # the summed-loss update of a sharded batch equals the one-process update up to float summation order
    assert abs(single["train/loss"] - out[0]["metrics"]["train/loss"]) < 1e-3 * max(1.0, single["train/loss"])
