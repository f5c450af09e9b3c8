"""segment under torchrun with 2 gloo processes (DDP): one-shot and iterative modes (grads all-reduced by hand on the iterative path) train to the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import torchrun

pytestmark = pytest.mark.dist


@pytest.mark.parametrize("mode", ["oneshot", "iterative"])
def test_torchrun_two_gloo_ranks(tmp_path: Path, mode: str) -> None:
    tiny = ["--set", "epochs=2", "--set", "pretrain_epochs=1", "--set", "shapes.train=64", "--set",
            "shapes.val=16", "--set", "viz=1", "--grad-mode", mode]  # fmt: skip
    out = torchrun(tmp_path, "segment", "train", "--device", "cpu", "--quiet", "--json", "--project",
                   str(tmp_path / "runs"), *tiny)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    body = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.0 <= body["metrics"]["test/miou"] <= 1.0
    assert (Path(body["run_dir"]) / "weights" / "best.pt").is_file()
