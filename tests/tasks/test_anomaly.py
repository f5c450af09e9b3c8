"""anomaly: synthetic data, preprocessing, layout errors, a tiny train -> eval -> predict round trip."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from conftest import subprocess_env
from PIL import Image

from mlkit.cli import main
from mlkit.tasks.anomaly import TINY
from mlkit.tasks.anomaly.data import categories, load, split_samples
from mlkit.tasks.anomaly.preprocess import (
    dbscan_labels,
    fit_plane_ransac,
    grid_components,
    pad_square,
    preprocess_root,
)
from mlkit.tasks.anomaly.synth import write_dataset

CFG = yaml.safe_load((Path(__file__).parents[2] / "mlkit/tasks/anomaly/config.yaml").read_text())
SMALL = {"train": 3, "validation": 2, "test_good": 2, "test_dent": 2, "test_stain": 2, "test_combined": 1}


def _set_args(d: dict) -> list[str]:
    return [a for k, v in d.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    write_dataset(out, seed=0, size=96, counts=SMALL)
    return out


@pytest.fixture(scope="module")
def prepped(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "mvtec"
    preprocess_root(raw, out, CFG["preprocess"], seed=0)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    rc = main(["anomaly", "train", "--project", str(runs), "--device", "cpu", "--quiet", "--save-maps",
               *_set_args(TINY)])  # fmt: skip
    assert rc == 0
    return runs


def test_synth_layout_deterministic_and_non_square(raw, tmp_path):
    cat = raw / "blob"
    assert sorted(p.name for p in (cat / "test").iterdir()) == ["combined", "dent", "good", "stain"]
    xyz = tifffile.imread(cat / "test/dent/xyz/001.tiff")
    assert xyz.dtype == np.float32 and xyz.shape == (208, 176, 3)  # last of each folder is H 208 x W 176
    assert np.array(Image.open(cat / "train/good/rgb/000.png")).shape == (96, 96, 3)
    gt = np.array(Image.open(cat / "test/dent/gt/000.png"))
    assert set(np.unique(gt)) <= {0, 255} and gt.max() == 255
    assert not (cat / "train/good/gt").exists()
    write_dataset(tmp_path, seed=0, size=96, counts=SMALL)
    assert _digest(tmp_path / "blob") == _digest(cat)


def test_defect_masks_and_stain_colour(tmp_path):
    """Both defects get a gt mask; the stain darkens the colour under its mask compared with the dent sample."""
    from mlkit.tasks.anomaly.synth import make_sample

    def draw(defect):
        return make_sample(np.random.default_rng(5), (96, 96), defect)

    rgb_d, xyz_d, gt_d = draw("dent")
    rgb_s, xyz_s, gt_s = draw("stain")
    assert gt_d.any() and gt_s.any()
    # a dent changes the depth inside its gt; a stain darkens the colour inside its gt
    z_d = xyz_d[..., 2]
    assert np.ptp(z_d[gt_d > 0]) > 0.001
    lum_d = rgb_d.astype(float).mean(-1)
    lum_s = rgb_s.astype(float).mean(-1)
    assert lum_s[gt_s > 0].mean() < lum_d[gt_s > 0].mean() - 20


def test_preprocess_new_root_plane_removed_padded(raw, prepped):
    before = _digest(raw)
    assert categories(prepped) == ["blob"]
    x = tifffile.imread(prepped / "blob/test/dent/xyz/001.tiff")
    assert x.shape == (300, 300, 3)  # 208x176 -> 300x200 multiples of 100 -> square 300
    rgb = np.array(Image.open(prepped / "blob/test/dent/rgb/001.png"))
    valid = np.all(x != 0, axis=-1)
    assert 0.05 < valid.mean() < 0.6  # background plane gone, object kept
    assert np.all(rgb[~valid & np.all(rgb > 0, axis=-1)].std() >= 0)
    assert (np.array(Image.open(prepped / "blob/test/dent/gt/001.png")) > 0).sum() > 0
    preprocess_root(raw, raw.parent / "again", CFG["preprocess"], seed=0)
    assert _digest(raw) == before  # the input is never modified
    assert main(["anomaly", "preprocess", "--data", str(raw), "--out", str(raw / "blob" / "x")]) == 2


def test_ransac_recovers_plane():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-1, 1, size=(500, 2))
    pts = np.c_[xy, 0.1 * xy[:, 0] - 0.2 * xy[:, 1] + 0.5]
    pts[:100, 2] += rng.uniform(0.05, 0.2, 100)  # outliers
    plane = fit_plane_ransac(pts, 0.004, 200, 50, rng)
    n = np.array([0.1, -0.2, -1.0]) / np.linalg.norm([0.1, -0.2, -1.0])
    assert abs(abs(plane[:3] @ n) - 1) < 1e-6
    assert np.abs(pts[100:] @ plane[:3] + plane[3]).max() < 1e-9


def test_pad_square_centres():
    a = np.ones((208, 176))
    p = pad_square(a)
    assert p.shape == (300, 300) and p[46:254, 62:238].all() and p.sum() == a.sum()


def test_grid_and_dbscan_keep_largest_component():
    xyz = np.zeros((20, 20, 3), np.float32)
    yy, xx = np.mgrid[0:20, 0:20]
    xyz[..., 0], xyz[..., 1], xyz[..., 2] = 0.01 + xx * 0.001, 0.01 + yy * 0.001, 0.5
    xyz[:, 12:14] = 0  # two blobs: columns 0-11 (240 points) and 14-19 (120 points)
    lab = grid_components(xyz, 0.0015)
    assert sorted(np.unique(lab[lab >= 0], return_counts=True)[1]) == [120, 240]
    pts = xyz[np.all(xyz != 0, -1)].astype(np.float64)
    db = dbscan_labels(pts, 0.0015, 3)
    assert sorted(np.bincount(db[db >= 0])) == [120, 240]
    from mlkit.tasks.anomaly.preprocess import keep_largest

    rgb = np.full((20, 20, 3), 9, np.uint8)
    for mode in ("grid", "dbscan"):
        x, r = xyz.copy(), rgb.copy()
        keep_largest(
            x, r, {**CFG["preprocess"], "cluster": mode, "cluster_eps": 0.0015, "cluster_min_points": 3}
        )
        assert np.all(x[:, 14:] == 0) and np.all(r[:, 14:] == 0) and np.all(x[:, :12] != 0)


def test_load_resizes_nearest_and_gt(prepped):
    s = [x for x in split_samples(prepped / "blob", "test") if x.defect == "dent"][0]
    x = load(s)
    assert x["rgb"].shape == (224, 224, 3) and x["xyz"].shape == (224, 224, 3) and x["gt"].dtype == bool
    full = tifffile.imread(s.xyz)
    assert set(map(tuple, x["xyz"][x["valid"]][:50].tolist())) <= set(
        map(tuple, full.reshape(-1, 3).tolist())
    )


@pytest.mark.parametrize("damage", ["no_xyz", "mismatch", "corrupt", "bad_path"])
def test_data_errors_exit_3_naming_the_file(damage, raw, tmp_path, runs_dir, capsys):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(raw, root)
    good = root / "blob/train/good"
    named = ""
    if damage == "no_xyz":
        shutil.rmtree(good / "xyz")
        named = "xyz"
    elif damage == "mismatch":
        (good / "xyz/001.tiff").rename(good / "xyz/009.tiff")
        named = "001.png"
    elif damage == "corrupt":
        (good / "xyz/000.tiff").write_bytes(b"not a tiff")
        named = "000.tiff"
    else:
        root = tmp_path / "missing"
        named = "missing"
    rc = main(
        ["anomaly", "train", "--data", str(root), "--project", str(runs_dir), "--device", "cpu", "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 3, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and named in lines[0], err


def test_bad_modalities_exit_2(runs_dir):
    assert main(["anomaly", "train", "--modalities", "quad", "--project", str(runs_dir), "--quiet"]) == 2


def test_tiny_roundtrip_checkpoint_eval_predict(trained, capsys):
    run = next((trained / "anomaly").glob("train*"))
    ck = torch.load(run / "weights/best.pt", weights_only=True, map_location="cpu")
    banks = {k: v for k, v in ck["state_dict"].items() if ".bank." in k}
    assert set(banks) == {"cat.blob.bank.pt", "cat.blob.bank.rgb", "cat.blob.bank.fs"}
    assert all(v.dtype == torch.float16 for v in banks.values())
    assert ck["extra"]["categories"] == ["blob"] and any(k.startswith("uff.") for k in ck["state_dict"])
    assert (run / "results.json").is_file() and "| blob |" in (run / "results.md").read_text()
    cached = sorted(run.glob("cache/*/blob/train/*_pt.npy"))  # pass-A cache, float16
    assert cached and np.load(cached[0]).dtype == np.float16

    rc = main(
        ["anomaly", "eval", "--project", str(trained), "--device", "cpu", "--quiet", "--json", "--save-maps"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    m = json.loads(out)["metrics"]
    assert {"test/i_auroc", "test/p_auroc", "test/aupro"} <= set(m)
    assert m["test/i_auroc"] == pytest.approx(
        ck["metrics"]["test/i_auroc"]
    )  # eval reproduces train's test pass
    panels = list((run / "eval/maps/blob").glob("*.png"))
    assert panels
    with Image.open(panels[0]) as im:
        assert im.size == (3 * 224, 224)

    rgbs = sorted((Path(ck["extra"]["data_root"]) / "blob/test").glob("*/rgb/*.png"))  # cached default data
    lines = [f"{rgbs[0]}\t{rgbs[0].parent.parent / 'xyz' / (rgbs[0].stem + '.tiff')}", str(rgbs[-1])]
    proc = subprocess.run(
        [sys.executable, "-m", "mlkit", "anomaly", "predict", "--project", str(trained), "--quiet"],
        input="\n".join(lines).encode(),
        capture_output=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    recs = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert len(recs) == 2
    for r in recs:
        assert {"score", "label", "heatmap", "mask", "threshold"} <= set(r)
        assert Path(r["heatmap"]).is_file() and Path(r["mask"]).is_file()
        assert r["label"] == (r["score"] > r["threshold"])


def test_train_save_maps_and_resume_refused(trained, capsys):
    """--save-maps works on train (maps next to the run), and --resume exits 2 with one line: M3DM is one-shot."""
    run = next((trained / "anomaly").glob("train*"))
    panels = list((run / "maps/blob").glob("*.png"))
    assert panels
    with Image.open(panels[0]) as im:
        assert im.size == (3 * 224, 224)
    before = (run / "weights/best.pt").stat().st_mtime_ns
    capsys.readouterr()
    rc = main(["anomaly", "train", "--project", str(trained), "--quiet", "--resume", "--name", run.name])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be resumed" in err[0] and "one pass" in err[0], err
    assert (run / "weights/best.pt").stat().st_mtime_ns == before  # nothing retrained or overwritten


def test_predict_records_from_folder_and_bad_line(trained, tmp_path):
    """A folder given to --input expands to its rgb/xyz pairs; a bad line stops with exit 3 naming the input line.

    (Empty lines and the other bad records, with --on-error skip too: tests/tasks/test_anomaly_input.py.)
    """
    run = next((trained / "anomaly").glob("train*"))
    root = Path(torch.load(run / "weights/best.pt", weights_only=True)["extra"]["data_root"])
    folder = root / "blob/test/good"
    proc = subprocess.run(
        [sys.executable, "-m", "mlkit", "anomaly", "predict", "--project", str(trained), "--quiet", "--input",
         str(folder)], capture_output=True, env=subprocess_env(), timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    rows = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert [r["id"] for r in rows] == [str(p) for p in sorted(folder.glob("rgb/*.png"))]
    assert all(r["label"] in (0, 1) for r in rows)
    bad = tmp_path / "in.txt"
    bad.write_text(f"{sorted(folder.glob('rgb/*.png'))[0]}\n{tmp_path / 'nope.png'}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mlkit", "anomaly", "predict", "--project", str(trained), "--quiet", "--input",
         str(bad)], capture_output=True, env=subprocess_env(), timeout=300)  # fmt: skip
    assert proc.returncode == 3
    rows = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert len(rows) == 1 and "score" in rows[0]  # the earlier row is out before the error
    assert "input line 2" in proc.stderr.decode().strip().splitlines()[-1]
