"""grounding under torchrun with 2 gloo processes (DDP): NCE+Distill trains to the end on the tiny synthetic set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import torchrun

pytestmark = pytest.mark.dist


def test_torchrun_two_gloo_ranks(tmp_path: Path) -> None:
    tiny = ["--set", "epochs=2", "--set", "synth.train=64", "--set", "synth.val=16", "--set", "synth.test=16",
            "--set", "viz=1", "--set", "ramp_every=2"]  # fmt: skip
    out = torchrun(tmp_path, "grounding", "train", "--device", "cpu", "--quiet", "--json", "--project",
                   str(tmp_path / "runs"), *tiny)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.0 <= body["metrics"]["test/r1"] <= 1.0 and body["metrics"]["train/lambda"] >= 1.0
    assert (Path(body["run_dir"]) / "weights" / "best.pt").is_file()
