"""Imports inside ``sppd`` run one way: base -> schema -> components -> stages -> command line.

Every module under ``src/sppd`` is parsed with ``ast`` (imports at module level and inside
functions, ``import x`` and ``from x import y``, relative imports resolved) and each import of
an ``sppd`` module is checked against the graph below:

* a layer may import the layers below it, never one above (a component never imports
  ``sppd.stages`` or ``sppd.cli``; base modules import no component and not the schema);
* inside the base, schema, stage and entry layers imports are free; between components only the
  edges in ``COMPONENT_EDGES`` are allowed, and that graph has no cycle (``data`` may use
  ``packing``; ``train`` may use ``data``, but never the other way round).

A new module must be given a layer here: an unmapped module fails the test.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sppd

SRC = Path(sppd.__file__).resolve().parent

# layer -> the modules/packages in it; a name covers its submodules. Longest match wins, so
# ``sppd.toy.config`` (the toy settings the schema holds) sits below the rest of ``sppd.toy``.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": (
        "sppd",
        "sppd.types",
        "sppd.records",
        "sppd.io",
        "sppd.runtime",
        "sppd.config",
        "sppd.digest",
        "sppd.errors",
        "sppd.locking",
    ),
    "schema": ("sppd.settings", "sppd.layout", "sppd.toy.config", "sppd.prm.registry"),
    "component": (
        "sppd.sampling",
        "sppd.prm",
        "sppd.data",
        "sppd.losses",
        "sppd.packing",
        "sppd.train",
        "sppd.eval",
        "sppd.toy",
        "sppd.tasks",
        "sppd.prompting",
        "sppd.judging",
        "sppd.modeling",
        "sppd.reporting",
        "sppd.report_rows",
        "sppd.report_diagnostics",
        "sppd.report_acceptance",
    ),
    "stage": ("sppd.stages",),
    "entry": ("sppd.cli", "sppd.__main__"),
}
ORDER = ("base", "schema", "component", "stage", "entry")
# component -> the components it may import (besides itself, the base and the schema)
COMPONENT_EDGES: dict[str, frozenset[str]] = {
    "sppd.data": frozenset({"sppd.packing", "sppd.prompting"}),
    "sppd.train": frozenset({"sppd.data", "sppd.losses", "sppd.packing"}),
    "sppd.prm": frozenset(
        {"sppd.packing", "sppd.sampling", "sppd.toy", "sppd.modeling", "sppd.train"}
    ),  # MC, toy PRM, tokenizer
    "sppd.eval": frozenset({"sppd.prm", "sppd.sampling"}),  # ORM-scored sampling methods
    "sppd.judging": frozenset({"sppd.eval", "sppd.toy"}),  # answer checkers
    "sppd.toy": frozenset({"sppd.train"}),  # pretraining runs on the one optimizer-step core
    # the typed rows the pipeline writes, the report's sections, the t-interval over seeds
    "sppd.reporting": frozenset(
        {"sppd.report_rows", "sppd.report_diagnostics", "sppd.report_acceptance", "sppd.eval"}
    ),
    "sppd.report_diagnostics": frozenset({"sppd.report_rows", "sppd.tasks"}),  # the task's step checker
    "sppd.report_acceptance": frozenset({"sppd.report_rows"}),
    "sppd.tasks": frozenset({"sppd.eval", "sppd.judging", "sppd.toy"}),  # loaders, judges, toy problems
}
# layers whose members may import each other freely
FREE_WITHIN = {"base", "schema", "stage", "entry"}


def unit_of(name: str) -> tuple[str, str]:
    """``(layer, unit)`` of a dotted name (module, or module.attribute); unit = the LAYERS entry."""
    parts = name.split(".")
    for n in range(len(parts), 1, -1):
        prefix = ".".join(parts[:n])
        for layer, members in LAYERS.items():
            if prefix in members:
                return layer, prefix
    if name == "sppd":
        return "base", "sppd"
    raise KeyError(f"{name} has no layer in tests/test_import_graph.py LAYERS")


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(module: str, source: str, is_package: bool) -> list[tuple[str, int]]:
    """``(imported sppd name, line)`` for every import in ``source``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: strip (level - 1) packages off this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from sppd import runtime`` imports the module sppd.runtime; ``from x import f``
            # an attribute of x, which unit_of maps to x.
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name == "sppd" or name.startswith("sppd.")]


