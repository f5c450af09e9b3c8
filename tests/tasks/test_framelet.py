"""framelet task: CLI train/eval/predict on the embedded CSBM, variants (shrinkage, shared theta, matrix-free,
float64), graph-level pooling on the synthetic TU set, Planetoid, error exits, and model-level checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit.cli import main
from mlkit.tasks.framelet import framelets as F
from mlkit.tasks.framelet import synth as S
from mlkit.tasks.framelet.model import FrameletOp, UFGConv, shrink

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "planetoid"
TINY = ["--set", "synth.nodes=240", "--set", "synth.features=16", "--epochs", "3", "--reps", "2"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "cache"))


def _train(runs_dir, capsys, *args: str) -> tuple[int, dict, str]:
    rc = main(
        ["framelet", "train", "--project", str(runs_dir), "--device", "cpu", "--quiet", "--json", *args]
    )
    cap = capsys.readouterr()
    return rc, (json.loads(cap.out) if rc == 0 else {}), cap.err


def test_train_eval_predict_default(runs_dir, capsys, tmp_path):
    rc, out, err = _train(runs_dir, capsys, *TINY)
    assert rc == 0, err
    m = out["metrics"]
    assert m["reps"] == 2 and 0 <= m["test/acc"] <= 1 and m["test/acc_std"] >= 0 and m["saved_rep"] == 0
    run = Path(out["run_dir"])
    assert (run / "weights" / "best.pt").exists()
    # the synthesised default graph is kept in the cache, in the generic layout (train/eval/predict share it)
    assert len(list((tmp_path / "cache").glob("framelet-csbm-*/edges.npy"))) == 1
    rc = main(["framelet", "eval", "--project", str(runs_dir), "--device", "cpu", "--quiet", "--json"])
    ev = json.loads(capsys.readouterr().out)["metrics"]
    assert rc == 0 and ev["test/acc"] == pytest.approx(
        m["rep0/test/acc"]
    )  # saved weights = rep 0's best epoch
    inp = tmp_path / "ids.txt"
    inp.write_text("0\n5\n239\n")
    outp = tmp_path / "pred.jsonl"
    predict = ["framelet", "predict", "--project", str(runs_dir), "--device", "cpu", "--quiet",
               "--input", str(inp), "--output", str(outp)]  # fmt: skip
    rc = main(predict)
    rows = [json.loads(line) for line in outp.read_text().splitlines()]
    assert rc == 0 and [r["id"] for r in rows] == [0, 5, 239]
    assert all(abs(sum(r["probs"]) - 1) < 1e-4 and r["label"] == int(np.argmax(r["probs"])) for r in rows)
    inp.write_text("0\n240\n")
    assert main(predict) == 3
    inp.write_text("zero\n")
    assert main(predict) == 3


@pytest.mark.parametrize(
    "extra",
    [
        [
            "--arch",
            "ufg-s",
            "--theta",
            "shared",
            "--threshold-scaling",
            "energy",
            "--operator",
            "matrix-free",
        ],
        ["--arch", "ufg-s", "--shrinkage", "hard", "--dtype", "float64", "--frame", "linear", "--cheb", "3"],
        [
            "--arch",
            "ufg-r",
            "--lev",
            "3",
            "--feature-noise",
            "0.5",
            "--structure-noise",
            "0.1",
            "--frame",
            "quadratic",
        ],
        ["--arch", "gcn"],
        ["--arch", "mlp"],
    ],
)
def test_variants_train(runs_dir, capsys, extra):
    rc, out, err = _train(runs_dir, capsys, *TINY, *extra)
    assert rc == 0, err
    m = out["metrics"]
    assert 0 <= m["test/acc"] <= 1
    if "ufg-s" in extra:
        assert 0 <= m["shrink/zero_frac"] <= 1
    else:
        assert "shrink/zero_frac" not in m


def test_graph_level_pooling(runs_dir, capsys, tmp_path):
    from mlkit.tasks.framelet.cli import synth

    synth(
        out=tmp_path / "syn",
        nodes=120,
        classes=3,
        features=8,
        degree=6.0,
        mu=1.0,
        noise=[1.0],
        rewire=[0.2],
        graphs=40,
        seed=0,
    )
    capsys.readouterr()
    assert (tmp_path / "syn" / "heterophilous" / "feats.npy").exists()
    for arch, readout in (("ufgpool", "sum"), ("ufgpool", "spectrum"), ("meanpool", "sum")):
        rc, out, err = _train(
            runs_dir,
            capsys,
            "--data",
            str(tmp_path / "syn" / "graphs"),
            "--arch",
            arch,
            "--readout",
            readout,
            "--epochs",
            "2",
            "--reps",
            "2",
            "--batch-size",
            "16",
        )
        assert rc == 0, err
        assert 0 <= out["metrics"]["test/acc"] <= 1
    inp = tmp_path / "g.txt"
    inp.write_text("0\n39\n")
    outp = tmp_path / "g.jsonl"
    rc = main(
        [
            "framelet",
            "predict",
            "--project",
            str(runs_dir),
            "--device",
            "cpu",
            "--quiet",
            "--input",
            str(inp),
            "--output",
            str(outp),
        ]
    )
    rows = [json.loads(line) for line in outp.read_text().splitlines()]
    assert rc == 0 and [r["id"] for r in rows] == [0, 39] and all(r["label"] in (0, 1) for r in rows)
    rc = main(["framelet", "eval", "--project", str(runs_dir), "--device", "cpu", "--quiet", "--json"])
    assert rc == 0 and "test/acc" in json.loads(capsys.readouterr().out)["metrics"]
    # node-level data with a graph arch, and graph arch with no data: clear errors
    rc, _, err = _train(
        runs_dir, capsys, "--data", str(tmp_path / "syn" / "homophilous"), "--arch", "ufgpool"
    )
    assert rc == 3 and "TU" in err
    rc, _, err = _train(runs_dir, capsys, "--arch", "ufgpool")
    assert rc == 2 and "synth" in err


def test_node_data_in_the_generic_layout(runs_dir, capsys, tmp_path):
    from mlkit.tasks.framelet.cli import synth

    synth(
        out=tmp_path / "syn",
        nodes=150,
        classes=3,
        features=8,
        degree=6.0,
        mu=1.0,
        noise=[],
        rewire=[],
        graphs=4,
        seed=1,
    )
    capsys.readouterr()
    rc, out, err = _train(
        runs_dir, capsys, "--data", str(tmp_path / "syn" / "homophilous"), "--epochs", "2", "--reps", "1"
    )
    assert rc == 0, err
    rc, _, err = _train(runs_dir, capsys, "--data", str(tmp_path / "syn"), "--epochs", "1")
    assert rc == 3  # a folder of folders is no known layout


@pytest.mark.skipif(not (DATA / "ind.cora.x").exists(), reason="shared Planetoid data absent")
def test_cora_runs(runs_dir, capsys):
    rc, out, err = _train(
        runs_dir, capsys, "--data", str(DATA), "--dataset", "cora", "--epochs", "2", "--reps", "1"
    )
    assert rc == 0, err
    assert 0 <= out["metrics"]["test/acc"] <= 1


def test_shrinkage_functions():
    z = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.0])
    assert shrink(z, torch.tensor(0.5), "soft").tolist() == pytest.approx([-1.5, 0.0, 0.0, 0.0, 0.5])
    assert shrink(z, torch.tensor(0.5), "hard").tolist() == pytest.approx([-2.0, 0.0, 0.0, 0.0, 1.0])


def test_ufgconv_shrinks_only_high_pass_and_operators_agree():
    g = S.csbm(nodes=120, classes=3, features=6, degree=6, seed=3)
    adj = g.to_scipy()
    ops = [
        FrameletOp(F.build(adj, operator=o), "cpu", torch.float64) for o in ("matrix-free", "materialized")
    ]
    torch.manual_seed(0)
    conv = UFGConv(6, 4, ops[0].K, 120, shrinkage="soft", sigma=1.0).double()
    x = torch.from_numpy(g.features).double()
    y0, y1 = conv(x, ops[0]), conv(x, ops[1])
    assert torch.allclose(y0, y1, atol=1e-10)
    # with a huge threshold every high-pass coefficient is zeroed: the output is the low-pass path only
    conv.sigma = 1e6
    out = conv(x, ops[0])
    z = ops[0].decompose(x @ conv.weight) * conv.theta[:, :, None]
    z[1:] = 0
    assert torch.allclose(out, ops[0].reconstruct(z) + conv.bias, atol=1e-10) and conv.zero_frac == 1.0
    assert tuple(UFGConv(6, 4, 3, 120, theta="shared").theta.shape) == (3, 1)


def test_csbm_and_noise():
    homo = S.csbm(nodes=1200, classes=4, features=20, degree=10, ratio=8.0, seed=0)
    het = S.csbm(nodes=1200, classes=4, features=20, degree=10, ratio=0.1, seed=0)

    def same(g):
        rows = np.repeat(np.arange(g.num_nodes), np.diff(g.indptr))
        return float(np.mean(g.labels[rows] == g.labels[g.indices]))

    assert same(homo) > 0.65 and same(het) < 0.05  # expected 8*299/(8*299+900) = 0.73 and 0.032
    assert 8 < homo.num_edges / homo.num_nodes < 12
    assert (
        len(homo.train_idx) == 80
        and len(homo.val_idx) == (1200 - 80) // 3
        and len(homo.test_idx) == 1120 - 373
    )
    noisy = S.feature_noise(homo, 2.0, 0)
    assert abs(float(np.std(noisy.features - homo.features)) - 2.0) < 0.05
    rew = S.structure_noise(homo, 0.5, 0)
    adj = rew.to_scipy()
    assert (adj != adj.T).nnz == 0 and same(rew) < same(homo) - 0.2


def test_csbm_class_means_follow_spec():
    """Spec 3: x_i = mu sqrt(F/C) e(y_i) + N(0, I): orthonormal class directions, mean norm mu sqrt(F/C)."""
    g = S.csbm(nodes=2000, classes=4, features=40, degree=10, mu=0.5, seed=1)
    means = np.stack([g.features[g.labels == k].mean(0) for k in range(4)])
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 0.5 * np.sqrt(10), rtol=0.1)
    cos = (means @ means.T) / np.outer(np.linalg.norm(means, axis=1), np.linalg.norm(means, axis=1))
    assert np.abs(cos - np.eye(4)).max() < 0.15


def test_two_class_graphs_differ_in_frequency_content():
    """Spec 3: same node counts and degree distributions; the degree signal's high-pass share differs by class,
    visibly in the UFGPool-SUM readout (high-pass block sum / low-pass block sum)."""
    graphs, labels = S.two_class_graphs(count=60, seed=4)
    ratio, degs = [], [[], []]
    for g, y in zip(graphs, labels):
        x = np.diff(g.indptr).astype(np.float64)
        sums = (F.build(g.to_scipy(), operator="materialized").stacked @ x).reshape(3, -1).sum(1)
        ratio.append(sums[1] / sums[0])
        degs[y].append(x)
    ratio = np.array(ratio)
    assert ratio[labels == 0].max() < ratio[labels == 1].min()
    assert abs(np.concatenate(degs[0]).mean() - np.concatenate(degs[1]).mean()) < 0.3


def test_graph_regression_targets(runs_dir, capsys, tmp_path):
    """Continuous graph targets (TU graph_attributes) train with MSE and report MAE."""
    from mlkit.graph.tu import write_tu

    graphs, labels = S.two_class_graphs(count=30, min_nodes=8, max_nodes=14, seed=2)
    targets = (labels[:, None] * 2.0 + np.array([g.num_nodes for g in graphs])[:, None] / 10).astype(
        np.float32
    )
    write_tu(tmp_path / "reg", "REG", graphs, targets)
    rc, out, err = _train(
        runs_dir,
        capsys,
        "--data",
        str(tmp_path / "reg"),
        "--arch",
        "ufgpool",
        "--epochs",
        "2",
        "--reps",
        "1",
        "--batch-size",
        "8",
    )
    assert rc == 0, err
    assert out["metrics"]["test/mae"] >= 0 and "test/acc" not in out["metrics"]
    inp = tmp_path / "g.txt"
    inp.write_text("3\n")
    outp = tmp_path / "g.jsonl"
    assert (
        main(
            [
                "framelet",
                "predict",
                "--project",
                str(runs_dir),
                "--device",
                "cpu",
                "--quiet",
                "--input",
                str(inp),
                "--output",
                str(outp),
            ]
        )
        == 0
    )
    assert len(json.loads(outp.read_text())["value"]) == 1
