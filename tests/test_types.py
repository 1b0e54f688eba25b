"""``sppd.types``: the closed choices live in one stdlib-only module, one class per concept."""

from __future__ import annotations

import ast
import dataclasses
import enum
import json
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import sppd
from sppd import types as sppd_types
from sppd.types import DType

PACKAGE = Path(sppd.__file__).parent


def _parsed_modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(PACKAGE)): ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}


def _definitions(kind: type) -> list[tuple[str, str]]:
    """``(module path, name)`` of every top-level or nested ``kind`` node (class or function) in the package."""
    return [
        (path, node.name)
        for path, tree in _parsed_modules().items()
        for node in ast.walk(tree)
        if isinstance(node, kind)
    ]


def test_importing_types_pulls_in_only_the_standard_library():
    code = (
        "import sys, json; before = set(sys.modules); import sppd.types; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    new = {name.split(".")[0] for name in json.loads(out)}
    assert "sppd" in new  # the probe saw the import happen
    assert new - {"sppd"} <= set(sys.stdlib_module_names), new - {"sppd"} - set(sys.stdlib_module_names)


def _config_enums(cls: type, seen: set[type] | None = None) -> set[type]:
    """Every Enum that a field of dataclass ``cls`` (recursively) is typed with."""
    seen = set() if seen is None else seen
    found: set[type] = set()
    for tp in typing.get_type_hints(cls).values():
        for arg in (tp, *typing.get_args(tp)):
            if isinstance(arg, type) and issubclass(arg, enum.Enum):
                found.add(arg)
            elif dataclasses.is_dataclass(arg) and arg not in seen:
                seen.add(arg)
                found |= _config_enums(arg, seen)
    return found


def test_every_config_enum_is_defined_in_types_and_every_enum_there_is_a_config_choice():
    from sppd.settings import RunConfig

    in_config = _config_enums(RunConfig)
    in_types = {v for v in vars(sppd_types).values() if isinstance(v, type) and issubclass(v, enum.Enum)}
    in_types.discard(enum.StrEnum)
    assert {c for c in in_config if c.__module__ != "sppd.types"} == set()
    assert in_types == in_config


# A concept, the pattern a class for it would be named by, and the one class allowed.
CONCEPTS = [
    ("dtype", r"d_?type", "DType"),
    ("margin mode", r"margin", "MarginMode"),
    ("sample score", r"sample_?score", "SampleScore"),
    ("mixed precision", r"precision", "MixedPrecision"),
    ("PRM label kind", r"label", "PRMLabel"),
    ("step delimiter", r"delimiter", "StepDelimiter"),
    ("objective", r"^objective$|objective_?(name|kind|mode)", "Objective"),
]


@pytest.mark.parametrize(("concept", "pattern", "expected"), CONCEPTS, ids=[c[0] for c in CONCEPTS])
def test_one_class_per_concept_across_the_package(concept, pattern, expected):
    classes = [(path, name) for path, name in _definitions(ast.ClassDef) if re.search(pattern, name, re.IGNORECASE)]
    assert classes == [("types.py", expected)], f"{concept}: {classes}"


@pytest.mark.parametrize(
    ("function", "module"),
    [("resolve_device", "runtime.py"), ("resolve_dtype", "runtime.py"), ("load_tokenizer", "modeling.py")],
)
def test_one_device_dtype_and_tokenizer_helper_across_the_package(function, module):
    defs = [path for path, name in _definitions(ast.FunctionDef) if name == function]
    assert defs == [module]


def test_no_dtype_spelling_table_outside_types():
    """Maps like ``{"bfloat16": torch.bfloat16}`` or ``{DType.BF16: "bfloat16"}`` are a second dtype
    definition; parse with ``DType`` and resolve with ``sppd.runtime.resolve_dtype``."""
    spellings = {"float32", "bfloat16", "float16", "fp32", "bf16", "fp16"}
    tables = []
    for path, tree in _parsed_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict) and path != "types.py":
                items = {k.value for k in (*node.keys, *node.values) if isinstance(k, ast.Constant)}
                if items & spellings:
                    tables.append((path, node.lineno))
    assert tables == []


def test_dtype_accepts_torch_spellings_as_aliases_but_lists_only_its_own():
    assert [DType(v) for v in ("float32", "bfloat16", "float16")] == [DType.FP32, DType.BF16, DType.FP16]
    assert DType("bf16") is DType.BF16 and [d.value for d in DType] == ["auto", "fp32", "bf16", "fp16"]
    with pytest.raises(ValueError):
        DType("float64")
