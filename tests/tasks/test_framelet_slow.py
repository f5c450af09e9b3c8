"""Validation experiments of spec section 8 (opt-in: pytest -m slow). Each asserts the claim it checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlkit.cli import main

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "planetoid"
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "cache"))


def _metrics(runs_dir, capsys, *args: str) -> dict:
    rc = main(
        ["framelet", "train", "--project", str(runs_dir), "--device", "cpu", "--quiet", "--json", *args]
    )
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    return json.loads(cap.out)["metrics"]


@pytest.mark.skipif(not (DATA / "ind.cora.x").exists(), reason="shared Planetoid data absent")
@pytest.mark.parametrize(("arch", "floor"), [("ufg-r", 0.815), ("ufg-s", 0.805)])
def test_cora_ten_reps(runs_dir, capsys, arch, floor):
    m = _metrics(runs_dir, capsys, "--data", str(DATA), "--dataset", "cora", "--arch", arch, "--reps", "10")
    assert m["reps"] == 10
    assert m["test/acc"] >= floor, m


def _synth(tmp_path_factory, name: str, **kw) -> Path:
    from mlkit.tasks.framelet.cli import synth

    out = tmp_path_factory.mktemp(name)
    args = {"nodes": 3000, "classes": 4, "features": 200, "degree": 10.0, "noise": [1.0, 2.0], "seed": 0}
    synth(out=out, **{**args, **kw})
    return out


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    return _synth(tmp_path_factory, "framelet-synth", mu=1.0, rewire=[0.2], graphs=600)


@pytest.fixture(scope="module")
def weak_dir(tmp_path_factory) -> Path:
    """CSBM with class means at mu = 0.5: at mu = 1 every model sits at 0.996-0.998 for every eta (no signal)."""
    return _synth(tmp_path_factory, "framelet-weak", mu=0.5, rewire=[], graphs=2)


def test_shrinkage_degrades_less_under_feature_noise(runs_dir, capsys, weak_dir):
    """8.3a: homophilous CSBM (mu 0.5), feature noise eta in {0, 1, 2} sigma_x, 5 reps: UFG-S loses less accuracy
    than UFG-R as eta grows. Measured: UFG-R 0.997 / 0.988 / 0.883, UFG-S 0.997 / 0.990 / 0.908 (rep std <= 0.02).
    At eta = 1 both lose < 0.01, so that step allows rep noise (0.005); at eta = 2 the claim is asserted strictly."""
    acc = {}
    for arch in ("ufg-r", "ufg-s"):
        for eta, folder in (
            (0, "homophilous"),
            (1, "homophilous-feature-noise-1"),
            (2, "homophilous-feature-noise-2"),
        ):
            acc[arch, eta] = _metrics(
                runs_dir, capsys, "--data", str(weak_dir / folder), "--arch", arch, "--reps", "5"
            )["test/acc"]
    print(acc)
    drop = {(a, eta): acc[a, 0] - acc[a, eta] for a in ("ufg-r", "ufg-s") for eta in (1, 2)}
    assert drop["ufg-s", 1] <= drop["ufg-r", 1] + 0.005, acc
    assert drop["ufg-s", 2] < drop["ufg-r", 2], acc
    assert drop["ufg-r", 2] > 0.05, acc  # the noise must hurt, or the comparison says nothing


def test_ufg_beats_gcn_on_heterophilous(runs_dir, capsys, synth_dir):
    """8.3b: heterophilous CSBM (p_in/p_out = 0.1): UFG-R clearly beats GCN and is >= an MLP."""
    acc = {
        a: _metrics(runs_dir, capsys, "--data", str(synth_dir / "heterophilous"), "--arch", a, "--reps", "3")[
            "test/acc"
        ]
        for a in ("ufg-r", "gcn", "mlp")
    }
    print(acc)
    assert acc["ufg-r"] >= acc["gcn"] + 0.05, acc
    assert acc["ufg-r"] >= acc["mlp"], acc


def test_framelet_pooling_beats_mean_pooling(runs_dir, capsys, synth_dir):
    """8.4: two-class synthetic graph set, 10 reps: UFGPool-SUM >= mean pooling.

    The node feature is the degree standardised over the set (the loader's default). With the raw count
    (`--set graph.degree_feature=raw`) the sum readout feeds 90-160 into the head at init and, under the spec's
    Adam lr 5e-3, kills its ReLUs in some repetitions: UFGPool-SUM 0.778 +- 0.268 against mean pool 0.983."""
    acc = {
        a: _metrics(runs_dir, capsys, "--data", str(synth_dir / "graphs"), "--arch", a, "--reps", "10")
        for a in ("ufgpool", "meanpool")
    }
    print({a: (m["test/acc"], m["test/acc_std"]) for a, m in acc.items()})
    assert acc["ufgpool"]["test/acc"] >= acc["meanpool"]["test/acc"], acc
    assert np.isfinite(acc["ufgpool"]["test/acc_std"])
