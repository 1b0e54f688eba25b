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

from sppd.errors import SppdError


class ConfigError(SppdError, ValueError):
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


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no ``!!python/...`` tags) that refuses a key given twice in one mapping:
    YAML keeps the last, so a duplicated ``lr:`` would silently override the first."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str) -> Any:
    """YAML ``text`` parsed safely and strictly; a syntax error, a python tag or a duplicate key
    raises ``ConfigError("<where>:<line>: <problem>")``."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"{where}{line}: {problem.splitlines()[0] if problem else 'invalid YAML'}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({str(exc).splitlines()[0]})") from None


def read_yaml_file(path: Path) -> Any:
    """A YAML file parsed by ``parse_yaml``; bytes that are not UTF-8 are named by line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None
    return parse_yaml(text, str(path))


def load_yaml_chain(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, merging it over the config named by its ``inherit`` key."""
    path = resolve_config_path(name_or_path)
    if str(path) in _seen:
        raise ConfigError(f"config inheritance cycle: {' -> '.join(_seen + (str(path),))}")
    data = read_yaml_file(path) or {}
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
        value = parse_yaml(raw, f"override {item!r}") if raw != "" else ""
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
        obj = cls(**kwargs)
    except (ValueError, TypeError) as exc:  # a dataclass's own __post_init__ validation
        raise ConfigError(f"config section '{prefix or '<root>'}': {exc}") from None
    check_values(obj, prefix)
    return obj


# --- value constraints ------------------------------------------------------------------------
# A config dataclass declares its ranges next to its fields as ``CHECKS: ClassVar = {field: rule}``;
# ``build`` applies them, so a value that cannot work (a batch of 0, a negative learning rate) fails
# when the config loads, naming the key, not hours later or never. A rule returns what is wrong
# with a value, or None; ``None`` values (an unset Optional) are not checked.


def at_least(low: float):
    """A rule: the value is >= ``low``."""
    return lambda v: None if v >= low else f"must be >= {low}"


def above(low: float):
    """A rule: the value is > ``low``."""
    return lambda v: None if v > low else f"must be > {low}"


def within(low: float, high: float, low_open: bool = False, high_open: bool = False):
    """A rule: ``low <= value <= high``; an open end excludes its bound."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"

    def rule(v):
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        return None if ok else f"must be in {left}{low}, {high}{right}"

    return rule


def each(rule):
    """A rule for a list: every element passes ``rule``."""

    def check(values):
        for i, v in enumerate(values):
            if (problem := rule(v)) is not None:
                return f"element {i} ({v!r}) {problem}"
        return None

    return check


def check_values(obj: Any, prefix: str = "") -> None:
    """Apply ``type(obj).CHECKS``; the first broken rule raises ``ConfigError`` naming its key."""
    for name, rule in getattr(type(obj), "CHECKS", {}).items():
        value = getattr(obj, name)
        if value is None:
            continue
        problem = rule(value)
        if problem is not None:
            where = f"{prefix}.{name}" if prefix else name
            raise ConfigError(f"config key '{where}': {value!r} {problem}")


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
