"""mi task: loaders of every layout, tiny train/eval/predict on a real-layout fixture, `estimate`, bad input (exit 3,
one line), usage errors (exit 2), the ground-truth helpers and a small learning check (DEMI beats InfoNCE's ceiling).

"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit.cli import main
from mlkit.tasks.mi import data as D

TINY = ["--set", "epochs=2", "--set", "steps_per_epoch=15", "--set", "hidden=32", "--set", "eval_batches=3",
        "--device", "cpu", "--quiet"]  # fmt: skip


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A known-truth set in the real layout: x.npy + y.npy + truth.json (d = 6, I = 3 nats)."""
    return D.write_synth(tmp_path / "gauss", "gaussian", 3.0, 6, 1000, seed=1)


def test_truth_helpers():
    for mi, d in [(2.0, 20), (10.0, 20), (30.0, 20), (0.5, 3)]:
        assert D.mi_of_rho(D.rho_of_mi(mi, d), d) == pytest.approx(mi, rel=1e-12)
    assert D.cuts(20, 4) == [5, 10, 15, 20] and D.cuts(7, 2)[-1] == 7
    assert D.term_truth({"mi": 12.0, "dim": 20}, D.cuts(20, 4)) == pytest.approx([3.0] * 4)
    x, y = D.sample(20000, 3, D.rho_of_mi(1.5, 3), "gaussian", torch.Generator().manual_seed(0))
    assert np.corrcoef(x[:, 0], y[:, 0])[0, 1] == pytest.approx(D.rho_of_mi(1.5, 3), abs=0.02)


def test_layouts_read_the_same_rows(tmp_path, folder):
    x, y, truth = D.load(folder)
    assert x.shape == (1000, 6) and truth["mi"] == 3.0
    csv = tmp_path / "csv"
    csv.mkdir()
    np.savetxt(csv / "x.csv", x, delimiter=",", header=",".join(f"x{i}" for i in range(6)), comments="")
    np.savetxt(csv / "y.csv", y, delimiter=",")
    xc, yc, tc = D.load(csv)
    np.testing.assert_allclose(xc, x, rtol=1e-6)
    np.testing.assert_allclose(yc, y, rtol=1e-6)
    assert tc is None
    np.savez(tmp_path / "pair.npz", x=x, y=y)
    xz, yz, _ = D.load(tmp_path / "pair.npz")
    assert np.array_equal(xz, x) and np.array_equal(yz, y)
    np.save(tmp_path / "one.npy", x[:, 0])  # a 1-D array is one column
    assert D.read_array(tmp_path / "one.npy").shape == (1000, 1)


