"""Task configs: packaged defaults < --config FILE < --set a.b=v < explicit flags, validated by key and type."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mlkit.core.errors import UsageError


def default_text(module: str) -> str:
    """The commented default YAML shipped inside a task package."""
    return resources.files(module).joinpath("config.yaml").read_text(encoding="utf-8")


def load_defaults(module: str) -> dict[str, Any]:
    """The parsed default config of a task package."""
    data = yaml.safe_load(default_text(module)) or {}
    if not isinstance(data, dict):
        raise UsageError("task default config is not a mapping", f"{module}/config.yaml")
    return data


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a user's YAML config file; a task: key, if any, is dropped."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"config file not found: {p}", None, "Pass an existing YAML file to --config.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UsageError("config file is not UTF-8 text", str(p), "Pass a YAML file to --config.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise UsageError("config file is not valid YAML", where, "Fix the YAML syntax.") from None
    if not isinstance(data, dict):
        raise UsageError("config file must hold a mapping of keys", str(p))
    data.pop("task", None)
    return data


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """Turn `a.b=v` strings into a nested dict; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set expects key=value, got '{item}'", None, "Write it as --set a.b=value.")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        set_dotted(out, key.strip(), value)
    return out


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    """Set `cfg[a][b] = value` for key `a.b`, creating levels as needed."""
    parts = key.split(".")
    node = cfg
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"cannot set '{key}': '{part}' is not a section")
    node[parts[-1]] = value


def get_dotted(cfg: Mapping[str, Any], key: str) -> Any:
    """Read `cfg[a][b]` for key `a.b`."""
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        return isinstance(value, (list, tuple))
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


def _tname(v: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "mapping"}.get(
        type(v), type(v).__name__
    )


def merge(defaults: Mapping[str, Any], override: Mapping[str, Any], prefix: str = "", source: str = "") -> dict:
    """Merge `override` into a copy of `defaults`, refusing unknown keys and wrong types (exit 2)."""
    out = copy.deepcopy(dict(defaults))
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in out:
            close = difflib.get_close_matches(str(key), [str(k) for k in out], n=1, cutoff=0.6)
            hint = f"Did you mean '{prefix}{close[0]}'?" if close else "Run `mlkit <task> config` to see the keys."
            raise UsageError(f"unknown config key '{dotted}'", source or None, hint)
        base = out[key]
        if isinstance(base, dict) and isinstance(value, dict):
            out[key] = merge(base, value, dotted + ".", source)
            continue
        if isinstance(base, dict) and value is not None:
            raise UsageError(f"config key '{dotted}' is a section, got {_tname(value)}", source or None)
        if not _type_ok(base, value):
            raise UsageError(
                f"config key '{dotted}' wants {_tname(base)}, got {_tname(value)} {value!r}",
                source or None,
                f"Give a {_tname(base)}, like the default {base!r}.",
            )
        if isinstance(base, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[key] = value
    return out


def resolve(
    defaults: Mapping[str, Any],
    files: Iterable[str | Path] = (),
    sets: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve a config: defaults (< base, e.g. a checkpoint's config) < files < --set < flags."""
    cfg = copy.deepcopy(dict(defaults))
    if base:
        cfg = merge(cfg, _known_only(cfg, base), source="checkpoint config")
    for f in files:
        cfg = merge(cfg, read_file(f), source=str(f))
    sets = list(sets)
    if sets:
        cfg = merge(cfg, parse_set(sets), source="--set")
    if flags:
        nested: dict[str, Any] = {}
        for key, value in flags.items():
            if value is not None:
                set_dotted(nested, key, value)
        cfg = merge(cfg, nested, source="flags")
    return cfg


def _known_only(defaults: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only keys the defaults know (an older checkpoint may hold retired keys)."""
    out: dict[str, Any] = {}
    for k, v in other.items():
        if k in defaults:
            if isinstance(defaults[k], dict) and isinstance(v, dict):
                out[k] = _known_only(defaults[k], v)
            else:
                out[k] = v
    return out


def dump(cfg: Mapping[str, Any]) -> str:
    """The config as YAML text."""
    return yaml.safe_dump(dict(cfg), sort_keys=False, allow_unicode=True)


def apply_preset(cfg: dict[str, Any], explicit: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A copy of cfg with `presets[preset]`'s values in every key the user did not set (`explicit`, dotted).

    The runner passes every key of a saved config as explicit (eval, predict, --resume), so a run's preset is
    applied once, when it starts. A preset naming a key the config does not have is a usage error.
    """
    name = cfg.get("preset")
    if not name:
        return cfg
    presets = cfg.get("presets") or {}
    if name not in presets:
        raise UsageError(f"unknown preset '{name}'", "--preset", f"Use one of: {', '.join(sorted(presets))}.")
    out = copy.deepcopy(cfg)

    def fill(node: dict[str, Any], values: Mapping[str, Any], where: str) -> None:
        for key, value in values.items():
            if key not in node:
                raise UsageError(f"preset '{name}' sets unknown key '{where}{key}'", "config.yaml presets")
            if isinstance(value, Mapping):
                fill(node[key], value, f"{where}{key}.")
            elif f"{where}{key}" not in explicit:
                node[key] = value

    fill(out, presets[name], "")
    return out
