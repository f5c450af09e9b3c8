"""CLI conventions: fast light help, exit codes, one-line errors, JSON, streaming predict, resume, names."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import subprocess_env

from mlkit.cli import main


def mlkit(*args: str, stdin: bytes | None = None, cwd: Path | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "mlkit", *args],
        input=stdin,
        capture_output=True,
        env=subprocess_env(),
        cwd=cwd,
        timeout=timeout,
    )


def test_import_cli_does_not_import_torch():
    code = "import sys, mlkit.cli; mlkit.cli.build_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert out.stdout.strip() == "False", out.stderr


def test_help_is_fast_and_lists_tasks():
    mlkit("--help")  # warm the bytecode cache
    t0 = time.perf_counter()
    out = mlkit("--help")
    wall = time.perf_counter() - t0
    assert out.returncode == 0
    assert wall < 1.0, f"mlkit --help took {wall:.2f}s"
    tasks = json.loads(mlkit("tasks", "--json").stdout)["tasks"]
    names = {t["task"] for t in tasks}
    from mlkit.core.registry import TASKS

    assert set(TASKS) <= names and "toy" in names


def test_version_and_config(capsys):
    assert main(["--version"]) == 0
    from mlkit import __version__

    assert __version__ in capsys.readouterr().out
    assert main(["toy", "config"]) == 0
    assert "rank_hash" in capsys.readouterr().out


def _last_err_line(err: str) -> str:
    return [line for line in err.splitlines() if line.strip()][-1]


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["toy", "train", "--set", "lrr=1"], 2, "Did you mean 'lr'"),
        (["toy", "train", "--set", "lr=abc"], 2, "wants float"),
        (["toy", "train", "--bogus"], 2, "No such option"),
        (["nosuch"], 2, "No such command"),
        (["toy", "train", "--data", "nosuch-dataset"], 3, "Expected layout: <root>/data.csv"),
        (["toy", "eval", "--model", "missing.pt"], 2, "checkpoint not found"),
        (["toy", "eval"], 2, "Train one with `mlkit toy train`"),
        (["toy", "train", "--device", "cuda:7"], 2, "device"),
    ],
)
def test_errors_are_one_line_with_exit_codes(args, code, needle, runs_dir, capsys):
    if "--device" in args and torch.cuda.device_count() > 7:
        pytest.skip("machine has cuda:7")
    rc = main([*args, "--project", str(runs_dir)] if args[0] == "toy" and args[1] != "--bogus" else args)
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err
    line = _last_err_line(err)
    assert line.startswith("error: ") and needle in line


def test_train_eval_predict_json_and_names(runs_dir, capsys):
    assert main(["toy", "train", "--project", str(runs_dir), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "toy" and out["mode"] == "train" and "test/accuracy" in out["metrics"]
    run = Path(out["run_dir"])
    for f in ("config.yaml", "results.csv", "metrics.json", "weights/best.pt", "weights/last.pt"):
        assert (run / f).is_file(), f
    header = (run / "results.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,train/loss,val/accuracy")
    ck = torch.load(run / "weights" / "best.pt", weights_only=True)
    assert ck["task"] == "toy" and ck["config"]["lr"] == 0.1
    # a second run increments the name; eval without --model takes the newest best.pt
    assert main(["toy", "train", "--project", str(runs_dir), "--quiet", "--epochs", "1", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)["run_dir"]
    assert second.endswith("train2")
    assert main(["toy", "eval", "--project", str(runs_dir), "--json"]) == 0
    cap = capsys.readouterr()
    assert "train2" in cap.err and set(json.loads(cap.out)["metrics"]) >= {"test/accuracy", "test/loss"}


def test_data_by_name_from_the_datasets_root(runs_dir, _datasets_root, capsys):
    assert main(["toy", "synth", "--out", str(_datasets_root / "blobs")]) == 0
    assert main(["toy", "train", "--data", "blobs", "--project", str(runs_dir), "--quiet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cfg = (Path(out["run_dir"]) / "config.yaml").read_text()
    assert str(_datasets_root / "blobs") in cfg


def test_predict_streams_one_line_per_record(runs_dir, tmp_path):
    assert main(["toy", "train", "--project", str(runs_dir), "--quiet", "--epochs", "1"]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlkit", "toy", "predict", "--project", str(runs_dir), "--quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )
    # a reply comes back before stdin is closed: predict streams
    proc.stdin.write(b"1,1\n")
    proc.stdin.flush()
    first = json.loads(proc.stdout.readline())
    assert first["id"] == "1,1"
    proc.stdin.write(b"-1,-2\n0,0\n")
    proc.stdin.close()
    rest = [json.loads(line) for line in proc.stdout.read().splitlines()]
    assert proc.wait(timeout=60) == 0
    assert [r["id"] for r in rest] == ["-1,-2", "0,0"]
    # bad UTF-8 and a bad record are input errors (exit 3), one line each
    bad = mlkit("toy", "predict", "--project", str(runs_dir), stdin=b"\xff\xfe\n")
    assert bad.returncode == 3 and _last_err_line(bad.stderr.decode()).startswith("error: input is not valid UTF-8")
    bad = mlkit("toy", "predict", "--project", str(runs_dir), stdin=b"1,1\nnot,a,number\n2,2\n")
    assert bad.returncode == 3 and len(bad.stdout.decode().splitlines()) == 1  # the good line before it is out
    assert "input line 2" in _last_err_line(bad.stderr.decode())
    skip = mlkit("toy", "predict", "--project", str(runs_dir), "--on-error", "skip", stdin=b"1,1\nx\n2,2\n")
    rows = [json.loads(line) for line in skip.stdout.decode().splitlines()]
    assert skip.returncode == 0 and [("error" in r) for r in rows] == [False, True, False] and rows[1]["id"] == 2
    # --input and --output files
    inp = tmp_path / "in.txt"
    inp.write_text("1,1\n2,2\n")
    assert main(["toy", "predict", "--project", str(runs_dir), "--input", str(inp), "--output", str(tmp_path / "o")]) == 0
    assert len((tmp_path / "o").read_text().splitlines()) == 2


def test_wrong_task_checkpoint_is_exit_3(runs_dir, tmp_path, capsys):
    from mlkit.core import checkpoint

    path = tmp_path / "other.pt"
    checkpoint.save(checkpoint.make("ner", {"arch": "x"}, {}), path)
    assert main(["toy", "eval", "--model", str(path)]) == 3
    assert "for task 'ner'" in capsys.readouterr().err


def test_interrupt_exits_130_and_resume_equals_an_uninterrupted_run(runs_dir, monkeypatch):
    common = ["--project", str(runs_dir), "--quiet", "--epochs", "5"]
    assert main(["toy", "train", *common, "--name", "full"]) == 0
    monkeypatch.setenv("MLKIT_TEST_INTERRUPT_EPOCH", "1")
    assert main(["toy", "train", *common, "--name", "cut"]) == 130
    monkeypatch.delenv("MLKIT_TEST_INTERRUPT_EPOCH")
    cut = runs_dir / "toy" / "cut"
    assert torch.load(cut / "weights" / "last.pt", weights_only=True)["epoch"] == 1
    assert main(["toy", "train", "--project", str(runs_dir), "--quiet", "--resume", "--name", "cut"]) == 0
    full = runs_dir / "toy" / "full"
    for name in ("last.pt", "best.pt"):
        a = torch.load(full / "weights" / name, weights_only=True)
        b = torch.load(cut / "weights" / name, weights_only=True)
        assert a["epoch"] == b["epoch"]
        for k in a["state_dict"]:
            assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert json.loads((full / "metrics.json").read_text()) == json.loads((cut / "metrics.json").read_text())
    assert (full / "results.csv").read_text() == (cut / "results.csv").read_text()


def test_same_seed_same_metrics_on_cpu(runs_dir, capsys):
    outs = []
    for _ in range(2):
        assert main(["toy", "train", "--project", str(runs_dir), "--quiet", "--json", "--device", "cpu"]) == 0
        outs.append(json.loads(capsys.readouterr().out)["metrics"])
    assert outs[0] == outs[1]


def test_no_progress_bars_when_stderr_is_not_a_terminal_and_quiet_is_silent(runs_dir):
    out = mlkit("toy", "train", "--project", str(runs_dir), "--epochs", "2")
    assert out.returncode == 0
    err = out.stderr.decode()
    assert "\x1b[" not in err  # no bars, no colours in a pipe
    assert "epoch 2/2" in err and out.stdout == b""  # people's text on stderr, nothing on stdout
    quiet = mlkit("toy", "train", "--project", str(runs_dir), "--epochs", "1", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr.decode().strip() == "" and quiet.stdout == b""


def test_a_bad_record_exits_3_while_stdin_is_still_open(runs_dir):
    """The reader thread waits on an open pipe when the run stops: the process must still exit cleanly (3)."""
    assert main(["toy", "train", "--project", str(runs_dir), "--quiet", "--epochs", "1"]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlkit", "toy", "predict", "--project", str(runs_dir), "--quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(),
    )  # fmt: skip
    proc.stdin.write(b"1,1\nnot a record\n")
    proc.stdin.flush()
    try:
        assert proc.wait(timeout=60) == 3, proc.stderr.read().decode()[-2000:]
    finally:
        proc.stdin.close()
    assert len(proc.stdout.read().decode().splitlines()) == 1
