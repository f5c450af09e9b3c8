"""longtail data on fixtures in the real layouts: CIFAR-10 / CIFAR-100 python pickles (written here byte for byte as
the originals: protocol-2 dicts with bytes keys), an OLTR split-file set and an ImageFolder tree; pretrain ->
train --init -> eval -> predict; the prior in the checkpoint; malformed input exits 3 with one line naming the file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlkit.cli import main
from mlkit.tasks.longtail import data as D
from mlkit.tasks.longtail import pipeline as P

FAST = ["--device", "cpu", "--quiet", "--epochs", "1", "--batch-size", "8", "--input-size", "8",
        "--set", "mgp.epochs=1", "--set", "workers=0"]  # fmt: skip


def _images(rng: np.random.Generator, labels: np.ndarray, side: int = 32) -> np.ndarray:
    """Class-coloured noisy squares (HWC uint8)."""
    x = rng.integers(0, 60, (len(labels), side, side, 3), dtype=np.uint8)
    for i, y in enumerate(labels):
        x[i, 4 : 4 + 3 * (int(y) % 5 + 2), 6:20, int(y) % 3] = 200
    return x


def _dump(path: Path, body: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(body, f, protocol=2)


def write_cifar10_fixture(root: Path, per_class: int = 12, test_per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    y = np.repeat(np.arange(10), per_class)
    y = y[rng.permutation(len(y))]
    x = _images(rng, y)
    rows = x.transpose(0, 3, 1, 2).reshape(len(y), 3072)  # channel-planar R, G, B rows of 1024
    for i, part in enumerate(np.array_split(np.arange(len(y)), 5)):
        _dump(root / f"data_batch_{i + 1}", {b"batch_label": f"training batch {i + 1} of 5".encode(),
                                             b"labels": y[part].tolist(), b"data": rows[part],
                                             b"filenames": [b"x.png"] * len(part)})  # fmt: skip
    ty = np.repeat(np.arange(10), test_per_class)
    tx = _images(rng, ty).transpose(0, 3, 1, 2).reshape(len(ty), 3072)
    _dump(root / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": ty.tolist(), b"data": tx,
                                b"filenames": [b"t.png"] * len(ty)})  # fmt: skip
    _dump(root / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072,
                                  b"num_cases_per_batch": 24})  # fmt: skip
    return root


def write_split_fixture(root: Path, counts: tuple[int, ...] = (8, 4, 2), test_per_class: int = 2) -> Path:
    rng = np.random.default_rng(1)
    for c in range(len(counts)):
        (root / "images" / f"n{c:03d}").mkdir(parents=True, exist_ok=True)

    def listing(name: str, per: list[int]) -> None:
        lines = []
        for c, n in enumerate(per):
            for i in range(n):
                rel = f"images/n{c:03d}/{name}_{i}.jpg"
                Image.fromarray(_images(rng, np.array([c]), 20)[0]).save(root / rel)
                lines.append(f"{rel} {c}")
        (root / f"ImageNet_LT_{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    listing("train", list(counts))
    listing("test", [test_per_class] * len(counts))
    return root


def test_cifar10_fixture_loads_with_lt_construction(tmp_path: Path) -> None:
    root = write_cifar10_fixture(tmp_path / "cifar-10-batches-py")
    train, test, names = D.read_cifar(root, "cifar10")
    assert (
        len(train) == 120 and len(test) == 30 and names[3] == "c3" and train.arrays.shape == (120, 32, 32, 3)
    )
    cfg = {"data": str(tmp_path), "format": "auto", "split_file": None, "lt": {"profile": "exp", "rho": 6.0,
           "n_max": 0, "seed": 0}}  # fmt: skip
    data = P.load(cfg)
    assert data.counts.tolist() == D.lt_counts(12, 10, 6.0) and data.source.startswith("cifar10:")
    assert int(data.train.image(0).size[0]) == 32


def test_cifar100_fixture_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    for name, n in (("train", 300), ("test", 100)):
        y = np.arange(n) % 100
        body = {
            b"filenames": [b"a.png"] * n,
            b"batch_label": name.encode(),
            b"fine_labels": y.tolist(),
            b"coarse_labels": (y // 5).tolist(),
            b"data": _images(rng, y).transpose(0, 3, 1, 2).reshape(n, 3072),
        }
        _dump(root / name, body)
    _dump(root / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                          b"coarse_label_names": [f"k{i}".encode() for i in range(20)]})  # fmt: skip
    assert D.detect_format(tmp_path) == "cifar100"
    train, test, names = D.read_cifar(root, "cifar100")
    assert len(train) == 300 and len(test) == 100 and names[99] == "f99"


def test_cifar_pretrain_init_train_eval_predict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_cifar10_fixture(tmp_path / "c10")
    common = ["--data", str(tmp_path / "c10"), "--project", str(tmp_path / "runs"), "--rho", "4", *FAST]
    assert main(["longtail", "pretrain", *common, "--json"]) == 0
    pre = Path(json.loads(capsys.readouterr().out)["run_dir"])
    assert (pre / "reconstructions.png").stat().st_size > 1000 and (pre / "lt_subset.txt").is_file()
    assert main(["longtail", "train", *common, "--json", "--init", str(pre), "--loss", "bal_bce"]) == 0
    run = Path(json.loads(capsys.readouterr().out)["run_dir"])
    ck = torch.load(run / "weights" / "best.pt", weights_only=True)
    data_counts = D.lt_counts(12, 10, 4.0)
    assert (
        ck["extra"]["counts"] == data_counts
    )  # the prior comes from the LT train list and travels with the model
    lines = (run / "lt_subset.txt").read_text().splitlines()
    assert len(lines) == sum(data_counts)
    assert (run / "per_class.csv").read_text().count("\n") == 11 and (
        run / "confusion.png"
    ).stat().st_size > 1000
    assert main(["longtail", "eval", "--model", str(run), "--device", "cpu", "--quiet", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    assert {"test/acc", "test/balanced_acc", "test/few"} <= set(
        m
    ) and "test/many" not in m  # n_j 12..3: all few
    # the prior is restored from the checkpoint: another LT subsample of the data changes nothing at eval
    assert (
        main(["longtail", "eval", "--model", str(run), "--device", "cpu", "--quiet", "--json", "--rho", "2"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["metrics"] == m
    # the pretrain checkpoint has no classifier: eval says so (exit 2)
    assert main(["longtail", "eval", "--model", str(pre), "--device", "cpu", "--quiet"]) == 2
    samples = sorted((run / "samples").glob("*.png"))
    assert main(["longtail", "predict", "--model", str(run), "--device", "cpu", "--quiet",
                 "--input", str(run / "samples")]) == 0  # fmt: skip
    rows = [json.loads(r) for r in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(samples) and all(len(r["probs"]) == 10 and len(r["topk"]) == 3 for r in rows)


def test_init_loads_the_mgp_encoder(tmp_path: Path) -> None:
    from mlkit.tasks.longtail.model import MAE, build_vit, load_encoder
    from mlkit.tasks.longtail.task import read_init

    mae = MAE(build_vit("lt-tiny", 16, 0), 32, 1, 4)
    torch.save({"state_dict": mae.state_dict()}, tmp_path / "mgp.pt")
    vit = build_vit("lt-tiny", 32, 5)  # another resolution: pos_embed is resampled
    missing = load_encoder(vit, read_init(str(tmp_path / "mgp.pt")))
    assert torch.equal(vit.blocks[2].mlp.fc1.weight, mae.encoder.blocks[2].mlp.fc1.weight)
    assert vit.pos_embed.shape == (1, 65, 64) and "head.weight" in missing and "fc_norm.weight" in missing


def test_split_files_train_eval(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_split_fixture(tmp_path / "inet")
    common = ["--split-file", str(root / "ImageNet_LT_train.txt"), "--project", str(tmp_path / "runs"), *FAST]
    assert main(["longtail", "train", *common, "--json", "--init", "random", "--loss", "ce"]) == 0
    run = Path(json.loads(capsys.readouterr().out)["run_dir"])
    assert torch.load(run / "weights" / "best.pt", weights_only=True)["extra"]["counts"] == [8, 4, 2]
    assert main(["longtail", "eval", "--model", str(run), "--device", "cpu", "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["test/few"] >= 0.0


def test_image_folder_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, per in (("train", (5, 2)), ("val", (2, 2))):
        for c, n in enumerate(per):
            (tmp_path / split / f"cls{c}").mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_images(rng, np.array([c]), 12)[0]).save(
                    tmp_path / split / f"cls{c}" / f"{i}.png"
                )
    cfg = {"data": str(tmp_path), "format": "auto", "split_file": None}
    data = P.load(cfg)
    assert data.classes == ["cls0", "cls1"] and data.counts.tolist() == [5, 2] and len(data.test) == 4


# ---------------------------------------------------------------------------------------------------- bad input
def _one_line_exit3(argv: list[str], capsys: pytest.CaptureFixture, name: str) -> str:
    rc = main(argv)
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 3 and len(err) == 1 and err[0].startswith("error:") and name in err[0], (rc, err)
    return err[0]


def test_truncated_pickle_exits_3_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_cifar10_fixture(tmp_path / "c10")
    blob = (root / "data_batch_3").read_bytes()
    (root / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    line = _one_line_exit3(["longtail", "train", "--data", str(root), *FAST, "--project", str(tmp_path / "r")],
                           capsys, "data_batch_3")  # fmt: skip
    assert "truncated" in line
    assert not (tmp_path / "r" / "longtail").exists() or not any((tmp_path / "r" / "longtail").iterdir())


@pytest.mark.parametrize("seed", range(4))
def test_garbled_pickles_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture, seed: int) -> None:
    root = write_cifar10_fixture(tmp_path / "c10")
    rng = np.random.default_rng(seed)
    name = ["data_batch_1", "test_batch", "data_batch_5", "data_batch_2"][seed]
    blob = bytearray((root / name).read_bytes())
    if seed % 2:  # garble the header, where the dict and the array's shape live
        for i in rng.integers(0, 120, 12):
            blob[int(i)] = int(rng.integers(0, 256))
    else:  # cut inside the data or at a random early point
        blob = blob[: int(rng.integers(1, 200))]
    (root / name).write_bytes(bytes(blob))
    _one_line_exit3(["longtail", "train", "--data", str(root), *FAST, "--project", str(tmp_path / "r")],
                    capsys, name)  # fmt: skip


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    root = write_cifar10_fixture(tmp_path / "c10")

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("pwned",))

    _dump(root / "test_batch", {b"data": Evil(), b"labels": []})
    with pytest.raises(D.DataError, match="UnpicklingError") as err:
        D.read_cifar(root, "cifar10")
    assert err.value.where.endswith("test_batch")


def test_split_line_naming_a_missing_image_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_split_fixture(tmp_path / "inet")
    lst = root / "ImageNet_LT_train.txt"
    lines = lst.read_text().splitlines()
    lines[3] = "images/n000/gone.jpg 0"
    lst.write_text("\n".join(lines) + "\n")
    line = _one_line_exit3(["longtail", "train", "--split-file", str(lst), *FAST, "--project", str(tmp_path / "r")],
                           capsys, "ImageNet_LT_train.txt:4")  # fmt: skip
    assert "gone.jpg" in line
    lines[3] = "images/n000/train_0.jpg zero"
    lst.write_text("\n".join(lines) + "\n")
    _one_line_exit3(["longtail", "train", "--split-file", str(lst), *FAST, "--project", str(tmp_path / "r")],
                    capsys, "ImageNet_LT_train.txt:4")  # fmt: skip


def test_predict_bad_path_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_cifar10_fixture(tmp_path / "c10")
    assert main(["longtail", "train", "--data", str(tmp_path / "c10"), *FAST, "--init", "random", "--json",
                 "--project", str(tmp_path / "runs")]) == 0  # fmt: skip
    run = Path(json.loads(capsys.readouterr().out)["run_dir"])
    good = str(sorted((run / "samples").glob("*.png"))[0])
    (tmp_path / "in.txt").write_text(f"{good}\n/nowhere/x.png\n")
    rc = main(
        [
            "longtail",
            "predict",
            "--model",
            str(run),
            "--device",
            "cpu",
            "--quiet",
            "--input",
            str(tmp_path / "in.txt"),
        ]
    )
    cap = capsys.readouterr()
    assert rc == 3 and len(cap.out.splitlines()) == 1 and "input line 2" in cap.err
