"""mlkit gbp through the CLI on real layouts: --dataset in multi-dataset folders, the `auto` estimator on small
graphs, a corrupt precompute cache entry, and predict's bad-record handling (stop / --on-error skip)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from graph_fixtures import error_lines, planetoid_set

from mlkit.cli import main
from mlkit.graph.synth import planted_partition

TINY = ["--set", "epochs=2", "--set", "synth.nodes=400", "--set", "model.hidden=8", "--quiet"]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "cache"))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_dataset_flag_picks_one_of_two_planetoid_sets(tmp_path, runs_dir, capsys):
    d = tmp_path / "planetoid"
    planetoid_set(d, "cora", 3)
    planetoid_set(d, "citeseer", 4, seed=1)
    base = ["gbp", "train", "--project", str(runs_dir), "--data", str(d), "--epochs", "2", "--quiet"]
    capsys.readouterr()
    assert main([*base, "--name", "ambiguous"]) == 3  # two datasets and no --dataset: refused, not a silent pick
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "2 datasets: citeseer, cora" in err[0] and "--dataset" in err[0]
    assert main([*base, "--dataset", "PubMed"]) == 3
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "no dataset 'PubMed'" in err[0] and "holds: citeseer, cora" in err[0]
    assert main([*base, "--dataset", "CiteSeer", "--name", "cs"]) == 0  # case-insensitive
    ck = torch.load(runs_dir / "gbp" / "cs" / "weights" / "best.pt", weights_only=True)
    assert ck["extra"]["graph"] == "citeseer" and ck["extra"]["num_classes"] == 4
    assert main([*base, "--preset", "cora", "--name", "pc"]) == 0  # a preset naming one of them picks it
    ck = torch.load(runs_dir / "gbp" / "pc" / "weights" / "best.pt", weights_only=True)
    assert ck["extra"]["graph"] == "cora" and ck["extra"]["num_classes"] == 3
    capsys.readouterr()
    assert main(["gbp", "eval", "--model", str(runs_dir / "gbp" / "cs"), "--json", "--quiet"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["metrics"]["test/acc"] <= 1


@pytest.mark.parametrize(
    ("name", "n", "nnz", "feats"),
    [("cora", 2708, 10556, 1433), ("citeseer", 3327, 9104, 3703), ("pubmed", 19717, 88648, 500)],
)
@pytest.mark.parametrize(("weights", "alpha"), [("ppr", 0.1), ("ppr", 0.05), ("heat", 0.1), ("sgc", 0.1)])
def test_auto_picks_exact_on_citation_sized_graphs(name, n, nnz, feats, weights, alpha):
    """Exact propagation costs L (nnz + n) F <= 5e9 multiply-adds there (about a second): auto never picks the
    bidirectional estimator, whatever the target count (before: heat and sgc weights with few targets did)."""
    from mlkit.core.config import load_defaults
    from mlkit.tasks.gbp.precompute import EXACT_CHEAP, resolve_estimator, weights_of

    prop = dict(load_defaults("mlkit.tasks.gbp")["propagation"], weights=weights, alpha=alpha, _features=feats)
    levels = len(weights_of(prop)) - 1
    assert levels * (nnz + n) * feats <= EXACT_CHEAP
    for targets in (1, 5, 20, 100, n // 25, n):
        assert resolve_estimator(prop, n, targets, levels, nnz) == "exact", targets


def test_auto_on_a_small_graph_with_few_targets_runs_exact(tmp_path):
    from mlkit.core.config import load_defaults
    from mlkit.graph.io import load_graph
    from mlkit.tasks.gbp.precompute import plan

    planted_partition(tmp_path / "g", 1500, classes=4, features=8, degree=5, seed=3)
    g = load_graph(tmp_path / "g")
    prop = dict(load_defaults("mlkit.tasks.gbp")["propagation"], weights="sgc")
    assert plan(g, prop, np.arange(5), 0)[0] == "exact"  # the work model alone chose bidirectional here
    assert plan(g, dict(prop, estimator="bidirectional"), np.arange(5), 0)[0] == "bidirectional"  # explicit wins


def _corrupt(kind: str, cdir: Path) -> None:
    meta = next(p for p in cdir.glob("*.json") if not p.name.startswith("."))
    rows = meta.with_suffix(".npy")
    if kind == "truncated rows":
        rows.write_bytes(rows.read_bytes()[: rows.stat().st_size // 2])
    elif kind == "rows of another dtype":
        np.save(rows, np.load(rows).astype(np.float64))
    elif kind == "meta not an object":
        meta.write_text("[]")
    elif kind == "meta with a bad shape":
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "shape": "big"}))
    elif kind == "meta without estimator":
        body = json.loads(meta.read_text())
        body.pop("estimator")
        meta.write_text(json.dumps(body))
    elif kind == "node ids outside the graph":
        np.save(meta.with_name(meta.stem + ".nodes.npy"), np.full(np.load(rows).shape[0], 10**6, np.int64))


@pytest.mark.parametrize(
    ("estimator", "kind"),
    [("exact", "truncated rows"), ("exact", "rows of another dtype"), ("exact", "meta not an object"),
     ("exact", "meta with a bad shape"), ("exact", "meta without estimator"),
     ("bidirectional", "node ids outside the graph")],
)  # fmt: skip
def test_a_corrupt_precompute_cache_entry_is_rebuilt_through_the_cli(tmp_path, runs_dir, capsys, estimator, kind):
    planted_partition(tmp_path / "g", 600, classes=3, features=6, degree=4, fracs=(0.2, 0.1, 0.2), seed=1)
    cdir = tmp_path / "rows"
    args = ["gbp", "train", "--project", str(runs_dir), "--data", str(tmp_path / "g"), "--epochs", "3",
            "--estimator", estimator, "--walks", "20", "--set", "propagation.levels=3",
            "--set", f"propagation.cache_dir={cdir}", "--quiet", "--json"]  # fmt: skip
    assert main([*args, "--name", "first"]) == 0
    first = json.loads(capsys.readouterr().out)["metrics"]
    want = {p.name: p.read_bytes() for p in cdir.iterdir()}
    _corrupt(kind, cdir)
    assert main([*args, "--name", "again"]) == 0, capsys.readouterr().err
    cap = capsys.readouterr()
    assert "internal failure" not in cap.err
    assert json.loads(cap.out)["metrics"]["test/acc"] == first["test/acc"]
    got = {p.name: p.read_bytes() for p in cdir.iterdir()}
    assert set(got) == set(want)  # rebuilt in place, no temp files left
    for f in (f for f in want if f.endswith(".npy")):  # the same rows (and node ids), bit for bit
        assert got[f] == want[f], f


def test_predict_stops_at_a_bad_line_after_earlier_rows_and_skip_goes_on(tmp_path, runs_dir, capsys):
    assert main(["gbp", "train", "--project", str(runs_dir), *TINY]) == 0
    inp, out = tmp_path / "ids.txt", tmp_path / "pred.jsonl"
    predict = ["gbp", "predict", "--project", str(runs_dir), "--quiet", "--input", str(inp), "--output", str(out)]
    for bad in ("seven", "400"):  # not an id; no such node (the default graph has 400 nodes under TINY)
        inp.write_text(f"0\n17\n{bad}\n2\n")
        capsys.readouterr()
        assert main(predict) == 3
        err = error_lines(capsys.readouterr().err)
        assert len(err) == 1 and "input line 3" in err[0]
        assert [r["id"] for r in _rows(out)] == [0, 17]  # the rows before the bad line are out
        assert main([*predict, "--on-error", "skip"]) == 0
        rows = _rows(out)
        assert [r["id"] for r in rows] == [0, 17, 3, 2]  # an error row carries the 1-based input line
        assert "error" in rows[2] and "input line 3" in rows[2]["error"] and "label" in rows[3]


def test_eval_refuses_data_with_classes_the_model_does_not_know(tmp_path, capsys):
    small, big = tmp_path / "small", tmp_path / "big"
    planetoid_set(small, "toy", classes=3)
    planetoid_set(big, "toy", classes=5)
    runs = str(tmp_path / "runs")
    assert main(["gbp", "train", "--data", str(small), "--project", runs, "--estimator", "exact", *TINY]) == 0
    capsys.readouterr()
    assert main(["gbp", "eval", "--data", str(big), "--project", runs, "--quiet"]) == 3
    assert "the data has 5 classes, the model knows 3" in error_lines(capsys.readouterr().err)[0]
