"""The runner's lifecycle rules, on the template task: checks before writes, run dirs, resume, caches, plots."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml

from mlkit.cli import main
from mlkit.core.artifact import cached, verify
from mlkit.core.rundir import create_run_dir


def _err(capsys) -> str:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()][-1]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--epochs", "0"], "epochs must be an integer >= 1"),
        (["--epochs", "-1"], "epochs must be an integer >= 1"),
        (["--lr", "nan"], "lr must be a finite number > 0"),
        (["--lr", "-1"], "lr must be a finite number > 0"),
        (["--batch-size", "0"], "batch_size must be an integer >= 1"),
        (["--name", "../../x"], "bad run name"),
        (["--name", "/tmp/abs"], "bad run name"),
        (["--set", "arch=resnet"], "unknown arch"),
    ],
)
def test_bad_values_exit_2_before_anything_is_written(args, needle, runs_dir, capsys):
    assert main(["toy", "train", "--project", str(runs_dir), "--quiet", *args]) == 2
    assert needle in _err(capsys)
    assert not any(runs_dir.rglob("*")), "nothing may be written for a refused run"


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_run_dir(runs_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "data.csv").write_text("x1,x2,label\n1,2,3\nfoo,1,0\n")
    assert main(["toy", "train", "--project", str(runs_dir), "--quiet", "--data", str(bad)]) == 3
    assert f"{bad / 'data.csv'} line 3" in _err(capsys)
    assert not (runs_dir / "toy" / "train").exists()


def test_an_os_fault_is_one_line_naming_the_path(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["toy", "train", "--project", str(blocker), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(blocker) in err[0] and "internal failure" not in err[0]


def test_exist_ok_starts_a_fresh_results_csv(runs_dir):
    common = ["toy", "train", "--project", str(runs_dir), "--quiet", "--name", "same"]
    assert main([*common, "--epochs", "3"]) == 0
    assert main([*common, "--epochs", "2", "--exist-ok"]) == 0
    rows = (runs_dir / "toy" / "same" / "results.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


def test_concurrent_starts_get_distinct_run_dirs(tmp_path):
    got: list[Path] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        got.append(create_run_dir(tmp_path, "toy", "train", False))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8


def test_a_refused_resume_keeps_the_run_resumable(runs_dir, capsys):
    assert main(["toy", "train", "--project", str(runs_dir), "--quiet", "--name", "r"]) == 0
    cfg_path = runs_dir / "toy" / "r" / "config.yaml"
    before = cfg_path.read_text()
    rc = main(["toy", "train", "--project", str(runs_dir), "--quiet", "--resume", "--name", "r", "--lr", "0.5"])
    assert rc == 2 and "config differs" in _err(capsys)
    assert cfg_path.read_text() == before
    assert main(["toy", "train", "--project", str(runs_dir), "--quiet", "--resume", "--name", "r", "--epochs", "6"]) == 0
    assert yaml.safe_load(cfg_path.read_text())["epochs"] == 6


def test_training_writes_results_png_and_the_final_config(runs_dir, capsys):
    assert main(["toy", "train", "--project", str(runs_dir), "--quiet", "--json", "--set", "lr=0.05"]) == 0
    run = Path(json.loads(capsys.readouterr().out)["run_dir"])
    assert (run / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 0.05


def test_cached_artifacts_are_verified_and_rebuilt_when_corrupt(tmp_path):
    calls = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "a.txt").write_text("hello")

    a = cached("demo", {"n": 1}, build, root=tmp_path)
    assert cached("demo", {"n": 1}, build, root=tmp_path) == a and len(calls) == 1
    (a / "a.txt").write_text("hel")  # truncated by a crash or a full disk
    assert not verify(a, {"n": 1})
    assert cached("demo", {"n": 1}, build, root=tmp_path) == a and len(calls) == 2
    assert (a / "a.txt").read_text() == "hello"
    assert cached("demo", {"n": 2}, build, root=tmp_path) != a
    assert not list(tmp_path.glob(".*tmp*")), "no temp folders are left behind"


def test_listing_commands_write_to_stdout(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "ner" in out


def test_one_dataset_rule_for_multi_dataset_folders(tmp_path):
    from mlkit.core.data import pick_dataset
    from mlkit.core.errors import DataError

    assert pick_dataset(["cora"], None, tmp_path) == "cora"
    assert pick_dataset(["Citeseer", "cora"], "citeseer", tmp_path) == "Citeseer"
    with pytest.raises(DataError, match="holds 2 datasets: Citeseer, cora"):  # the message itself
        pick_dataset(["cora", "Citeseer"], None, tmp_path)
    with pytest.raises(DataError) as info:
        pick_dataset(["cora", "Citeseer"], "pubmed", tmp_path)
    assert "This folder holds: Citeseer, cora" in info.value.line()


def test_a_binary_config_is_a_usage_error(runs_dir, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    assert main(["toy", "train", "--project", str(runs_dir), "--config", str(cfg)]) == 2
    assert "not UTF-8" in _err(capsys)


def test_a_failed_checkpoint_write_leaves_no_temp_file(tmp_path, monkeypatch):
    from mlkit.core import checkpoint

    path = tmp_path / "w" / "last.pt"
    checkpoint.save(checkpoint.make("toy", {"arch": "mlp"}, {}), path)
    before = path.read_bytes()

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(OSError):
        checkpoint.save(checkpoint.make("toy", {"arch": "mlp"}, {}, epoch=3), path)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_max_steps_and_time_budget_stop_cleanly_with_checkpoint_and_metrics(runs_dir, capsys):
    common = ["toy", "train", "--project", str(runs_dir), "--json", "--epochs", "50"]
    assert main([*common, "--name", "steps", "--max-steps", "5"]) == 0  # 154 rows / batch 16: 9 steps an epoch
    out = json.loads(capsys.readouterr().out)
    run = Path(out["run_dir"])
    assert "test/accuracy" in out["metrics"] and (run / "weights" / "best.pt").is_file()
    assert len((run / "results.csv").read_text().splitlines()) == 2  # header + the one (partial) epoch
    # a budget already spent when training starts: the first step ends the first epoch, and the run
    assert main([*common, "--name", "time", "--time-budget-s", "0.001"]) == 0
    rows = (Path(json.loads(capsys.readouterr().out)["run_dir"]) / "results.csv").read_text().splitlines()
    assert len(rows) == 2
    assert main([*common, "--max-steps", "0"]) == 2
    assert "--max-steps must be >= 1" in _err(capsys)


def test_a_task_missing_required_hooks_is_named_when_loaded():
    from mlkit.core.task import Task

    class Half(Task):
        def load_data(self, cfg, ctx):  # noqa: ANN001, ANN201
            return None

    assert Half().missing_hooks() == ["restore", "evaluate", "predict_batch", "sample_inputs", "build_model",
                                      "train_epoch"]  # fmt: skip
    one = type("OneShot", (Half,), {"one_shot": True})()
    assert "fit" in one.missing_hooks() and "train_epoch" not in one.missing_hooks()
    from mlkit.core.registry import task_table
    from mlkit.core.runner import load_task

    assert all(not load_task(t).missing_hooks() for t in task_table())
