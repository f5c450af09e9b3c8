"""ner input hardening: malformed files (exit 3, one line), split discovery, label maps, presets, streaming."""

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
from mlkit.core import checkpoint
from mlkit.core.config import load_defaults
from mlkit.tasks.ner.corpus import find_splits, load_corpus
from mlkit.tasks.ner.decode import build_model
from mlkit.tasks.ner.vocab import build_vocab

ROWS = [
    (list("张三在北京读书"), ["B-PER", "E-PER", "O", "B-LOC", "E-LOC", "O", "O"]),
    (list("李四去了上海"), ["B-PER", "E-PER", "O", "O", "B-LOC", "E-LOC"]),
    (list("王五在清华大学"), ["B-PER", "E-PER", "O", "B-ORG", "M-ORG", "M-ORG", "E-ORG"]),
]
GOOD = "".join("".join(f"{c} {t}\n" for c, t in zip(s, tags)) + "\n" for s, tags in ROWS)
CHAR = ["--arch", "char", "--epochs", "1", "--set", "model.hidden=8", "--set", "threads=1"]


def _folder(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (root / name).write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return root


def _one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ")
    return lines[0]


# --- 1. malformed files: exit 3, one stderr line naming file and line, files unchanged ---
BAD = {
    "non_utf8": (GOOD.encode() + "李 O\n".encode() + b"\xff\xfe O\n", 25),
    "nul": (GOOD + "张\x00 O\n", 24),
    "escape_char": (GOOD + "张 O\x1b\n", 24),
    "lone_cr": (GOOD + "张\r O\n", 24),
    "bom_inside": (GOOD + "\ufeff张 O\n", 24),
    "three_columns": (GOOD + "张 O O\n", 24),
    "one_column": (GOOD + "张\n", 24),
    "multi_char_token": (GOOD + "张三 B-PER\n", 24),
    "tag_outside_scheme": (GOOD + "张 Q-NAME\n", 24),
    "bad_tag": (GOOD + "张 PER\n", 24),
    "mixed_schemes": (GOOD + "张 B-PER\n三 I-PER\n", 25),
    "empty_file": (b"", None),
    "blank_lines_only": ("\n\n  \n\t\n", None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_train_file_is_exit_3_with_file_and_line(case, runs_dir, tmp_path, capsys):
    body, line = BAD[case]
    data = _folder(tmp_path / "d", {"train.char.bmes": body, "test.char.bmes": GOOD})
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    assert main(["ner", "train", "--data", str(data), *CHAR, "--project", str(runs_dir), "--quiet"]) == 3
    msg = _one_error_line(capsys.readouterr().err)
    assert "train.char.bmes" in msg and (line is None or f"line {line}" in msg), msg
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert not (runs_dir / "ner").exists() or not any((runs_dir / "ner").iterdir())


def test_bad_dev_file_and_bad_lexicon_are_named(runs_dir, tmp_path, capsys):
    data = _folder(tmp_path / "d", {"train.char.bmes": GOOD, "dev.char.bmes": GOOD + "x Q-X\n"})
    assert main(["ner", "train", "--data", str(data), *CHAR, "--project", str(runs_dir), "--quiet"]) == 3
    assert "dev.char.bmes line 24" in _one_error_line(capsys.readouterr().err)
    lex = tmp_path / "lex.txt"
    lex.write_bytes("北京\n".encode() + b"\xff\n")
    data = _folder(tmp_path / "ok", {f"{s}.char.bmes": GOOD for s in ("train", "dev", "test")})
    args = ["ner", "train", "--data", str(data), "--lexicon", str(lex), "--arch", "lattice"]
    assert main([*args, "--project", str(runs_dir), "--quiet"]) == 3
    assert "lex.txt line 2" in _one_error_line(capsys.readouterr().err)


def test_bom_and_crlf_are_accepted(runs_dir, tmp_path, capsys):
    body = ("\ufeff" + GOOD).replace("\n", "\r\n").encode("utf-8")
    data = _folder(tmp_path / "d", {"train.char.bmes": body, "test.char.bmes": body})
    corpus = load_corpus(data, "auto", 0.34, 0)
    assert corpus["test"][0] == ROWS[0]  # the first character is kept, no U+FEFF or \r anywhere
    assert main(["ner", "train", "--data", str(data), *CHAR, "--project", str(runs_dir), "--quiet"]) == 0
    chars = checkpoint.load(runs_dir / "ner" / "train" / "weights" / "best.pt", "ner")["extra"]["chars"]
    assert "张" in chars and not any("\ufeff" in c or "\r" in c for c in chars)
    assert (data / "train.char.bmes").read_bytes() == body


# --- 5-7. split discovery, eval on test-only data, label maps ---
def _model(path: Path, rows=ROWS, arch: str = "char") -> Path:
    """A small untrained checkpoint whose labels come from `rows` (no training needed to test eval's input)."""
    cfg = load_defaults("mlkit.tasks.ner")
    cfg.update(arch=arch, data=None)
    cfg["model"].update(hidden=8, char_dim=8, word_dim=8)
    vocab = build_vocab(arch, [c for c, _ in rows], [t for _, t in rows], ["北京", "上海", "清华大学"],
                        None, None, None, True)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(arch, vocab, cfg["model"])
    checkpoint.save(checkpoint.make("ner", cfg, model.state_dict(), extra=vocab.extra()), path)
    return path


def test_eval_reads_only_the_test_split(tmp_path, capsys):
    best = _model(tmp_path / "m.pt")
    only_test = _folder(tmp_path / "t", {"test.char.bmes": GOOD})
    assert main(["ner", "eval", "--model", str(best), "--data", str(only_test), "--json"]) == 0
    out = capsys.readouterr()
    assert 0 <= json.loads(out.out)["metrics"]["test/f1"] <= 1
    assert (
        f"read test {only_test / 'test.char.bmes'}" in out.err and "train" not in out.err.split("config")[0]
    )
    assert (
        main(["ner", "eval", "--model", str(best), "--data", str(only_test / "test.char.bmes"), "--quiet"])
        == 0
    )
    # a train file is never scored as a slice: no test split is an error
    only_train = _folder(tmp_path / "tr", {"train.char.bmes": GOOD})
    capsys.readouterr()
    assert main(["ner", "eval", "--model", str(best), "--data", str(only_train), "--quiet"]) == 3
    assert "no test split found" in _one_error_line(capsys.readouterr().err)


def test_several_variants_per_split_are_refused_unless_named(runs_dir, tmp_path, capsys):
    files = {f"{s}.{v}.bmes": GOOD for s in ("train", "dev", "test") for v in ("all", "ne", "nm")}
    data = _folder(tmp_path / "weibo", files)
    assert main(["ner", "train", "--data", str(data), *CHAR, "--project", str(runs_dir), "--quiet"]) == 3
    msg = _one_error_line(capsys.readouterr().err)
    assert "train.all.bmes, train.ne.bmes, train.nm.bmes" in msg and "--variant" in msg
    picked = find_splits(data, ("train", "dev", "test"), variant="ne")
    assert {k: p.name for k, p in picked.items()} == {s: f"{s}.ne.bmes" for s in ("train", "dev", "test")}
    named = find_splits(data, ("train", "dev", "test"), "train=train.all.bmes,test=test.nm.bmes")
    assert {k: p.name for k, p in named.items()} == {"train": "train.all.bmes", "test": "test.nm.bmes"}
    assert main(["ner", "train", "--data", str(data), "--variant", "ne", *CHAR, "--project", str(runs_dir),
                 "--quiet"]) == 0  # fmt: skip
    best = runs_dir / "ner" / "train" / "weights" / "best.pt"
    assert main(["ner", "eval", "--model", str(best), "--quiet"]) == 0  # the run's own folder and variant
    other = _model(tmp_path / "m.pt")  # trained on one file per split: nothing picks among the variants
    capsys.readouterr()
    assert main(["ner", "eval", "--model", str(other), "--data", str(data), "--quiet"]) == 3
    assert "several test files: test.all.bmes, test.ne.bmes, test.nm.bmes" in _one_error_line(
        capsys.readouterr().err
    )
    for pick in (["--variant", "nm"], ["--split-files", "test=test.nm.bmes"]):
        assert main(["ner", "eval", "--model", str(other), "--data", str(data), *pick, "--quiet"]) == 0
    assert main(["ner", "eval", "--model", str(best), "--split-files", "nope", "--quiet"]) == 2


def test_other_entity_types_need_a_label_map(tmp_path, capsys):
    best = _model(tmp_path / "m.pt")  # knows PER LOC ORG
    resume_like = [(list("高勇在北京大学读书"), ["B-NAME", "E-NAME", "O", "B-EDU", "M-EDU", "M-EDU", "E-EDU", "O", "O"]),
                   (list("李四去了上海"), ["B-NAME", "E-NAME", "O", "O", "B-LOC", "E-LOC"])]  # fmt: skip
    body = "".join("".join(f"{c} {t}\n" for c, t in zip(s, tags)) + "\n" for s, tags in resume_like)
    data = _folder(tmp_path / "resume", {"test.char.bmes": body})
    assert main(["ner", "eval", "--model", str(best), "--data", str(data), "--quiet"]) == 3
    msg = _one_error_line(capsys.readouterr().err)
    assert "EDU NAME" in msg and "--label-map" in msg
    good = tmp_path / "map.txt"
    good.write_text("# data model\nNAME PER\nEDU O   # dropped\n", encoding="utf-8")
    assert main(["ner", "eval", "--model", str(best), "--data", str(data), "--label-map", str(good), "--json",
                 "--quiet"]) == 0  # fmt: skip
    assert "test/PER/f1" in json.loads(capsys.readouterr().out)["metrics"]
    for text, what in (
        ("NAME PER extra\n", "line 1"),
        ("NAME PERSON\n", "PERSON"),
        ("NAME PER\nNAME O\n", "line 2"),
    ):
        bad = tmp_path / "bad.txt"
        bad.write_text(text, encoding="utf-8")
        assert main(["ner", "eval", "--model", str(best), "--data", str(data), "--label-map", str(bad),
                     "--quiet"]) == 3  # fmt: skip
        assert what in _one_error_line(capsys.readouterr().err)


# --- 4. presets ---
def test_paper_preset_restores_the_original_protocol(capsys):
    assert main(["ner", "train", "--preset", "paper", "--epochs", "3", "--check"]) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert (cfg["epochs"], cfg["patience"], cfg["model"]["hidden"]) == (3, 0, 200)
    assert main(["ner", "train", "--check"]) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert cfg["epochs"] < 100 and cfg["patience"] > 0
    assert main(["ner", "train", "--preset", "nope", "--check"]) == 2


# --- 3. streaming predict ---
def test_predict_answers_each_line_as_it_arrives(tmp_path):
    best = _model(tmp_path / "m.pt", arch="lattice")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlkit", "ner", "predict", "--model", str(best), "--quiet"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(),
    )  # fmt: skip
    try:
        proc.stdin.write("张三在北京大学读书\n".encode())
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())  # before stdin is closed: predict streams
        assert first["id"] == 1 and first["text"] == "张三在北京大学读书"
        time.sleep(1.0)  # like `(echo ...; sleep 5; echo ...)`: the process waits on the pipe
        t0 = time.perf_counter()
        proc.stdin.write("李四去了上海\n".encode())
        proc.stdin.flush()
        second = json.loads(proc.stdout.readline())
        assert time.perf_counter() - t0 < 1.0 and second["id"] == 2
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0 and proc.stdout.read() == b""
    finally:
        proc.kill()


# --- 2. Ctrl-C inside the compiled (parallel Numba) lattice and CRF kernels ---
@pytest.mark.slow
def test_ctrl_c_during_training_exits_130_with_the_resume_hint(runs_dir, tmp_path):
    import signal
    import threading

    from mlkit.tasks.ner.synth import write_corpus

    data = write_corpus(tmp_path / "synth", chars=200, lexicon_size=1500, train=1200, dev=60, test=60, seed=1)
    cmd = [
        sys.executable,
        "-m",
        "mlkit",
        "ner",
        "train",
        "--data",
        str(data),
        "--lexicon",
        str(data / "lexicon.txt"),
        "--epochs",
        "100",
        "--set",
        "patience=0",
        "--set",
        "threads=0",
        "--project",
        str(runs_dir),
        "--name",
        "int",
    ]
    for k, delay in enumerate((0.2, 1.1, 2.3)):  # the first run from scratch, then resumed runs
        proc = subprocess.Popen([*cmd, *(["--resume"] if k else [])], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=subprocess_env())  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda p=proc, out=lines: out.extend(p.stderr), daemon=True)
        reader.start()
        deadline = time.time() + 120
        while (
            not any(x.startswith("epoch ") for x in lines) and proc.poll() is None and time.time() < deadline
        ):
            time.sleep(0.05)  # an epoch is done (last.pt is written): the kernels are running the next one
        time.sleep(delay)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        reader.join(timeout=10)
        err = "".join(lines)
        assert "--resume" in err and "Traceback" not in err and "SystemError" not in err, err