def edge_problem(src: str, dst: str) -> str | None:
    """Why ``src`` may not import ``dst`` (None when it may)."""
    (src_layer, src_unit), (dst_layer, dst_unit) = unit_of(src), unit_of(dst)
    if src_unit == dst_unit:
        return None
    up = ORDER.index(dst_layer) - ORDER.index(src_layer)
    if up > 0:
        return f"a {src_layer} module imports the {dst_layer} layer above it"
    if up < 0 or src_layer in FREE_WITHIN:
        return None
    if dst_unit not in COMPONENT_EDGES.get(src_unit, frozenset()):
        return f"component {src_unit} may not import component {dst_unit} (see COMPONENT_EDGES)"
    return None


def all_imports() -> list[tuple[str, str, str]]:
    """``(module, imported name, file:line)`` over the whole package."""
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        for name, line in imports_of(module, path.read_text(encoding="utf-8"), path.name == "__init__.py"):
            edges.append((module, name, f"{path.relative_to(SRC.parent)}:{line}"))
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as a node list, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_every_module_has_a_layer():
    missing = []
    for path in SRC.rglob("*.py"):
        try:
            unit_of(module_name(path))
        except KeyError as exc:
            missing.append(str(exc))
    assert not missing, "\n".join(missing)


def test_imports_follow_the_layers():
    problems = [
        f"{src} -> {dst} ({where}): {why}"
        for src, dst, where in all_imports()
        if (why := edge_problem(src, dst)) is not None
    ]
    assert not problems, "imports against the allowed graph:\n" + "\n".join(problems)


def test_no_import_cycle_between_units():
    graph: dict[str, set[str]] = {}
    for src, dst, _ in all_imports():
        a, b = unit_of(src)[1], unit_of(dst)[1]
        if a != b:
            graph.setdefault(a, set()).add(b)
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)
    allowed = {k: set(v) for k, v in COMPONENT_EDGES.items()}
    assert find_cycle(allowed) is None
    components = set(LAYERS["component"])
    assert all(k in components and v <= components for k, v in COMPONENT_EDGES.items())


@pytest.mark.parametrize(
    ("module", "is_package", "source", "edge"),
    [
        # a component importing a stage, inside a function
        (
            "sppd.prm.fake",
            False,
            "def f():\n    from sppd.stages import common\n",
            "sppd.prm.fake -> sppd.stages.common",
        ),
        # relative import from data up into train (data -> train is not an allowed edge)
        ("sppd.data.fake", False, "from ..train.loop import run\n", "sppd.data.fake -> sppd.train.loop.run"),
        # relative import in a package __init__
        ("sppd.toy", True, "from ..stages import score\n", "sppd.toy -> sppd.stages.score"),
        # a base module importing the schema and the command line
        ("sppd.runtime", False, "import sppd.settings\n", "sppd.runtime -> sppd.settings"),
        ("sppd.records", False, "from sppd import cli\n", "sppd.records -> sppd.cli"),
        # a stage importing the command line
        ("sppd.stages.fake", False, "import sppd.cli as c\n", "sppd.stages.fake -> sppd.cli"),
        # the schema importing a component (the toy config may not pull in torch-heavy toy code)
        (
            "sppd.toy.config",
            False,
            "from sppd.toy.model import build_toy_model\n",
            "sppd.toy.config -> sppd.toy.model.build_toy_model",
        ),
    ],
)
def test_the_checker_catches_edges_against_the_graph(module, is_package, source, edge):
    bad = [f"{module} -> {dst}" for dst, _ in imports_of(module, source, is_package) if edge_problem(module, dst)]
    assert bad == [edge]


def test_find_cycle_names_the_loop():
    assert find_cycle({"sppd.data": {"sppd.packing"}, "sppd.train": {"sppd.data"}}) is None
    graph = {"sppd.data": {"sppd.train"}, "sppd.train": {"sppd.losses", "sppd.data"}, "sppd.losses": set()}
    assert find_cycle(graph) == ["sppd.data", "sppd.train", "sppd.data"]


def test_allowed_edges_pass_the_checker():
    assert edge_problem("sppd.train.objectives", "sppd.data.collate.collate_pairs") is None
    assert edge_problem("sppd.stages.train", "sppd.train.loop") is None
    assert edge_problem("sppd.settings", "sppd.toy.config.ToyPretrainConfig") is None
    assert edge_problem("sppd.toy.world", "sppd.toy.config.ToyWorldConfig") is None


def test_config_schema_and_cli_import_no_torch():
    """``sppd show-config`` (schema, loader, command line) stays torch-free, so it is quick."""
    code = (
        "import sys\n"
        "import sppd.settings, sppd.config, sppd.cli, sppd.runtime, sppd.io, sppd.records\n"
        "assert sppd.cli.main(['show-config', '-c', 'toy']) == 0\n"
        "print(sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "run_dir:" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"
