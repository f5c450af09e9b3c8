"""segment: `mlkit segment pretrain`, the toy's stand-in for ImageNet weights, feeds --encoder-weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mlkit.cli import main
from mlkit.tasks.segment.stand_in import shapes_arrays


def test_shapes_arrays_are_seeded_and_labelled() -> None:
    x, lab = shapes_arrays(6, 32, seed=3)
    x2, lab2 = shapes_arrays(6, 32, seed=3)
    assert x.shape == (6, 3, 32, 32) and lab.shape == (6, 4)
    assert torch.equal(x, x2) and torch.equal(lab, lab2)
    assert bool((lab[:, 0] == 1).all()) and bool((lab[:, 1:].sum(1) >= 1).all())
    assert float(x.min()) > 0 and float(x.max()) <= 1.0  # (x + 1) / 256


def test_pretrain_verb_writes_weights_train_loads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "enc.pt"
    assert main(["segment", "pretrain", "--out", str(out), "--images", "64", "--epochs", "1"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["mode"] == "pretrain" and rec["encoder_weights"] == str(out)
    assert 0.0 <= rec["metrics"]["val/label_acc"] <= 1.0
    sd = torch.load(out, weights_only=True)
    assert "conv1.weight" in sd and "fc.weight" in sd
    rc = main(["segment", "train", "--project", str(tmp_path / "runs"), "--encoder-weights", str(out), "--quiet",
               "--json", "--max-steps", "1", "--set", "shapes.train=32", "--set", "shapes.val=16",
               "--set", "pretrain_epochs=0", "--set", "viz=0"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err[-1500:]


def test_pretrain_verb_rejects_bad_encoder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["segment", "pretrain", "--out", str(tmp_path / "e.pt"), "--encoder", "alexnet"]) == 2
    assert "alexnet" in capsys.readouterr().err
    assert not (tmp_path / "e.pt").exists()
