"""mlkit gbp: train/eval/predict end to end, presets, precompute cache and shards, inductive and multilabel data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit.cli import main
from mlkit.graph.io import load_graph, save_generic
from mlkit.graph.synth import planted_partition

TINY = ["--set", "epochs=2", "--set", "synth.nodes=400", "--set", "model.hidden=8", "--quiet"]


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def graph_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("g") / "synth"
    planted_partition(d, 1500, classes=4, features=8, degree=5, fracs=(0.1, 0.1, 0.2), seed=3)
    return d


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_train_eval_predict_on_the_embedded_graph(runs_dir, capsys, monkeypatch):
    assert main(["gbp", "train", "--project", str(runs_dir), *TINY]) == 0
    best = runs_dir / "gbp" / "train" / "weights" / "best.pt"
    ck = torch.load(best, weights_only=True)
    assert ck["extra"]["num_classes"] == 5 and ck["extra"]["estimator"] == "exact"
    capsys.readouterr()
    assert main(["gbp", "eval", "--project", str(runs_dir), "--json", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert {"train/f1", "val/f1", "test/f1", "test/acc"} <= set(metrics)
    assert metrics["val/f1"] == pytest.approx(ck["metrics"]["val/f1"])  # same graph re-synthesised for eval
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"0\n17\n399\n")))
    assert main(["gbp", "predict", "--project", str(runs_dir), "--quiet"]) == 0
    out = _json_lines(capsys.readouterr().out)
    assert [o["id"] for o in out] == [0, 17, 399]
    assert all(len(o["probs"]) == 5 and abs(sum(o["probs"]) - 1) < 1e-4 for o in out)
    assert all(o["label"] == int(np.argmax(o["probs"])) for o in out)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"400\n")))
    assert main(["gbp", "predict", "--project", str(runs_dir), "--quiet"]) == 3  # no such node


def test_model_learns_the_planted_partition(runs_dir, graph_dir, capsys):
    args = [
        "gbp",
        "train",
        "--project",
        str(runs_dir),
        "--data",
        str(graph_dir),
        "--epochs",
        "40",
        "--set",
        "train.patience=40",
        "--set",
        "model.dropout=0.1",
        "--quiet",
        "--json",
    ]
    assert main(args) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    # raw features carry a weak class signal (0.5 mu + unit noise); propagation makes it easy
    assert m["test/acc"] > 0.8


def test_preset_fills_defaults_but_explicit_values_win():
    from mlkit.core.config import apply_preset, load_defaults, resolve
    from mlkit.core.runner import explicit_keys

    d = load_defaults("mlkit.tasks.gbp")
    sets = ["preset=citeseer", "propagation.alpha=0.3"]
    cfg = apply_preset(resolve(d, (), sets), explicit_keys((), sets, {}))
    assert cfg["propagation"]["alpha"] == 0.3  # set by the user
    assert cfg["propagation"]["rmax"] == 1e-5 and cfg["propagation"]["r"] == 0.4
    assert cfg["model"]["bias"] == "bn" and cfg["train"]["weight_decay"] == 0.2 and cfg["batch_size"] == 64
    fr = apply_preset(resolve(d, (), ["preset=friendster"]))
    assert fr["propagation"]["weights"] == "sgc" and fr["propagation"]["self_loops"] is True
    from mlkit.core.errors import UsageError

    with pytest.raises(UsageError):
        apply_preset(resolve(d, (), ["preset=nope"]))


def test_preset_never_overrides_an_explicit_key_and_config_yaml_shows_its_values(runs_dir, capsys):
    """--preset cora --seed 0 keeps seed 0 (0 is the default, so the old fill-the-defaults rule lost it); the
    run's config.yaml holds the preset's values, and eval of that run keeps them (a preset applies once)."""
    import yaml

    from mlkit.core.config import load_defaults

    cora = load_defaults("mlkit.tasks.gbp")["presets"]["cora"]
    args = ["gbp", "train", "--project", str(runs_dir), "--preset", "cora", "--estimator", "auto", *TINY]
    assert main([*args, "--seed", "0", "--name", "s0"]) == 0
    assert main([*args, "--name", "dflt"]) == 0
    s0 = yaml.safe_load((runs_dir / "gbp" / "s0" / "config.yaml").read_text())
    dflt = yaml.safe_load((runs_dir / "gbp" / "dflt" / "config.yaml").read_text())
    assert s0["seed"] == 0 and dflt["seed"] == cora["seed"] == 20159
    for cfg in (s0, dflt):
        assert cfg["propagation"]["estimator"] == "auto"  # explicit, although cora says push
        assert cfg["batch_size"] == cora["batch_size"] == 16
        assert cfg["propagation"]["alpha"] == cora["propagation"]["alpha"]
        assert cfg["train"]["patience"] == cora["train"]["patience"]
    capsys.readouterr()
    assert main(["gbp", "eval", "--model", str(runs_dir / "gbp" / "s0"), "--json", "--quiet"]) == 0
    ck = torch.load(runs_dir / "gbp" / "s0" / "weights" / "best.pt", weights_only=True)
    assert ck["config"]["seed"] == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["val/f1"] == pytest.approx(ck["metrics"]["val/f1"])


@pytest.mark.parametrize("estimator", ["push", "bidirectional", "exact"])
def test_shards_merge_bit_for_bit(graph_dir, tmp_path, capsys, estimator):
    base = [
        "gbp",
        "precompute",
        "--data",
        str(graph_dir),
        "--estimator",
        estimator,
        "--rmax",
        "1e-4",
        "--walks",
        "50",
        "--set",
        "propagation.levels=4",
        "--quiet",
    ]
    outs = {}
    for tag, extra in (
        ("full", ["--out", str(tmp_path / "a")]),
        ("s0", ["--out", str(tmp_path / "b"), "--shard", "0/3"]),
        ("s1", ["--out", str(tmp_path / "b"), "--shard", "1/3"]),
        ("s2", ["--out", str(tmp_path / "b"), "--shard", "2/3"]),
        ("merged", ["--out", str(tmp_path / "b"), "--merge", "3"]),
    ):
        assert main(base + extra) == 0, tag
        outs[tag] = json.loads(capsys.readouterr().out)
    full = np.load(outs["full"]["rows"])
    merged = np.load(outs["merged"]["rows"])
    assert outs["s1"]["shape"][1] == 3 and full.shape[1] == 8
    np.testing.assert_array_equal(full, merged)
    assert outs["full"]["estimator"] == estimator
    if estimator == "bidirectional":
        np.testing.assert_array_equal(np.load(outs["full"]["nodes"]), np.load(outs["merged"]["nodes"]))


def test_precompute_cache_hits_and_key_changes(graph_dir, tmp_path):
    from mlkit.core.config import load_defaults
    from mlkit.tasks.gbp.precompute import propagate_rows

    g = load_graph(graph_dir)
    prop = dict(load_defaults("mlkit.tasks.gbp")["propagation"], estimator="push")
    a = propagate_rows(g, prop, cache_dir=tmp_path)
    b = propagate_rows(g, prop, cache_dir=tmp_path)
    assert a.path == b.path and isinstance(b.rows, np.memmap)
    c = propagate_rows(g, dict(prop, rmax=1e-5), cache_dir=tmp_path)
    assert c.path != a.path and not np.array_equal(np.asarray(a.rows), np.asarray(c.rows))
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_a_broken_precompute_cache_entry_is_computed_again(graph_dir, tmp_path):
    from mlkit.core.config import load_defaults
    from mlkit.tasks.gbp.precompute import propagate_rows

    g = load_graph(graph_dir)
    prop = dict(load_defaults("mlkit.tasks.gbp")["propagation"], estimator="exact", levels=3)
    want = np.asarray(propagate_rows(g, prop, cache_dir=tmp_path).rows).copy()
    rows_file = next(p for p in tmp_path.glob("*.npy"))
    rows_file.write_bytes(rows_file.read_bytes()[: rows_file.stat().st_size // 2])  # a killed write
    again = propagate_rows(g, prop, cache_dir=tmp_path)
    np.testing.assert_array_equal(np.asarray(again.rows), want)
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_bidirectional_row_does_not_depend_on_the_target_set(graph_dir):
    from mlkit.core.config import load_defaults
    from mlkit.tasks.gbp.precompute import propagate_rows

    g = load_graph(graph_dir)
    prop = dict(
        load_defaults("mlkit.tasks.gbp")["propagation"],
        estimator="bidirectional",
        walks=64,
        weights="sgc",
        levels=3,
    )
    many = propagate_rows(g, prop, targets=np.arange(0, 1500, 7), seed=1)
    one = propagate_rows(g, prop, targets=np.array([14]), seed=1)
    np.testing.assert_array_equal(many.take(np.array([14])), np.asarray(one.rows))


def test_inductive_training_rows_come_from_the_train_subgraph(graph_dir, runs_dir, capsys):
    from mlkit.core.config import load_defaults, resolve
    from mlkit.graph.io import induced_subgraph
    from mlkit.kernels.gbp_push import ppr_weights, propagate_numba
    from mlkit.tasks.gbp.data import build_rows

    g = load_graph(graph_dir)
    cfg = resolve(
        load_defaults("mlkit.tasks.gbp"),
        (),
        [
            "train.inductive=true",
            "propagation.estimator=exact",
            "propagation.levels=5",
            "propagation.cache=false",
        ],
    )
    rows = build_rows(cfg, g)
    ip, ix = induced_subgraph(g, g.train_idx)
    want = propagate_numba(ip, ix, np.asarray(g.features[g.train_idx]), ppr_weights(0.1, 5), 0.5)
    np.testing.assert_allclose(rows.rows(g, "train"), want, rtol=1e-6)
    assert not np.allclose(rows.rows(g, "train"), rows.full.take(g.train_idx))
    assert (
        main(
            [
                "gbp",
                "train",
                "--project",
                str(runs_dir),
                "--data",
                str(graph_dir),
                "--inductive",
                "--epochs",
                "2",
                "--quiet",
                "--set",
                "train.standardize=true",
            ]
        )
        == 0
    )


def test_multilabel_generic_dataset(tmp_path, runs_dir, capsys):
    rng = np.random.default_rng(0)
    n = 300
    edges = rng.integers(0, n, size=(900, 2))
    y = (rng.random((n, 3)) < 0.4).astype(np.float32)
    x = (y @ rng.standard_normal((3, 6)) + rng.standard_normal((n, 6))).astype(np.float32)
    perm = rng.permutation(n)
    save_generic(
        tmp_path / "ml", edges, n, x, y, {"train": perm[:150], "val": perm[150:200], "test": perm[200:]}
    )
    assert (
        main(
            [
                "gbp",
                "train",
                "--project",
                str(runs_dir),
                "--data",
                str(tmp_path / "ml"),
                "--epochs",
                "3",
                "--set",
                "model.layers=3",
                "--set",
                "model.bias=bn",
                "--quiet",
                "--json",
            ]
        )
        == 0
    )
    m = json.loads(capsys.readouterr().out)["metrics"]
    assert 0.0 <= m["test/f1"] <= 1.0
    ck = torch.load(runs_dir / "gbp" / "train" / "weights" / "best.pt", weights_only=True)
    assert ck["extra"]["multilabel"] is True


def test_gnnbp_structure():
    from mlkit.tasks.gbp.model import GnnBP

    m = GnnBP(10, 16, 3, layers=4, dropout=0.5, bias="bn")
    assert [layer.residual for layer in m.layers] == [False, True, True, False]
    assert m.layers[-1].bn is None and all(layer.bn is not None for layer in m.layers[:-1])
    assert not any("bias" in name for name, _ in m.layers[-1].named_parameters())
    m.eval()
    x = torch.randn(5, 10)
    assert m(x).shape == (5, 3)
    # dropout on the input too: in train mode with p=1 everything is dropped and the output is exactly zero
    m2 = GnnBP(10, 16, 3, layers=2, dropout=1.0)
    m2.train()
    assert torch.count_nonzero(m2(x)) == 0


def test_bad_layout_exits_3(tmp_path, runs_dir):
    (tmp_path / "empty").mkdir()
    assert (
        main(["gbp", "train", "--project", str(runs_dir), "--data", str(tmp_path / "empty"), "--quiet"]) == 3
    )
    assert main(["gbp", "train", "--project", str(runs_dir), "--estimator", "bogus", *TINY]) == 2
    assert (
        main(["gbp", "train", "--project", str(runs_dir), "--estimator", "push", "--weights", "heat", *TINY])
        == 2
    )


def test_auto_estimator_falls_back_to_exact_when_walks_would_not_fit_in_ram():
    """4e5 targets x 1,000 walks x 43 PPR levels on a 1e7-node graph: exact, not bidirectional (it ran out of 24 GB)."""
    from mlkit.tasks.gbp.precompute import resolve_estimator

    prop = {"estimator": "auto", "weights": "ppr", "rmax": 1e-4, "walks": 1000, "_features": 16}
    assert resolve_estimator(prop, 10**7, 4 * 10**5, 43, 13 * 10**7) == "exact"
    # 40 targets, 4 levels: bidirectional where exact is not cheap (1e7 nodes: L (nnz + n) F = 9e9 > 5e9) ...
    assert resolve_estimator(prop, 10**7, 40, 4, 13 * 10**7) == "bidirectional"
    # ... exact where it is (1e5 nodes: 9e7 multiply-adds, a tenth of a second), and for many targets
    assert resolve_estimator(prop, 10**5, 40, 4, 13 * 10**5) == "exact"
    assert resolve_estimator(prop, 10**5, 10**5, 4, 13 * 10**5) == "exact"
