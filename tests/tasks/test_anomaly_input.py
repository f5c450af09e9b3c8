"""anomaly input hardening: malformed MVTec 3D-AD folders exit 3 in seconds, quiet runs print nothing, bad predict records.

Every damaged folder is first written in the real layout by the task's own synth writer, then broken in one way;
`train` (with extraction disabled, so only the up-front checks can catch it) and `preprocess` must exit 3 with one
stderr line naming the file, print no traceback, and leave every input file byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import subprocess_env
from PIL import Image

from mlkit.cli import main
from mlkit.tasks.anomaly import TINY
from mlkit.tasks.anomaly.synth import write_dataset

SMALL = {"train": 3, "validation": 1, "test_good": 1, "test_dent": 2, "test_stain": 1, "test_combined": 0}


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def _xyz(path: Path, arr: np.ndarray) -> None:
    tifffile.imwrite(path, arr, photometric="rgb" if arr.ndim == 3 and arr.shape[-1] == 3 else None)


def _truncate(path: Path) -> None:
    b = path.read_bytes()
    path.write_bytes(b[: len(b) // 2])


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    write_dataset(out, seed=0, size=64, counts=SMALL)
    return out / "blob"


def _damage(kind: str, cat: Path) -> str:
    """Break the copied category one way; return a string the error line must contain."""
    tr, val, dent = cat / "train/good", cat / "validation/good", cat / "test/dent"
    if kind == "text_png":  # the case: found only after training before the up-front checks
        (dent / "rgb/000.png").write_text("this is not an image\n")
        return "test/dent/rgb/000.png"
    if kind == "truncated_png":
        _truncate(tr / "rgb/001.png")
        return "train/good/rgb/001.png"
    if kind == "xyz_int_dtype":
        _xyz(val / "xyz/000.tiff", np.ones((64, 64, 3), np.uint16))
        return "validation/good/xyz/000.tiff"
    if kind == "xyz_2d":
        _xyz(tr / "xyz/000.tiff", np.ones((64, 64), np.float32))
        return "train/good/xyz/000.tiff"
    if kind == "xyz_truncated":
        _truncate(cat / "test/good/xyz/000.tiff")
        return "test/good/xyz/000.tiff"
    if kind == "xyz_nan_only":
        _xyz(tr / "xyz/000.tiff", np.full((64, 64, 3), np.nan, np.float32))
        return "train/good/xyz/000.tiff"
    if kind == "xyz_other_size":
        _xyz(dent / "xyz/000.tiff", np.ones((32, 64, 3), np.float32))
        return "test/dent/xyz/000.tiff"
    if kind == "xyz_not_tiff":
        (tr / "xyz/002.tiff").write_bytes(b"II*\x00garbage")
        return "train/good/xyz/002.tiff"
    if kind == "rgb_without_xyz":
        (tr / "xyz/001.tiff").rename(tr / "xyz/007.tiff")
        return "001.png"
    if kind == "xyz_without_rgb":
        shutil.copy(tr / "xyz/000.tiff", tr / "xyz/005.tiff")
        return "005.tiff"
    if kind == "gt_other_size":
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(dent / "gt/000.png")
        return "test/dent/gt/000.png"
    if kind == "gt_missing":
        (dent / "gt/001.png").unlink()
        return "test/dent/gt"
    if kind == "empty_train":
        for p in [*(tr / "rgb").iterdir(), *(tr / "xyz").iterdir()]:
            p.unlink()
        return "train/good/rgb"
    if kind == "no_rgb_folder":
        shutil.rmtree(val / "rgb")
        return "validation/good/rgb"
    raise AssertionError(kind)


KINDS = ["text_png", "truncated_png", "xyz_int_dtype", "xyz_2d", "xyz_truncated", "xyz_nan_only", "xyz_other_size",
         "xyz_not_tiff", "rgb_without_xyz", "xyz_without_rgb", "gt_other_size", "gt_missing", "empty_train",
         "no_rgb_folder"]  # fmt: skip


def _one_error_line(err: str, named: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_folder_exits_3_before_extraction(
    kind, raw, tmp_path, runs_dir, capsys, caplog, monkeypatch
):
    import mlkit.tasks.anomaly.m3dm as m3dm

    def no_extraction(*a, **k):
        raise AssertionError("extraction started before the input was checked")

    monkeypatch.setattr(m3dm, "extract", no_extraction)  # rc 3 below proves the up-front checks caught it
    root = tmp_path / "data"
    shutil.copytree(raw, root / "blob")
    named = _damage(kind, root / "blob")
    before = _digest(root)
    capsys.readouterr()
    rc = main(
        ["anomaly", "train", "--data", str(root), "--project", str(runs_dir), "--device", "cpu", "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 3, err
    _one_error_line(err, named)
    assert not list(runs_dir.rglob("weights")), "a failed run leaves no run dir behind"
    out = tmp_path / "prep"
    rc = main(["anomaly", "preprocess", "--data", str(root), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 3, err
    _one_error_line(err, named)
    assert not out.exists(), "preprocess checks every file before it writes anything"
    assert _digest(root) == before  # the inputs are never modified
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # no library log line on stderr


@pytest.mark.parametrize("kind", ["text_png", "xyz_not_tiff", "xyz_nan_only"])
def test_malformed_folder_cli_prints_one_line(kind, raw, tmp_path):
    """The real command in a fresh process: stderr holds the error line and nothing else (no warnings, logs)."""
    root = tmp_path / "data"
    shutil.copytree(raw, root / "blob")
    named = _damage(kind, root / "blob")
    p = _mlkit("train", "--data", str(root), "--project", str(tmp_path / "runs"), "--device", "cpu", "--quiet",
               timeout=120)  # fmt: skip
    assert p.returncode == 3, p.stderr[-3000:]
    _one_error_line(p.stderr, named)


def test_missing_category_and_dataset(raw, tmp_path, runs_dir, capsys):
    root = tmp_path / "data"
    shutil.copytree(raw, root / "blob")
    capsys.readouterr()
    base = ["--project", str(runs_dir), "--device", "cpu", "--quiet"]
    assert main(["anomaly", "train", "--data", str(root), "--category", "bagel", *base]) == 3
    _one_error_line(capsys.readouterr().err, "bagel")
    assert main(["anomaly", "train", "--data", str(tmp_path / "nope"), *base]) == 3
    _one_error_line(capsys.readouterr().err, "nope")
    (root / "blob/train").rename(root / "blob/training")  # no category folder with train/ left
    assert main(["anomaly", "train", "--data", str(root), *base]) == 3
    _one_error_line(capsys.readouterr().err, str(root))
    assert main(["anomaly", "preprocess", "--data", str(root), "--out", str(tmp_path / "o"), "--quiet"]) == 3
    _one_error_line(capsys.readouterr().err, str(root))


def test_os_fault_is_one_line_naming_the_path(raw, tmp_path, runs_dir, capsys, monkeypatch):
    """A permission error is the environment, not the data: exit 1, one line with the path."""
    import PIL.Image

    root = tmp_path / "data"
    shutil.copytree(raw, root / "blob")
    real_open = PIL.Image.open

    def denied(fp, *a, **k):
        if str(fp).endswith("train/good/rgb/001.png"):
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(PIL.Image, "open", denied)
    capsys.readouterr()
    rc = main(
        ["anomaly", "train", "--data", str(root), "--project", str(runs_dir), "--device", "cpu", "--quiet"]
    )
    assert rc == 1
    _one_error_line(capsys.readouterr().err, "train/good/rgb/001.png")


# ---------------------------------------------------------------- quiet train, then predict on bad records
def _mlkit(*args: str, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlkit", "anomaly", *args], input=stdin, capture_output=True,
                          text=True, env=subprocess_env(), timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def quiet_run(raw, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    # a test split of good images only: AUROC and AUPRO are NaN, which used to print numpy's RuntimeWarnings
    data = tmp_path_factory.mktemp("goodonly")
    shutil.copytree(raw, data / "blob", ignore=shutil.ignore_patterns("dent", "stain", "combined"))
    assert [p.name for p in (data / "blob/test").iterdir()] == ["good"]
    runs = tmp_path_factory.mktemp("qruns")
    sets = [
        a for k, v in TINY.items() if not k.startswith("synth.") for a in ("--set", f"{k}={json.dumps(v)}")
    ]
    proc = _mlkit("train", "--data", str(data), "--project", str(runs), "--device", "cpu", "--quiet", *sets)
    return runs, proc


def test_quiet_train_prints_nothing(quiet_run):
    """--quiet prints nothing but errors: no RuntimeWarning from numpy, sklearn or torch on a tiny run (NaN metrics)."""
    _, proc = quiet_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr[-3000:]


def _records(raw: Path, tmp_path: Path) -> dict[str, str]:
    good = sorted((raw / "test/good/rgb").glob("*.png"))[0]
    bad = tmp_path / "blob/test/x"
    (bad / "rgb").mkdir(parents=True)
    (bad / "xyz").mkdir()
    (bad / "rgb/000.png").write_text("not an image\n")  # a text file with a .png name, its xyz partner intact
    shutil.copy(good.parent.parent / "xyz" / f"{good.stem}.tiff", bad / "xyz/000.tiff")
    return {"good": str(good), "missing": str(tmp_path / "gone/rgb/000.png"), "text": str(bad / "rgb/000.png"),
            "empty": ""}  # fmt: skip


@pytest.mark.parametrize("bad", ["missing", "text", "empty"])
def test_predict_bad_record_stops_after_earlier_rows(quiet_run, raw, tmp_path, bad):
    runs, proc = quiet_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = _records(raw, tmp_path)
    p = _mlkit("predict", "--project", str(runs), "--quiet", stdin="\n".join([rec["good"], rec["good"], rec[bad],
                                                                                rec["good"]]) + "\n")  # fmt: skip
    assert p.returncode == 3, p.stderr[-3000:]
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert len(rows) == 2 and all("score" in r for r in rows)  # the rows before the bad record are out
    _one_error_line(p.stderr, "input line 3")


def test_predict_on_error_skip_writes_error_rows(quiet_run, raw, tmp_path):
    runs, proc = quiet_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = _records(raw, tmp_path)
    lines = [rec["good"], rec["missing"], rec["text"], rec["empty"], rec["good"]]
    p = _mlkit(
        "predict", "--project", str(runs), "--quiet", "--on-error", "skip", stdin="\n".join(lines) + "\n"
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr == ""
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert len(rows) == 5
    assert "score" in rows[0] and "score" in rows[4] and rows[0]["score"] == pytest.approx(rows[4]["score"])
    assert [r["id"] for r in rows[1:4]] == [2, 3, 4] and all(set(r) == {"id", "error"} for r in rows[1:4])
    assert "not found" in rows[1]["error"] and "input line 2" in rows[1]["error"]
    assert "cannot read image" in rows[2]["error"] and "000.png" in rows[2]["error"]
    assert "empty record" in rows[3]["error"]