# --- 4. the embedded default: `mlkit ner train` with no flags finds real entities in real text ---
HELD_OUT = {  # sentences written for this test (not from any corpus): entity -> type that must be found
    "张三在北京大学读书": {"张三": "PER", "北京大学": "ORG"},
    "李四去了上海": {"李四": "PER", "上海": "LOC"},
    "王小明毕业于清华大学，现在在深圳工作。": {"王小明": "PER", "清华大学": "ORG", "深圳": "LOC"},
    "刘芳的父母住在杭州": {"刘芳": "PER", "杭州": "LOC"},
    "陈伟明天从广州出发去成都。": {"陈伟": "PER", "广州": "LOC", "成都": "LOC"},
}


@pytest.mark.slow
def test_default_train_finds_real_entities(runs_dir, tmp_path, capsys):
    assert main(["ner", "train", "--project", str(runs_dir), "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["test/f1"] > 0.8  # held-out entity words
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(HELD_OUT) + "\n", encoding="utf-8")
    assert main(["ner", "predict", "--project", str(runs_dir), "--input", str(inp), "--quiet"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    found = {(e["text"], e["type"]) for r in rows for e in r["entities"]}
    want = {(w, t) for ents in HELD_OUT.values() for w, t in ents.items()}
    assert {("张三", "PER"), ("北京大学", "ORG")} <= found
    assert len(want & found) >= 0.8 * len(want), sorted(want - found)
