"""segment data: the shapes generator, the generic layout, a tiny Pascal VOC fixture (loads, trains, evaluates),
DataErrors naming the file (exit 3), the label budget list, and predict's PNG outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlkit.cli import main
from mlkit.core.errors import UsageError
from mlkit.tasks.segment import data as D
from mlkit.tasks.segment.evaluation import write_mask

FAST = ["--set", "epochs=2", "--set", "pretrain_epochs=1", "--set", "viz=2", "--device", "cpu", "--quiet"]


def _voc(root: Path, n_train: int = 6, n_val: int = 4, aug: bool = False) -> Path:
    """A tiny VOC 2012 layout: JPEGImages, Annotations XML, palette SegmentationClass PNGs, ImageSets."""
    rng = np.random.default_rng(0)
    r = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (r / d).mkdir(parents=True, exist_ok=True)
    ids = [f"2007_{i:06d}" for i in range(n_train + n_val + 3)]  # the last 3 have image labels only
    for i, s in enumerate(ids):
        h, w = (40, 48) if i % 2 else (48, 40)
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        m = np.zeros((h, w), np.uint8)
        c = 1 + i % 3 * 7  # aeroplane, car, dog
        m[8:24, 10:26] = c
        m[7, 10:26] = 255  # boundary
        img[8:24, 10:26] = (200, 30, 30)
        Image.fromarray(img).save(r / "JPEGImages" / f"{s}.jpg")
        write_mask(r / "SegmentationClass" / f"{s}.png", m)
        name = D.VOC_CLASSES[c]
        xml = f"<annotation><filename>{s}.jpg</filename><object><name>{name}</name></object></annotation>"
        (r / "Annotations" / f"{s}.xml").write_text(xml, encoding="utf-8")
    seg = r / "ImageSets" / "Segmentation"
    (seg / "train.txt").write_text("\n".join(ids[:n_train]) + "\n", encoding="utf-8")
    (seg / "val.txt").write_text("\n".join(ids[n_train : n_train + n_val]) + "\n", encoding="utf-8")
    for s in ids[n_train + n_val :]:
        (r / "SegmentationClass" / f"{s}.png").unlink()
    if aug:
        (r / "SegmentationClassAug").mkdir()
        for p in (r / "SegmentationClass").glob("*.png"):
            Image.fromarray(np.asarray(Image.open(p))).save(r / "SegmentationClassAug" / p.name)
        (r / "train_aug.txt").write_text("\n".join(ids[:n_train]) + "\n", encoding="utf-8")
    return root


def test_shapes_generator_layout_and_determinism(tmp_path: Path) -> None:
    a = D.write_shapes(tmp_path / "a", 12, 4, 32, seed=3)
    b = D.write_shapes(tmp_path / "b", 12, 4, 32, seed=3)
    for p in sorted((a / "images").iterdir()):
        assert (b / "images" / p.name).read_bytes() == p.read_bytes()
    d = D.load_generic(a, 0)
    assert d.classes == D.SHAPE_CLASSES and len(d.train) == 12 and len(d.val) == 4
    img, mask = D.Store().get(d.train[0])
    assert img.shape == (32, 32, 3) and mask.shape == (32, 32) and mask.max() <= 3
    assert d.train[0].labels == frozenset(int(c) for c in np.unique(mask) if c > 0)


def test_shapes_with_the_horse_class(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = D.write_shapes(tmp_path / "h", 24, 4, 48, seed=2, classes=4)
    d = D.load_generic(root, 0)
    assert d.classes == D.SHAPE_CLASSES + ("horse",)
    masks = [D.Store().get(it)[1] for it in d.train]
    assert any((m == 4).sum() >= 20 for m in masks) and max(int(m.max()) for m in masks) == 4
    with pytest.raises(UsageError, match="3 or 4"):
        D.shape_classes(5)
    assert main(["segment", "synth", "--out", str(tmp_path / "x"), "--classes", "5"]) == 2
    assert "3 or 4" in capsys.readouterr().err


def test_label_budget() -> None:
    items = [D.Item(f"s{i}", Path("x"), Path("m"), frozenset()) for i in range(40)]
    assert len(D.choose_labelled(items, "5%", 0)) == 2
    assert len(D.choose_labelled(items, 7, 0)) == 7
    assert D.choose_labelled(items, 7, 1) != D.choose_labelled(items, 7, 0)
    assert len(D.choose_labelled(items, "100%", 0)) == 40


def test_voc_fixture_loads(tmp_path: Path) -> None:
    d = D.load_voc(_voc(tmp_path))
    assert len(d.val) == 4 and len(d.train) == 9 and sum(it.mask is None for it in d.train) == 3
    assert d.train[0].labels == frozenset({1})
    aug = D.load_voc(_voc(tmp_path / "aug", aug=True), "SegmentationClassAug", "train_aug.txt")
    assert sum(it.mask is not None for it in aug.train) == 6


def test_voc_missing_segmentationclass_exits_3(tmp_path: Path, runs_dir: Path, capsys) -> None:
    root = _voc(tmp_path)
    import shutil

    shutil.rmtree(root / "VOCdevkit" / "VOC2012" / "SegmentationClass")
    rc = main(["segment", "train", "--data", str(root), "--project", str(runs_dir), *FAST])
    err = capsys.readouterr().err
    assert rc == 3 and "SegmentationClass" in err


def test_voc_wrong_mask_size_exits_3(tmp_path: Path, runs_dir: Path, capsys) -> None:
    root = _voc(tmp_path)
    bad = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000007.png"  # a val image
    write_mask(bad, np.zeros((5, 5), np.uint8))
    rc = main(["segment", "train", "--data", str(root), "--project", str(runs_dir), *FAST])
    err = capsys.readouterr().err
    assert rc == 3 and "2007_000007.png" in err


def test_voc_fixture_trains_evaluates_predicts(tmp_path: Path, runs_dir: Path, capsys) -> None:
    root = _voc(tmp_path)
    rc = main(["segment", "train", "--data", str(root), "--project", str(runs_dir), "--json", "--budget", "50%",
               "--set", "batch_size=4", *FAST])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    run = Path(json.loads(cap.out)["run_dir"])
    assert len((run / "labelled.txt").read_text().split()) == 3
    assert len(list((run / "heatmaps").glob("*.png"))) == 2
    rc = main(["segment", "eval", "--model", str(run / "weights" / "best.pt"), "--json", "--device", "cpu",
               "--quiet"])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    m = json.loads(cap.out)["metrics"]
    assert 0.0 <= m["test/miou"] <= 1.0 and "test/iou/aeroplane" in m and "test/miou_orig" in m
    body = json.loads((run / "eval.json").read_text())
    assert set(body["protocols"]) == {"standard", "original"} and len(body["standard"]["confusion"]) == 21
    img = next((root / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))
    out = subprocess.run([sys.executable, "-m", "mlkit", "segment", "predict", "--model",
                          str(run / "weights" / "best.pt"), "--device", "cpu", "--quiet", "--save",
                          str(tmp_path / "pred")], input=f"{img}\n".encode(), capture_output=True,
                         env=dict(os.environ), timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    row = json.loads(out.stdout.decode().splitlines()[0])
    assert row["id"] == str(img) and len(row["probs"]) == 21
    mask = Image.open(row["mask"])
    assert mask.mode == "P" and mask.size == Image.open(img).size
    assert Path(row["heatmap"]).is_file() and Path(row["heatmap"]).parent == tmp_path / "pred"


def test_predict_missing_file_exits_3(tmp_path: Path, runs_dir: Path, capsys) -> None:
    pytest.importorskip("torch")
    root = D.write_shapes(tmp_path / "shapes", 32, 8, 32, seed=0)
    rc = main(["segment", "train", "--data", str(root), "--project", str(runs_dir), "--json", *FAST])
    cap = capsys.readouterr()
    assert rc == 0, cap.err[-2000:]
    run = Path(json.loads(cap.out)["run_dir"])
    records = (
        tmp_path / "records.txt"
    )  # a file, not stdin: the core's stdin reader thread is not under test here
    records.write_text("/no/such/image.png\n", encoding="utf-8")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlkit",
            "segment",
            "predict",
            "--model",
            str(run / "weights" / "best.pt"),
            "--device",
            "cpu",
            "--quiet",
        ],
        input=b"/no/such/image.png\n",
        capture_output=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert out.returncode == 3 and "input line 1" in out.stderr.decode(), out.stderr.decode()[-2000:]


def _skewed_items(n: int = 400, seed: int = 0) -> list:
    """Class 1 in ~90 % of the images, class 2 in ~30 %, class 3 in ~4 %; a few images show no object."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lab = {c for c, p in ((1, 0.9), (2, 0.3), (3, 0.04)) if rng.random() < p}
        out.append(D.Item(f"s{i:03d}", Path("x"), Path("m"), frozenset(lab)))
    return out


