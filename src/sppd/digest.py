"""Which config values an output depends on, and their digest: the one staleness mechanism.

Every config field affects the output of the stages that read it, unless its declaration says
otherwise with ``runtime(...)`` (how fast, on how many threads or how verbosely a stage runs:
never what it writes) or ``location(...)`` (a folder a stage reads or writes: an input folder
counts by its own fingerprint, and where an output goes is not what it holds). Stage
fingerprints, the toy base model's cache key and the reference log-prob cache key all digest
the values this module selects, so declaring a field once keeps it out of all three.

Only stdlib and ``sppd.config`` are imported: the settings modules declare their fields with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from sppd import config as _config

AFFECTS_OUTPUT = "affects_output"  # field metadata key; absent means True
KIND = "kind"  # field metadata key: "runtime" or "location", for the declaration's readers


def _declared(kind: str, default: Any, default_factory: Any) -> Any:
    metadata = {AFFECTS_OUTPUT: False, KIND: kind}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def runtime(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that changes how a stage runs (threads, logging, checkpoint period, a
    forward's token budget), never what it outputs. Only for fields proven so: one that splits a
    random stream (an engine batch size) does change the output."""
    return _declared("runtime", default, default_factory)


def location(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field naming a folder a stage reads (it counts by its own fingerprint, passed
    as a fingerprint input) or writes (where the output goes is not what it holds)."""
    return _declared("location", default, default_factory)


def affects_output(f: dataclasses.Field) -> bool:
    return f.metadata.get(AFFECTS_OUTPUT, True)


def _nested(tp: Any) -> type | None:
    """The dataclass a field's type hint names, if any (``X`` or ``X | None``)."""
    for candidate in (tp, *typing.get_args(tp)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


@cache
def declared_fields(cls: type) -> dict[str, dataclasses.Field]:
    """Dotted key -> field, for every field of ``cls`` and of the dataclasses nested in it."""
    hints = typing.get_type_hints(cls)
    out: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(cls):
        out[f.name] = f
        inner = _nested(hints[f.name])
        if inner is not None:
            out.update({f"{f.name}.{key}": sub for key, sub in declared_fields(inner).items()})
    return out


@cache
def non_output_keys(cls: type) -> frozenset[str]:
    """Dotted keys of the fields of ``cls`` (nested ones too) declared not to affect output."""
    return frozenset(key for key, f in declared_fields(cls).items() if not affects_output(f))


def output_values(cfg: Any) -> Any:
    """``config.to_dict(cfg)`` without the fields declared not to affect output, nested ones too."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: output_values(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if affects_output(f)}
    return _config.to_dict(cfg)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of nested mappings (lists are values)."""
    if not isinstance(data, Mapping):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


@cache
def defaults(cls: type) -> dict[str, Any]:
    """Dotted key -> default value of every field of root config ``cls``."""
    return flatten(_config.to_dict(cls()))


def under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def select(cls: type, data: Mapping, keys: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The output-affecting values of plain config ``data`` (of root config ``cls``) under
    ``keys`` but not ``exclude``, values equal to their default left out.

    Leaving defaults out lets a new field whose default keeps the old behaviour leave every
    existing digest as it was.
    """
    keys, skip = tuple(keys), (*exclude, *non_output_keys(cls))
    base = defaults(cls)
    return {
        k: v
        for k, v in flatten(data).items()
        if under(k, keys) and not under(k, skip) and (k not in base or base[k] != v)
    }


def canonical_json(data: Any, separators: tuple[str, str] = (",", ":")) -> str:
    """One text per value: keys sorted, non-JSON values as ``str``."""
    return json.dumps(data, sort_keys=True, separators=separators, default=str)


def digest(data: Any, length: int = 16, separators: tuple[str, str] = (",", ":")) -> str:
    """Short sha256 hex digest of ``canonical_json(data)``."""
    return hashlib.sha256(canonical_json(data, separators).encode("utf-8")).hexdigest()[:length]
