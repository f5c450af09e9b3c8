"""kge readers: malformed OpenKE / TSV files exit 3 with one line naming the file and line (spec §3, issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlkit.cli import main
from mlkit.tasks.kge import data as D


@pytest.fixture
def kg_dir(tmp_path: Path) -> Path:
    return D.write_dynamic(tmp_path / "kg", 40, 3, 200, seed=1) / "snapshot1"


def _train(data: Path, runs: Path, capsys, *extra: str) -> tuple[int, list[str]]:
    rc = main(["kge", "train", "--data", str(data), "--project", str(runs), "--device", "cpu", "--quiet",
               "--epochs", "1", "--set", "model.dim=4", *extra])  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return rc, err


def _edit(path: Path, line_no: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_relation_missing_from_relation2id(kg_dir, runs_dir, capsys):
    _edit(kg_dir / "train2id.txt", 5, "0 1 99")
    rc, err = _train(kg_dir, runs_dir, capsys)
    assert rc == 3 and len(err) == 1
    assert "relation id 99 is missing from" in err[0] and "relation2id.txt" in err[0]
    assert "train2id.txt line 5" in err[0]


def test_relation2id_lacks_a_relation(kg_dir, runs_dir, capsys):
    lines = (kg_dir / "relation2id.txt").read_text().splitlines()
    (kg_dir / "relation2id.txt").write_text("\n".join(lines[:-1]) + "\n")  # the count says 3, 2 are listed
    rc, err = _train(kg_dir, runs_dir, capsys)
    assert rc == 3 and len(err) == 1 and "relation2id.txt line 1" in err[0]


def test_triple_with_two_columns(kg_dir, runs_dir, capsys):
    _edit(kg_dir / "valid2id.txt", 3, "4 7")
    rc, err = _train(kg_dir, runs_dir, capsys)
    assert rc == 3 and len(err) == 1 and "valid2id.txt line 3" in err[0] and "got 2 column" in err[0]


def test_entity_id_beyond_the_count(kg_dir, runs_dir, capsys):
    n = int((kg_dir / "entity2id.txt").read_text().split()[0])
    _edit(kg_dir / "test2id.txt", 2, f"{n} 0 0")
    rc, err = _train(kg_dir, runs_dir, capsys)
    assert rc == 3 and len(err) == 1 and f"entity id {n} is beyond the count {n}" in err[0]
    assert "test2id.txt line 2" in err[0]


def test_tsv_two_columns_and_missing_dataset(tmp_path, runs_dir, capsys):
    d = tmp_path / "tsv"
    d.mkdir()
    (d / "train.txt").write_text("a\tr\tb\nb\tr\n")
    rc, err = _train(d, runs_dir, capsys)
    assert rc == 3 and len(err) == 1 and "train.txt line 2" in err[0]
    rc, err = _train(tmp_path / "nowhere", runs_dir, capsys)
    assert rc == 3 and len(err) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, err = _train(empty, runs_dir, capsys)
    assert rc == 3 and len(err) == 1 and "no knowledge graph found" in err[0]


def test_fuzzed_files_exit_3_with_one_line(kg_dir, runs_dir, capsys):
    """Truncations and garbles that always break the layout: each exits 3 with one line naming the file."""
    rng = np.random.default_rng(0)
    originals = {p.name: p.read_bytes() for p in kg_dir.iterdir()}
    names = sorted(originals)
    for trial in range(8):
        name = names[trial % len(names)]
        raw = originals[name]
        lines = raw.split(b"\n")
        kind = ["truncate", "extra", "garble", "bytes"][trial % 4]
        k = int(rng.integers(1, max(2, len(lines) - 2)))
        if kind == "truncate":  # drop whole lines: the count no longer matches
            bad = b"\n".join(lines[: max(1, k)]) + b"\n"
            if bad == raw:
                bad = lines[0] + b"\n"
        elif kind == "extra":
            bad = b"\n".join(lines[:k] + [b"x y z w"] + lines[k:])
        elif kind == "garble":
            bad = b"\n".join(lines[:k] + [b"@@ nonsense"] + lines[k + 1 :])
        else:
            bad = b"\n".join(lines[:k] + [b"\xff\xfe\x00"] + lines[k + 1 :])
        for n, body in originals.items():
            (kg_dir / n).write_bytes(body)
        (kg_dir / name).write_bytes(bad)
        rc, err = _train(kg_dir, runs_dir, capsys)
        assert rc == 3 and len(err) == 1, (name, kind, err)
        assert name in err[0], (name, kind, err)
    for n, body in originals.items():
        (kg_dir / n).write_bytes(body)


def test_predict_rejects_unknown_names(tmp_path, runs_dir, capsys):
    kg_dir = D.write_dynamic(tmp_path / "kg", 40, 3, 200, seed=1)
    assert main(["kge", "train", "--data", str(kg_dir), "--project", str(runs_dir), "--device", "cpu", "--quiet",
                 "--epochs", "1", "--arch", "transe", "--set", "model.dim=4"]) == 0  # fmt: skip
    capsys.readouterr()
    q = tmp_path / "q.txt"
    q.write_text("nobody\tr0\t?\n")
    rc = main(["kge", "predict", "--project", str(runs_dir), "--input", str(q), "--quiet"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert rc == 3 and len(err) == 1 and "unknown entity 'nobody'" in err[0] and "input line 1" in err[0]