def test_class_aware_budget_covers_rare_classes_towards_the_uniform_mix() -> None:
    from mlkit.tasks.segment import budget as B

    items = _skewed_items()
    by = {it.stem: it.labels for it in items}

    def shares(stems: list[str]) -> np.ndarray:
        c = np.array([sum(k in by[s] for s in stems) for k in (1, 2, 3)], float)
        return c / c.sum()

    ca = B.choose_labelled(items, 20, 0, "class-aware", 1.0)
    rnd = B.choose_labelled(items, 20, 0, "random")
    assert len(ca) == len(set(ca)) == 20 and set(ca) <= set(by)
    assert ca == B.choose_labelled(items, 20, 0, "class-aware", 1.0)  # seeded
    assert ca != B.choose_labelled(items, 20, 1, "class-aware", 1.0)
    uniform = np.full(3, 1 / 3)
    # u = 1: class proportions much closer to uniform than a random subset's, the rare class well represented
    assert np.abs(shares(ca) - uniform).sum() < 0.5 * np.abs(shares(rnd) - uniform).sum()
    assert sum(3 in by[s] for s in ca) >= 5
    # u = 0: the empirical proportions (close to the whole pool's)
    emp = shares([it.stem for it in items])
    assert np.abs(shares(B.choose_labelled(items, 100, 0, "class-aware", 0.0)) - emp).sum() < 0.1
    # the original's schedule, the whole pool and images without objects
    assert B.auto_uniform(20) == 1.0 and B.auto_uniform(500) == 0.5 and B.auto_uniform(1464) == 0.0
    assert len(B.choose_labelled(items, "100%", 0, "class-aware")) == 400
    empty = [D.Item(f"e{i}", Path("x"), Path("m"), frozenset()) for i in range(5)]
    assert len(B.choose_labelled(empty, 3, 0, "class-aware")) == 3