def test_train_eval_predict_on_a_real_layout_fixture(folder, runs_dir, capsys):
    rc = main(["mi", "train", "--data", str(folder), "--project", str(runs_dir), "--json", *TINY])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    out = json.loads(cap.out)
    m, run = out["metrics"], Path(out["run_dir"])
    assert m["test/truth"] == 3.0 and m["test/term1_truth"] == pytest.approx(1.5)
    assert math.isfinite(m["test/mi"]) and m["test/log_batch"] == pytest.approx(math.log(64))
    assert (run / "mi_curve.png").stat().st_size > 1000
    rc = main(["mi", "eval", "--model", str(run), "--project", str(runs_dir), "--json", "--device", "cpu", "--quiet"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    assert json.loads(cap.out)["metrics"]["test/mi"] == pytest.approx(m["test/mi"], abs=1e-5)
    recs = folder.parent / "records.txt"
    x, y, _ = D.load(folder)
    lines = [",".join(map(str, x[i])) + ";" + ",".join(map(str, y[i])) for i in range(3)]
    lines.append(json.dumps({"x": x[3].tolist(), "y": y[4].tolist()}))
    recs.write_text("\n".join(lines) + "\n")
    rc = main(["mi", "predict", "--model", str(run), "--input", str(recs), "--device", "cpu", "--quiet"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    rows = [json.loads(v) for v in cap.out.splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3, 4] and all(isinstance(r["score"], float) for r in rows)
    recs.write_text(lines[0] + "\n1,2;3\n")
    rc = main(["mi", "predict", "--model", str(run), "--input", str(recs), "--device", "cpu", "--quiet"])
    cap = capsys.readouterr()
    assert rc == 3 and len(cap.out.splitlines()) == 1 and "input line 2" in _lines(cap.err)[-1]


def test_estimate_returns_an_interval(tmp_path, capsys):
    x, y = D.sample(3000, 4, D.rho_of_mi(2.0, 4), "gaussian", torch.Generator().manual_seed(0))
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    rc = main(["mi", "estimate", "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"), "--seeds", "2",
               "--steps", "60", "--set", "hidden=32", "--device", "cpu", "--quiet"])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    out = json.loads(cap.out)
    lo, hi = out["ci"]
    assert lo <= out["estimate"] <= hi and out["seeds"] == 2 and len(out["per_seed"]) == 2
    assert out["rows"] == 3000 and out["columns"] == [4, 4] and len(out["terms"]) == 2


@pytest.mark.parametrize("case", ["rows", "nan", "inf_y", "garbled", "truncated", "text", "csv_ragged", "missing"])
def test_estimate_bad_input_exits_3_naming_the_file(tmp_path, capsys, case):
    rng = np.random.default_rng(0)
    xp, yp = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(xp, rng.normal(size=(100, 3)))
    np.save(yp, rng.normal(size=(100, 3)))
    bad = yp
    if case == "rows":
        np.save(yp, rng.normal(size=(99, 3)))
    elif case == "nan":
        a = rng.normal(size=(100, 3))
        a[17, 1] = np.nan
        np.save(xp, a)
        bad = xp
    elif case == "inf_y":
        a = rng.normal(size=(100, 3))
        a[5, 0] = np.inf
        np.save(yp, a)
    elif case == "garbled":
        yp.write_bytes(b"\x93NUMPY garbage" + bytes(range(200)))
    elif case == "truncated":
        yp.write_bytes(yp.read_bytes()[:300])
    elif case == "text":
        np.save(yp, np.array(["a", "b"]))
    elif case == "csv_ragged":
        yp = bad = tmp_path / "y.csv"
        yp.write_text("1,2,3\n4,5\n")
    elif case == "missing":
        yp = bad = tmp_path / "nope.npy"
    rc = main(["mi", "estimate", "--x", str(xp), "--y", str(yp), "--steps", "5", "--device", "cpu", "--quiet"])
    err = _lines(capsys.readouterr().err)
    assert rc == 3, err
    assert len(err) == 1 and str(bad) in err[0], err


@pytest.mark.parametrize("mutate", ["truncate", "garble", "truth", "empty"])
def test_train_on_damaged_folder_exits_3(folder, runs_dir, capsys, mutate):
    if mutate == "truncate":
        p = folder / "x.npy"
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    elif mutate == "garble":
        (folder / "y.npy").write_bytes(b"not an array at all")
    elif mutate == "truth":
        (folder / "truth.json").write_text("{\"mi\": ")
    else:
        for f in folder.iterdir():
            f.unlink()
    rc = main(["mi", "train", "--data", str(folder), "--project", str(runs_dir), *TINY])
    err = _lines(capsys.readouterr().err)
    assert rc == 3 and len(err) == 1 and str(folder) in err[0], err


@pytest.mark.parametrize("args", [
    ["--estimator", "infonce", "--splits", "4"],
    ["--estimator", "nope"],
    ["--cond", "magic"],
    ["--splits", "30"],
    ["--stream", "--data", "x"],
])  # fmt: skip
def test_usage_errors_exit_2(runs_dir, capsys, args):
    rc = main(["mi", "train", "--project", str(runs_dir), *TINY, *args])
    err = _lines(capsys.readouterr().err)
    assert rc == 2 and len(err) == 1, err


def test_oracle_needs_a_known_generator(tmp_path, runs_dir, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(200, 4)))
    np.save(tmp_path / "y.npy", rng.normal(size=(200, 4)))
    rc = main(["mi", "train", "--data", str(tmp_path), "--cond", "oracle", "--project", str(runs_dir), *TINY])
    assert rc == 2 and "oracle" in _lines(capsys.readouterr().err)[-1]


def test_every_estimator_trains_on_a_stream(runs_dir, capsys):
    """Each estimator (and DEMI's three conditional samplers, both critics) trains and gives a finite estimate;
    the CLI runs DEMI-oracle on a stream end to end."""
    from mlkit.tasks.mi.model import Critics
    from mlkit.tasks.mi.objective import Est, held_out, train_steps
    from mlkit.tasks.mi.source import Source

    src = Source.from_stream("cubic", 2.0, 6, "cpu")
    runs = [(Est(e), 1, "separable") for e in ("infonce", "nwj", "mine", "tuba", "js", "smile")]
    runs += [(Est("demi", c), 2, "separable") for c in ("is", "sir", "oracle")] + [(Est("demi", "is"), 3, "concat")]
    for est, s, critic in runs:
        c = Critics(D.cuts(6, s), 6, critic, 16, 2, 8)
        opt = torch.optim.Adam(c.parameters(), lr=1e-3)
        r = train_steps(c, opt, src.draw(16), est, 5, torch.Generator().manual_seed(0), oracle=src.oracle())
        h = held_out(c, src.held_out("val", 16, 2), est, src.oracle())
        assert len(r["history"]) == 5 and math.isfinite(h["mi"]) and len(h["terms"]) == s, (est, s)
    rc = main(["mi", "train", "--stream", "--dim", "6", "--true-mi", "2", "--cond", "oracle", "--project",
               str(runs_dir), "--json", "--set", "epochs=1", "--set", "steps_per_epoch=8", "--set", "hidden=16",
               "--set", "eval_batches=2", "--set", "batch_size=16", "--device", "cpu", "--quiet"])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-1500:]
    assert math.isfinite(json.loads(cap.out)["metrics"]["test/term2"])


def test_demi_passes_the_infonce_ceiling():
    """At I = 8 nats > log 32, InfoNCE stays under log M while DEMI-IS (s = 2) gets past it (a few hundred steps)."""
    from mlkit.tasks.mi.model import Critics
    from mlkit.tasks.mi.objective import Est, held_out, train_steps
    from mlkit.tasks.mi.source import Source

    src = Source.from_stream("gaussian", 8.0, 8, "cpu")
    res = {}
    for name, s in (("infonce", 1), ("demi", 2)):
        torch.manual_seed(0)
        c = Critics(D.cuts(8, s), 8, "separable", 64, 2, 16)
        opt = torch.optim.Adam(c.parameters(), lr=2e-3)
        train_steps(c, opt, src.draw(32), Est(name, "is"), 300, torch.Generator().manual_seed(1))
        res[name] = held_out(c, src.held_out("val", 32, 5), Est(name, "is"))["mi"]
    assert res["infonce"] <= math.log(32) + 0.05
    assert res["demi"] > res["infonce"] + 0.5, res


def test_view_generators(tmp_path):
    """digits: two 64-pixel views of the same image; markov: one-hot windows whose truth is I(X_0; X_1), checked
    against the plug-in MI of the last context token and the next token."""
    from mlkit.tasks.mi import views

    x, y, truth = D.load(D.write_synth(tmp_path / "d", "digits", 1.0, 1, 300, seed=0))
    assert x.shape == y.shape == (300, 64) and truth is None
    assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.3  # views of one image agree
    x, y, truth = D.load(views.write_markov(tmp_path / "m", 40000, seed=3, vocab=5, context=3, horizon=2))
    assert x.shape == (40000, 15) and y.shape == (40000, 10)
    a, b = x[:, :5].argmax(1), y[:, :5].argmax(1)  # the most recent context token and the next token
    joint = np.histogram2d(a, b, bins=[5, 5], range=[[0, 5], [0, 5]])[0] / len(a)
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    plug_in = float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())
    assert truth["mi"] == pytest.approx(plug_in, abs=0.02)
    assert np.allclose(x.reshape(-1, 3, 5).sum(2), 1) and np.allclose(y.reshape(-1, 2, 5).sum(2), 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_train_with_every_conditional_sampler(runs_dir, capsys):
    for cond in ("is", "sir", "oracle"):
        rc = main(["mi", "train", "--stream", "--cond", cond, "--splits", "4", "--project", str(runs_dir), "--json",
                   "--set", "epochs=1", "--set", "steps_per_epoch=20", "--device", "cuda", "--quiet"])  # fmt: skip
        cap = capsys.readouterr()
        assert rc == 0, cap.err[-2000:]
        assert math.isfinite(json.loads(cap.out)["metrics"]["test/mi"])


def test_over_seeds_summary():
    from mlkit.tasks.mi.report import over_seeds

    out = over_seeds([{"test/mi": 4.0, "test/bias": -1.0}, {"test/mi": 5.0, "test/bias": 0.0},
                      {"test/mi": 6.0, "test/bias": 1.0}])  # fmt: skip
    assert out["test/mi"] == pytest.approx(5.0) and out["test/mi_seed_std"] == pytest.approx(1.0)
    half = 4.302653 / math.sqrt(3)  # t_{0.975, 2}
    assert out["test/mi_ci_lo"] == pytest.approx(5.0 - half, rel=1e-5) and out["seeds"] == 3.0
    assert over_seeds([{"test/mi": 1.0}]) == {"test/mi": 1.0}
