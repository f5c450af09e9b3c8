"""Checkpoints: weights_only-safe, atomic, checked on load; run dirs; dataset names."""

from __future__ import annotations

import os

import pytest
import torch

from mlkit.core import checkpoint
from mlkit.core.data import resolve_data
from mlkit.core.errors import DataError, UsageError
from mlkit.core.rundir import increment_dir, newest_best, resolve_model


def _ck(value: float = 1.0):
    return checkpoint.make(
        "toy", {"arch": "mlp", "lr": 0.1}, {"w": torch.full((3,), value)}, epoch=2, metrics={"val/f1": 0.5}
    )


def test_checkpoint_round_trip_weights_only(tmp_path):
    path = tmp_path / "w" / "best.pt"
    checkpoint.save(_ck(), path)
    raw = torch.load(path, weights_only=True)
    for key in ("format", "format_version", "mlkit_version", "task", "config", "state_dict", "metrics", "epoch"):
        assert key in raw
    ck = checkpoint.load(path, "toy")
    assert torch.equal(ck["state_dict"]["w"], torch.ones(3)) and ck["epoch"] == 2


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(_ck(1.0), path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        checkpoint.save(_ck(2.0), path)
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path)["state_dict"]["w"], torch.ones(3))


def test_load_refuses_other_tasks_and_foreign_files(tmp_path):
    path = tmp_path / "a.pt"
    checkpoint.save(_ck(), path)
    with pytest.raises(DataError, match="for task 'toy'"):
        checkpoint.load(path, "ner")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError):
        checkpoint.load(junk)
    torch.save({"x": 1}, tmp_path / "plain.pt")
    with pytest.raises(DataError, match="not an mlkit checkpoint"):
        checkpoint.load(tmp_path / "plain.pt")


def test_run_dirs_increment(tmp_path):
    assert increment_dir(tmp_path, "toy", "train", False) == tmp_path / "toy" / "train"
    (tmp_path / "toy" / "train").mkdir(parents=True)
    assert increment_dir(tmp_path, "toy", "train", False).name == "train2"
    (tmp_path / "toy" / "train2").mkdir()
    assert increment_dir(tmp_path, "toy", "train", False).name == "train3"
    assert increment_dir(tmp_path, "toy", "train", True).name == "train"


def test_newest_best_and_resolve_model(tmp_path):
    with pytest.raises(UsageError) as err:
        resolve_model(None, tmp_path, "toy")
    assert "mlkit toy train" in err.value.line()
    old = tmp_path / "toy" / "a" / "weights" / "best.pt"
    new = tmp_path / "toy" / "b" / "weights" / "best.pt"
    for i, p in enumerate((old, new)):
        checkpoint.save(_ck(), p)
        os.utime(p, (1000 + i, 1000 + i))
    assert newest_best(tmp_path, "toy") == new
    assert resolve_model(None, tmp_path, "toy") == new
    assert resolve_model(str(old.parents[1]), tmp_path, "toy") == old


def test_dataset_names_resolve_under_the_datasets_root(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    (root / "mydata").mkdir(parents=True)
    monkeypatch.setenv("MLKIT_DATASETS", str(root))
    assert resolve_data("mydata", "x") == root / "mydata"
    assert resolve_data(str(root / "mydata"), "x") == root / "mydata"
    with pytest.raises(DataError) as err:
        resolve_data("other", "<root>/train.txt")
    line = err.value.line()
    assert str(root / "other") in line and "<root>/train.txt" in line and "\n" not in line
