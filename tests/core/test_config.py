"""Config precedence, unknown keys and type checks."""

from __future__ import annotations

import pytest

from mlkit.core.config import load_defaults, parse_set, resolve
from mlkit.core.errors import UsageError

DEFAULTS = {"lr": 0.1, "epochs": 4, "name": "x", "flag": False, "model": {"width": 8, "act": "relu"}, "opt": None}


def test_precedence_defaults_file_set_flags(tmp_path):
    f1 = tmp_path / "a.yaml"
    f1.write_text("lr: 0.2\nepochs: 5\nmodel:\n  width: 16\n")
    f2 = tmp_path / "b.yaml"
    f2.write_text("epochs: 6\n")
    cfg = resolve(DEFAULTS, [f1, f2], ["epochs=7", "model.act=gelu"], {"model.act": "tanh"})
    assert cfg["lr"] == 0.2  # file beats default
    assert cfg["epochs"] == 7  # --set beats the later file, which beats the earlier one
    assert cfg["model"] == {"width": 16, "act": "tanh"}  # explicit flag beats --set
    assert cfg["name"] == "x"
    assert DEFAULTS["model"]["width"] == 8  # defaults untouched


def test_base_config_sits_between_defaults_and_files(tmp_path):
    cfg = resolve(DEFAULTS, [], ["lr=0.5"], None, base={"lr": 0.3, "epochs": 9, "retired_key": 1})
    assert cfg["lr"] == 0.5 and cfg["epochs"] == 9 and "retired_key" not in cfg


def test_set_values_parse_as_yaml():
    assert parse_set(["a=1", "b=0.5", "c=true", "d=[1, 2]", "e=hello", "f.g=null"]) == {
        "a": 1,
        "b": 0.5,
        "c": True,
        "d": [1, 2],
        "e": "hello",
        "f": {"g": None},
    }


def test_int_is_accepted_for_float_and_none_accepts_anything():
    cfg = resolve(DEFAULTS, [], ["lr=1", "opt=adam"])
    assert cfg["lr"] == 1.0 and isinstance(cfg["lr"], float) and cfg["opt"] == "adam"


@pytest.mark.parametrize(
    "item, message",
    [
        ("lrr=0.1", "Did you mean 'lr'"),
        ("model.widht=3", "Did you mean 'model.width'"),
        ("epochs=abc", "wants int"),
        ("flag=3", "wants bool"),
        ("epochs=1.5", "wants int"),
        ("model=3", "is a section"),
    ],
)
def test_bad_keys_and_types_are_usage_errors(item, message):
    with pytest.raises(UsageError) as err:
        resolve(DEFAULTS, [], [item])
    assert message in err.value.line()
    assert err.value.exit_code == 2


def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        resolve(DEFAULTS, [bad])
    with pytest.raises(UsageError, match="not found"):
        resolve(DEFAULTS, [tmp_path / "missing.yaml"])


def test_every_task_ships_a_commented_complete_default():
    from mlkit.core.config import default_text
    from mlkit.core.registry import task_table

    for name, module in task_table().items():
        cfg = load_defaults(module)
        for key in ("data", "arch", "epochs", "batch_size", "seed", "device", "deterministic"):
            assert key in cfg, f"{name}: config.yaml lacks '{key}'"
        assert "#" in default_text(module), f"{name}: config.yaml has no comments"


def test_every_preset_of_every_task_prints(capsys):
    """`mlkit <task> config --preset NAME` goes through the task's finalize: a preset naming a renamed or missing key
    fails here (exit 2), not in a user's train run."""
    from mlkit.cli import main
    from mlkit.core.registry import task_table

    for name, module in task_table().items():
        cfg = load_defaults(module)
        if "preset" not in cfg:
            continue
        for preset in (cfg.get("presets") or {"paper": None}):
            assert main([name, "config", "--preset", preset]) == 0, (name, preset, capsys.readouterr().err)
            out = capsys.readouterr().out
            assert f"preset: {preset}" in out and "presets:" not in out, (name, preset)
