"""mlkit framelet through the CLI: --dataset in multi-dataset folders (Planetoid, TU), the newcomer default
(one repetition) against `--preset paper`, and predict's bad-record handling (stop / --on-error skip)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from graph_fixtures import error_lines, planetoid_set

from mlkit.cli import main

TINY = ["--set", "synth.nodes=240", "--set", "synth.features=16", "--epochs", "3", "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "cache"))


def _check(runs_dir: Path, capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["framelet", "train", "--project", str(runs_dir), "--check", *args]) == 0
    return json.loads(capsys.readouterr().out)["config"]


def test_dataset_flag_in_planetoid_and_tu_folders(tmp_path, runs_dir, capsys):
    from mlkit.graph.tu import write_tu
    from mlkit.tasks.framelet import synth as S

    d = tmp_path / "planetoid"
    planetoid_set(d, "cora", 3)
    planetoid_set(d, "citeseer", 4, seed=1)
    base = ["framelet", "train", "--project", str(runs_dir), "--data", str(d), "--epochs", "2", "--device", "cpu",
            "--quiet", "--json"]  # fmt: skip
    capsys.readouterr()
    assert main(base) == 3
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "2 datasets: citeseer, cora" in err[0] and "--dataset" in err[0]
    assert main([*base, "--dataset", "CITESEER", "--name", "cs"]) == 0  # case-insensitive
    assert json.loads(capsys.readouterr().out)["metrics"]["reps"] == 1
    assert main([*base, "--dataset", "pubmed"]) == 3
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "holds: citeseer, cora" in err[0] and "ind.pubmed" not in err[0]
    tu = tmp_path / "tu"
    for name, count, seed in (("MUTAG", 12, 0), ("PROTEINS", 14, 1)):
        gs, ys = S.two_class_graphs(count=count, min_nodes=6, max_nodes=9, seed=seed)
        write_tu(tu, name, gs, ys)
    graph = ["framelet", "train", "--project", str(runs_dir), "--data", str(tu), "--arch", "meanpool", "--epochs",
             "2", "--batch-size", "4", "--device", "cpu", "--quiet", "--json"]  # fmt: skip
    assert main(graph) == 3
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "MUTAG, PROTEINS" in err[0] and "--dataset" in err[0]
    assert main([*graph, "--dataset", "proteins"]) == 0


def test_default_is_one_repetition_and_preset_paper_restores_the_protocol(tmp_path, runs_dir, capsys):
    plain = _check(runs_dir, capsys)
    assert (plain["reps"], plain["epochs"], plain["preset"]) == (1, 200, None)
    paper = _check(runs_dir, capsys, "--preset", "paper")
    assert (paper["reps"], paper["epochs"], paper["batch_size"], paper["graph"]["patience"]) == (10, 200, 53, 20)
    mixed = _check(runs_dir, capsys, "--preset", "paper", "--reps", "1", "--set", "epochs=200")
    assert (mixed["reps"], mixed["epochs"]) == (1, 200)  # explicit keys win, even at their default value
    # README's commands pass --reps 10 and no --epochs: still 10 repetitions x 200 epochs
    (tmp_path / "planetoid").mkdir()
    readme = _check(runs_dir, capsys, "--data", str(tmp_path / "planetoid"), "--dataset", "cora", "--arch", "ufg-s",
                    "--reps", "10")  # fmt: skip
    assert (readme["reps"], readme["epochs"]) == (10, 200)
    capsys.readouterr()
    assert main(["framelet", "train", "--project", str(runs_dir), "--preset", "nope", "--check"]) == 2
    # a run trained under the preset keeps its values in config.yaml, and eval does not apply the preset again
    assert main(["framelet", "train", "--project", str(runs_dir), "--preset", "paper", "--reps", "1",
                 "--name", "p", *TINY]) == 0  # fmt: skip
    saved = yaml.safe_load((runs_dir / "framelet" / "p" / "config.yaml").read_text())
    assert (saved["preset"], saved["reps"], saved["epochs"]) == ("paper", 1, 3)
    capsys.readouterr()
    args = ["framelet", "eval", "--model", str(runs_dir / "framelet" / "p"), "--device", "cpu", "--quiet", "--json"]
    assert main(args) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["metrics"]["test/acc"] <= 1


def test_predict_stops_at_a_bad_line_after_earlier_rows_and_skip_goes_on(tmp_path, runs_dir, capsys):
    assert main(["framelet", "train", "--project", str(runs_dir), *TINY]) == 0
    inp, out = tmp_path / "ids.txt", tmp_path / "pred.jsonl"
    predict = ["framelet", "predict", "--project", str(runs_dir), "--device", "cpu", "--quiet", "--input", str(inp),
               "--output", str(out)]  # fmt: skip
    for bad in ("x1", "240"):  # not an id; no such node (240 nodes under TINY)
        inp.write_text(f"0\n5\n{bad}\n239\n")
        capsys.readouterr()
        assert main(predict) == 3
        err = error_lines(capsys.readouterr().err)
        assert len(err) == 1 and "input line 3" in err[0]
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["id"] for r in rows] == [0, 5]  # the rows before the bad line are out
        assert main([*predict, "--on-error", "skip"]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["id"] for r in rows] == [0, 5, 3, 239]  # an error row carries the 1-based input line
        assert "input line 3" in rows[2]["error"] and "probs" in rows[3]
