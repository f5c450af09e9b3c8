"""The README runs as written: every command of every fenced bash block, in order, in one scratch folder.

How a block is checked is said by an HTML comment (invisible on GitHub) on the line before its fence:
- no comment: each command runs with MLKIT_TINY=1 (each task's TINY settings win) and must exit 0;
- `<!-- readme: slow -->`: runs like that only under `-m slow` (real data from ../shared, long runs);
  by default its mlkit commands are parsed only;
- `<!-- readme: parse -->`: data or weights a user brings: mlkit commands are parsed by the real CLI (a
  renamed or removed flag fails), `python script.py --flags` must list each flag in its --help, other
  commands are skipped.
`../shared/data` in a command is the repository's shared data; without it those commands are parsed only.
The examples' pipeline.sh scripts run as written under `-m slow` (test_pipeline_sh).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA, subprocess_env

FENCE = re.compile(r"(?:<!--\s*readme:\s*(\w+)\s*-->\s*\n)?[ \t]*```bash\n(.*?)```", re.S)
SKIP = ("pip install", "pytest", "python -m pytest", "cd ")


def strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a '#' outside quotes, at the start or after a space)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """(mode, commands) for every fenced bash block; continuation lines joined, comments dropped."""
    out = []
    for m in FENCE.finditer(text):
        cmds, cur = [], ""
        for raw in m.group(2).splitlines():
            line = strip_comment(raw)
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            cur = (cur + line).strip()
            if cur:
                cmds.append(cur)
            cur = ""
        out.append((m.group(1) or "run", cmds))
    return out


def mlkit_argvs(cmd: str) -> list[list[str]]:
    """The argument lists of every `mlkit ...` in a shell command (pipes and redirections split off)."""
    found = []
    for part in re.split(r"\|\||&&|\||;", cmd):
        words = shlex.split(part)
        while words and re.match(r"^\w+=", words[0]):  # VAR=value prefixes
            words.pop(0)
        if "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == "mlkit":
            words = words[words.index("-m") + 1 :]  # torchrun ... -m mlkit <args>, python -m mlkit <args>
        if words and words[0] == "mlkit":
            args = []
            for w in words[1:]:
                if w in (">", "<", "2>", ">>"):
                    break
                args.append(w)
            found.append(args)
    return found


def parse_only(args: list[str]) -> None:
    """Parse argv with the real CLI without running it: unknown commands and flags raise."""
    import typer

    from mlkit.cli import build_app

    cmd = typer.main.get_command(build_app())
    ctx = cmd.make_context("mlkit", list(args))
    while hasattr(cmd, "resolve_command"):
        protected = getattr(ctx, "_protected_args", None)
        if protected is None:
            protected = getattr(ctx, "protected_args", [])
        rest = list(protected) + list(ctx.args)
        if not rest:
            break
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)


def check_script_flags(cmd: str) -> None:
    """`python path.py --flags`: the script exists and its --help lists every flag used."""
    words = shlex.split(cmd)
    words = [w for w in words if not re.match(r"^\w+=", w)]
    script = REPO / words[1]
    assert script.is_file(), f"{words[1]} does not exist"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                         env=subprocess_env(), cwd=REPO)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    for flag in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
        assert flag in out.stdout, f"{words[1]} has no flag {flag}"


def _check(cmd: str) -> None:
    if cmd.startswith("python ") and cmd.split()[1].endswith(".py"):
        check_script_flags(cmd)
        return
    for args in mlkit_argvs(cmd):
        parse_only(args)


def _commands(run_slow: bool) -> list[tuple[str, str]]:
    """(how, command) in README order: how is run, check or skip."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    have_shared = SHARED_DATA.is_dir()
    out = []
    for mode, cmds in blocks(text):
        for cmd in cmds:
            if cmd.startswith(SKIP):
                out.append(("skip", cmd))
            elif mode == "parse" or (mode == "slow" and not run_slow):
                out.append(("check", cmd))
            elif "../shared/data" in cmd and not have_shared:
                out.append(("check", cmd))
            elif mode in ("run", "slow"):
                out.append(("run", cmd.replace("../shared/data", str(SHARED_DATA))))
            else:
                raise AssertionError(f"unknown readme mode '{mode}'")
    return out


def _run_all(tmp_path: Path, run_slow: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain `mlkit ...` commands run in this process (no torch import per command); pipes go through bash."""
    from mlkit.cli import main

    env = subprocess_env(MLKIT_TINY="1", MLKIT_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLKIT_TINY", "1")
    monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "cache"))
    ran = 0
    for how, cmd in _commands(run_slow):
        if how == "check":
            _check(cmd)
            continue
        if how != "run":
            continue
        words = shlex.split(cmd)
        if words[0] == "mlkit" and not re.search(r"[|<>;&]", cmd):
            rc = main(words[1:])
            assert rc == 0, f"README command failed ({rc}): {cmd}"
        else:
            out = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], cwd=work, env=env, capture_output=True,
                                 text=True, timeout=900, stdin=subprocess.DEVNULL)  # fmt: skip
            assert out.returncode == 0, f"README command failed ({out.returncode}): {cmd}\n{out.stderr[-3000:]}"
        ran += 1
    assert ran > 0


def test_readme_commands_run_as_written(tmp_path, monkeypatch):
    _run_all(tmp_path, run_slow=False, monkeypatch=monkeypatch)


@pytest.mark.slow
def test_readme_commands_run_as_written_with_real_data(tmp_path, monkeypatch):
    _run_all(tmp_path, run_slow=True, monkeypatch=monkeypatch)


def test_a_renamed_flag_fails_the_check():
    with pytest.raises(Exception, match="No such option"):
        parse_only(["ner", "train", "--no-such-flag"])
    parse_only(["ner", "train", "--epochs", "2"])


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(p.parent.name for p in (REPO / "examples").glob("*/pipeline.sh")))
def test_pipeline_sh(task, tmp_path):
    env = subprocess_env(MLKIT_CACHE=str(tmp_path / "cache"), OUT=str(tmp_path / "out"))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # as written: `bash examples/<task>/pipeline.sh` from the repository root (scripts write under $OUT or a temp dir)
    out = subprocess.run(["bash", f"examples/{task}/pipeline.sh"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]


def test_every_registered_task_has_a_readme_section_and_table_row():
    from mlkit.core.registry import TASKS

    text = (REPO / "README.md").read_text(encoding="utf-8")
    for task in TASKS:
        assert f"\n### {task}:" in text, f"README.md has no '### {task}:' section"
        assert f"\n| `{task}` |" in text, f"README.md's task table has no row for {task}"
