"""Malformed graph folders: every loader answers with one DataError line naming the file (exit 3), never a
traceback or an 'internal failure', and leaves the user's files as they were."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mlkit.core.errors import DataError
from mlkit.graph.io import load_graph, save_generic
from mlkit.graph.planetoid import load_planetoid
from mlkit.graph.tu import load_tu


def _generic(root: Path) -> Path:
    rng = np.random.default_rng(0)
    edges = np.stack([np.arange(20), (np.arange(20) + 1) % 20], 1)
    split = {"train": np.arange(0, 10), "val": np.arange(10, 15), "test": np.arange(15, 20)}
    return save_generic(root, edges, 20, rng.normal(size=(20, 4)), rng.integers(0, 3, 20), split)


def _text_edges(root: Path, text: str) -> None:
    for f in ("edges.npy", "indptr.npy", "indices.npy"):
        (root / f).unlink()
    (root / "edges.txt").write_bytes(text.encode("utf-8") if isinstance(text, str) else text)


def _gbp(root: Path, header: str) -> None:
    root.mkdir()
    (root / "g.txt").write_text(header + "0 1\n1 2\n")
    np.save(root / "g_feat.npy", np.ones((3, 2), np.float32))
    np.savez(root / "g_labels.npz", labels=np.array([0, 1, 0]), idx_train=[0], idx_val=[1], idx_test=[2])


CASES = {
    "edge text with a header line": (lambda r: _text_edges(r, "u v\n0 1\n1 2\n"), "edges.txt line 1"),
    "edge text with a word": (lambda r: _text_edges(r, "0 1\n1 two\n"), "edges.txt line 2"),
    "edge text not UTF-8": (lambda r: _text_edges(r, b"0 1\n\xff\xfe 2\n"), "edges.txt"),
    "negative edge id": (lambda r: np.save(r / "edges.npy", np.array([[0, -1]])), "outside"),
    "split ids beyond the node count": (
        lambda r: np.savez(r / "split.npz", train=[0, 99], val=[1], test=[2]), "outside 0..19"),
    "string features": (lambda r: np.save(r / "feats.npy", np.array([["a"] * 4] * 20)), "must be numeric"),
    "NaN features": (lambda r: np.save(r / "feats.npy", np.full((20, 4), np.nan, np.float32)), "NaN"),
    "truncated features": (
        lambda r: (r / "feats.npy").write_bytes((r / "feats.npy").read_bytes()[:100]), "feats.npy"),
    "pickled object features": (
        lambda r: np.save(r / "feats.npy", np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True),
        "feats.npy"),
    "features of the wrong length": (lambda r: np.save(r / "feats.npy", np.ones((7, 4), np.float32)), "rows"),
    "labels of the wrong length": (lambda r: np.save(r / "labels.npy", np.zeros(5, np.int64)), "labels"),
    "corrupt split.npz": (lambda r: (r / "split.npz").write_bytes(b"PK\x03\x04garbage"), "split.npz"),
    "bad meta.json": (lambda r: (r / "meta.json").write_text('{"num_nodes": 20,'), "meta.json line 1"),
    "meta.json a list": (lambda r: (r / "meta.json").write_text("[1, 2]"), "meta.json"),
    "empty edges.npy file": (lambda r: (r / "edges.npy").write_bytes(b""), "edges.npy"),
}


def _digest(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_generic_graphs_are_one_line_data_errors(case, tmp_path):
    root = _generic(tmp_path / "g")
    if case == "empty edges.npy file" or case == "negative edge id":
        for f in ("indptr.npy", "indices.npy"):
            (root / f).unlink()
    mutate, needle = CASES[case]
    mutate(root)
    before = _digest(root)
    with pytest.raises(DataError) as info:
        load_graph(root)
    line = info.value.line()
    assert "\n" not in line and needle in line, line
    assert _digest(root) == before


@pytest.mark.parametrize("header, needle", [("n\n", "g.txt line 1"), ("3\n", None)])
def test_gbp_layout_header(header, needle, tmp_path):
    _gbp(tmp_path / "g", header)
    if needle is None:
        assert load_graph(tmp_path / "g").num_nodes == 3
        return
    with pytest.raises(DataError) as info:
        load_graph(tmp_path / "g")
    assert needle in info.value.line()


def test_planetoid_and_tu_garbage_are_data_errors(tmp_path):
    pl = tmp_path / "pl"
    pl.mkdir()
    for part in ("x", "y", "allx", "ally", "tx", "ty", "graph"):
        (pl / f"ind.cora.{part}").write_bytes(b"\x80\x04garbage")
    (pl / "ind.cora.test.index").write_text("1\n2\n")
    with pytest.raises(DataError):
        load_planetoid(pl, "cora")
    tu = tmp_path / "tu"
    tu.mkdir()
    (tu / "X_A.txt").write_text("1, 2\n2, x\n")
    (tu / "X_graph_indicator.txt").write_text("1\n1\n")
    (tu / "X_graph_labels.txt").write_text("1\n")
    with pytest.raises(DataError) as info:
        load_tu(tu)
    assert "\n" not in info.value.line()
    assert json.dumps(info.value.line())


CLI_CASES = ("edge text with a header line", "split ids beyond the node count", "string features",
             "truncated features", "NaN features")  # fmt: skip


@pytest.mark.parametrize("task", ["gbp", "framelet"])
@pytest.mark.parametrize("case", CLI_CASES)
def test_malformed_folders_through_the_cli_exit_3_with_one_error_line(case, task, tmp_path, capsys, monkeypatch):
    """The error taxonomy end to end: `mlkit <task> train --data DIR` on a malformed folder exits 3 with one
    'error:' line on stderr, no internal failure or traceback, no run dir left, and the folder unchanged."""
    from mlkit.cli import main

    monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "cache"))
    root = _generic(tmp_path / "g")
    mutate, needle = CASES[case]
    mutate(root)
    before = _digest(root)
    capsys.readouterr()
    rc = main([task, "train", "--data", str(root), "--project", str(tmp_path / "runs"), "--device", "cpu",
               "--epochs", "2"])  # fmt: skip
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 3, err
    assert len(errors) == 1 and needle in errors[0], err
    assert "internal failure" not in err and "Traceback" not in err
    assert _digest(root) == before
    assert not list((tmp_path / "runs").glob(f"{task}/*"))  # a run that failed on its data leaves no run dir
