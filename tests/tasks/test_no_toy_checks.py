"""No code outside the toy task and the toy package decides behaviour by comparing with "toy".

Behaviour that depends on the problem source is a task capability (``sppd.tasks``), and behaviour
that depends on the toy PRM is a PRM-registry fact (``sppd.prm.registry.trained_in_run``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import sppd

ROOT = Path(sppd.__file__).parent


def _allowed(path: Path) -> bool:
    rel = path.relative_to(ROOT)
    return rel.parts[0] == "toy" or (rel.parts[0] == "tasks" and rel.name.startswith("toy"))


def _toy_strings(node: ast.AST) -> list[str]:
    """String constants starting with "toy" in a comparison operand (tuples/lists/sets included)."""
    elts = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value[:3] == "toy"]


def toy_checks(source: str) -> list[int]:
    """Line numbers of ``x == "toy"``, ``x in ("toy", ...)`` and ``x.startswith("toy")``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(_toy_strings(n) for n in [node.left, *node.comparators]):
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith")
            and any(_toy_strings(a) for a in node.args)
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_detector_finds_each_form():
    src = 'a == "toy"\nb != "toy-val"\nc in ("toy", "toy-val")\nd.startswith("toy")\ne = "toy"\nf == "mix"\n'
    assert toy_checks(src) == [1, 2, 3, 4]


def test_no_toy_string_checks_outside_the_toy_task():
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted(ROOT.rglob("*.py"))
        if not _allowed(path)
        for line in toy_checks(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "compare with a task capability or a PRM-registry fact instead: " + ", ".join(found)
