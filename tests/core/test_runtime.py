"""Runtime helpers that have no other home in the tests: the malloc setting used by the ner task."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "from mlkit.core.runtime import keep_freed_memory as k; print(k(), k())"


def _run(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLKIT_MALLOC"}
    if env_value is not None:
        env["MLKIT_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_keep_freed_memory_applies_once_and_can_be_turned_off():
    import ctypes.util

    glibc = "libc.so" in (ctypes.util.find_library("c") or "")
    assert _run(None) == ("True True" if glibc else "False False")
    assert _run("default") == "False False"
