"""attack under torchrun with 2 gloo processes: G and D gradients all-reduced by hand; both ranks end equal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import torchrun

pytestmark = pytest.mark.dist


def test_torchrun_two_gloo_ranks(tmp_path: Path) -> None:
    tiny = ["--set", "epochs=2", "--set", "target_epochs=1", "--set", "digits.train=400", "--set", "digits.test=100",
            "--set", "val=80", "--set", "batch_size=32"]  # fmt: skip
    out = torchrun(tmp_path, "attack", "train", "--device", "cpu", "--quiet", "--json", "--project",
                   str(tmp_path / "runs"), *tiny)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.0 <= body["metrics"]["test/success"] <= 1.0
    assert (Path(body["run_dir"]) / "weights" / "best.pt").is_file()
