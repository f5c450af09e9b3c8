"""translate end to end through the CLI: train -> eval -> predict on a DRIT folder (odd sizes, a grey image among RGB
ones, labels.csv), the `synth` verb, and exit 3 with one line naming the file for corrupt / missing data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlkit.cli import main
from mlkit.tasks.translate import data as D

TINY = ["--device", "cpu", "--quiet", "--set", "epochs=2", "--set", "iters_per_epoch=3", "--set", "eval.inputs=4",
        "--set", "eval.samples=2", "--set", "eval.feat_epochs=1", "--set", "eval.cls_epochs=1", "--set",
        "eval.grid=2", "--set", "eval.fid_max=16"]  # fmt: skip


@pytest.fixture(scope="module")
def drit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mnistm-lite in the DRIT layout (20 / 8 per domain), plus a 70x50 grey PNG and a JPEG among the RGB PNGs."""
    root = tmp_path_factory.mktemp("drit")
    D.write_mnistm_lite(root, 20, 8, seed=1)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70), dtype=np.uint8), "L").save(root / "trainB" / "00003.png")
    im = Image.open(root / "trainA" / "00004.png").convert("RGB")
    (root / "trainA" / "00004.png").unlink()
    im.resize((45, 45)).save(root / "trainA" / "00004.jpg")
    lab = root / "labels.csv"
    lab.write_text(lab.read_text().replace("trainA/00004.png,", "trainA/00004.jpg,"))
    return root


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_train_eval_predict_on_a_drit_folder(drit_root: Path, runs_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    rc, out, err = _run(["translate", "train", "--data", str(drit_root), "--project", str(runs_dir), "--json",
                         *TINY], capsys)  # fmt: skip
    assert rc == 0, err[-3000:]
    body = json.loads(out)
    run, met = Path(body["run_dir"]), body["metrics"]
    for k in ("test/diversity_l1", "test/diversity_feat", "test/fid", "test/kid", "test/cycle_l1",
              "test/content_acc_raw_b", "test/content_acc_translated_b2a", "test/content_acc_translated_b2a_ref",
              "test/da_acc", "train/iters_per_s"):
        assert k in met and np.isfinite(met[k]), k
    assert met["val/iteration"] == 6 and met["test/diversity_l1"] > 0
    assert (run / "eval" / "grid_a2b.png").is_file() and (run / "images" / "epoch0002_b2a.png").is_file()
    assert json.loads((run / "eval" / "eval.json").read_text())["feature_net"] == "feat-cnn"
    model = str(run / "weights" / "best.pt")

    rc, out, err = _run(["translate", "eval", "--model", model, "--device", "cpu", "--quiet", "--json"], capsys)
    assert rc == 0, err[-3000:]
    assert abs(json.loads(out)["metrics"]["test/cycle_l1"] - met["test/cycle_l1"]) < 1e-5

    a0, a1, b0 = drit_root / "testA" / "00000.png", drit_root / "testA" / "00001.png", drit_root / "testB" / "00000.png"
    inp = tmp_path / "in.txt"
    inp.write_text(f"{a0}\n{a1}\t{b0}\n")
    save = tmp_path / "pred"
    rc, out, err = _run(["translate", "predict", "--model", model, "--device", "cpu", "--quiet", "--input", str(inp),
                         "--save", str(save), "--num", "3"], capsys)  # fmt: skip
    assert rc == 0, err[-3000:]
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["attribute"] for r in rows] == ["random", "reference"]
    assert len(rows[0]["outputs"]) == 3 and len(rows[0]["value"]) == 3 * 8 and len(rows[1]["outputs"]) == 1
    assert all(Path(f).is_file() for r in rows for f in r["outputs"]) and Path(rows[0]["grid"]).is_file()
    zf = tmp_path / "z.npy"
    np.save(zf, np.zeros((2, 8), np.float32))
    rc, out, err = _run(["translate", "predict", "--model", model, "--device", "cpu", "--quiet", "--input", str(inp),
                         "--save", str(save), "--z", str(zf), "--direction", "b2a"], capsys)  # fmt: skip
    assert rc == 0, err[-3000:]
    r = json.loads(out.splitlines()[0])
    assert r["attribute"] == "given" and len(r["outputs"]) == 2
    im = [np.asarray(Image.open(f)) for f in r["outputs"]]
    assert np.array_equal(im[0], im[1])  # the same code twice: the same image (eval mode, no noise)
    inp.write_text(f"{a0}\n{tmp_path / 'missing.png'}\n")
    rc, out, err = _run(["translate", "predict", "--model", model, "--device", "cpu", "--quiet", "--input", str(inp),
                         "--save", str(save)], capsys)  # fmt: skip
    assert rc == 3 and len(out.splitlines()) == 1 and "input line 2" in err.strip().splitlines()[-1]


def _bad(root: Path, runs: Path, capsys: pytest.CaptureFixture) -> str:
    rc, _, err = _run(["translate", "train", "--data", str(root), "--project", str(runs), *TINY], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 3 and len(lines) == 1, err[-2000:]
    return lines[0]


def test_bad_folders_exit_3_naming_the_file(tmp_path: Path, runs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "ds"
    D.write_mnistm_lite(root, 6, 3, seed=2)
    bad = root / "trainB" / "00002.png"
    raw = bad.read_bytes()
    bad.write_bytes(raw[:40] + bytes(b ^ 0x5A for b in raw[40:80]) + raw[80:])
    assert str(bad) in _bad(root, runs_dir, capsys)
    bad.write_bytes(b"")
    assert str(bad) in _bad(root, runs_dir, capsys)
    for f in (root / "trainB").iterdir():
        f.unlink()
    assert "trainB/ holds no images" in _bad(root, runs_dir, capsys)
    (root / "trainB").rmdir()
    assert "trainB/ not found" in _bad(root, runs_dir, capsys)
    assert "unknown dataset layout" in _bad(tmp_path, runs_dir, capsys)


def test_synth_verb_and_usage_errors(tmp_path: Path, runs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    rc, out, err = _run(["translate", "synth", "--out", str(tmp_path / "s"), "--train", "5", "--test", "2"], capsys)
    assert rc == 0, err
    body = json.loads(out)
    assert Path(body["out"]) == tmp_path / "s" and "digits" in body
    assert len(list((tmp_path / "s" / "trainB").glob("*.png"))) == 5
    rc, _, err = _run(["translate", "train", "--project", str(runs_dir), "--set", "image_size=30", "--quiet"], capsys)
    assert rc == 2 and "image_size" in err
    rc, _, err = _run(["translate", "train", "--project", str(runs_dir), "--set", "model.dis_layers=6", "--quiet"],
                      capsys)  # fmt: skip
    assert rc == 2 and "too small" in err
