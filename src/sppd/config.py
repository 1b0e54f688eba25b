"""Strict typed configs: nested dataclasses filled from YAML plus ``key.sub=value`` overrides.

Why not a free-form dict: a typo in a key (``sample.k=64`` for ``sample.K``) must fail loudly,
not silently run the default. Every error names the dotted key it is about.

Shipped configs live in ``sppd/configs/<name>.yaml`` and are found by name; a YAML file may
start from another with ``inherit: <name or path>``. Field types supported: bool, int, float,
str, Enum subclasses, Optional[...], list[...], dict[str, ...] and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from dataclasses import fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or a required value is missing."""


MISSING = "???"
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # a YAML value meaning "the user must set this"


def shipped_config_names() -> list[str]:
    """Names of the YAML configs shipped inside the package (``sppd/configs/*.yaml``)."""
    root = resources.files("sppd") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    """A file path as given, else the shipped config of that name."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        return path
    shipped = resources.files("sppd") / "configs" / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ConfigError(
            f"unknown config {name_or_path!r}: not a file and not a shipped config "
            f"(shipped: {', '.join(shipped_config_names())})"
        )
    return Path(str(shipped))


def load_yaml_chain(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, merging it over the config named by its ``inherit`` key."""
    path = resolve_config_path(name_or_path)
    if str(path) in _seen:
        raise ConfigError(f"config inheritance cycle: {' -> '.join(_seen + (str(path),))}")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    return deep_merge(load_yaml_chain(str(parent), _seen + (str(path),)), data)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``; nested mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings; values are parsed as YAML scalars (``1e-5``, ``true``, ``[1,2]``)."""
    out = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def build(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from mapping ``data``, strictly; errors name the dotted key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.init}
    for key in data:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"unknown config key '{where}' (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, f in known.items():
        where = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required config value '{where}'")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # a dataclass's own __post_init__ validation
        raise ConfigError(f"config section '{prefix or '<root>'}': {exc}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check/convert ``value`` to type ``tp``; ints are accepted for floats, nothing else is cast."""
    if value == MISSING:
        raise ConfigError(f"missing required config value '{where}' (set it with {where}=...)")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"config key '{where}': {value!r} fits none of {tp}")
    if is_dataclass(tp):
        return build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{where}': expected a list, got {value!r}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_coerce(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}': expected a mapping, got {value!r}")
        _, arg = typing.get_args(tp) or (str, Any)
        return {str(k): _coerce(arg, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise ConfigError(f"config key '{where}': {value!r} is not one of: {choices}") from None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        return float(value)  # PyYAML (YAML 1.1) reads "1e-5" as a string
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"config key '{where}': expected true/false, got {value!r}")
    if tp in (int, float, str) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"config key '{where}': expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def to_dict(cfg: Any) -> Any:
    """Plain YAML-able data from a config dataclass (enums become their values)."""
    if is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in fields(cfg)}
    if isinstance(cfg, enum.Enum):
        return cfg.value
    if isinstance(cfg, list):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def dump_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (what stages save as ``config.yaml``)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def load(cls: type, name_or_path: str, overrides: list[str] | None = None) -> Any:
    """Resolve a named or file config, apply overrides and build ``cls`` strictly."""
    data = apply_overrides(load_yaml_chain(name_or_path), list(overrides or []))
    return build(cls, data)
