"""PRM protocol pieces: input validation, score checking, and the lazy registry."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sppd.prm import registry as prm_registry
from sppd.prm.base import (
    PRMInput,
    PRMScoreError,
    ProcessRewardModel,
    build_prm,
    check_scores,
)
from sppd.prm.registry import available_prms, register_prm

ITEMS = [PRMInput("q0", ["a"]), PRMInput("q1", ["a", "b", "c"])]


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry so tests can register names freely."""
    monkeypatch.setattr(prm_registry, "_PRMS", dict(prm_registry._PRMS))
    return prm_registry._PRMS


class ConstantPRM:
    """A registrable PRM used to exercise build_prm end to end."""

    name = "constant"

    def __init__(self, value: float = 0.5) -> None:
        self.value = value

    def score(self, items):
        return [[self.value] * len(item.steps) for item in items]


def build_constant_prm(**kwargs):
    return ConstantPRM(**kwargs)


def test_prm_input_rejects_a_string_as_steps():
    with pytest.raises(TypeError, match="list of str"):
        PRMInput("q", "step one")
    with pytest.raises(TypeError, match="question"):
        PRMInput(3, ["a"])


def test_check_scores_accepts_valid_scores_including_the_bounds():
    check_scores([[0.0], [1.0, 0.25, 0.5]], ITEMS, where="test")


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        ([[0.5], [0.5, float("nan"), 0.5]], r"where-ctx: item 1, step 1: score is NaN"),
        ([[0.5], [0.5, 0.5, 1.5]], r"where-ctx: item 1, step 2: score 1.5 is outside \[0, 1\]"),
        ([[-0.1], [0.5, 0.5, 0.5]], r"where-ctx: item 0, step 0: score -0.1 is outside"),
        ([[0.5], [0.5, 0.5]], r"where-ctx: item 1: got 2 scores for 3 steps"),
        ([[0.5]], r"where-ctx: got scores for 1 items, expected 2"),
        ([[0.5], [0.5, "0.5", 0.5]], r"where-ctx: item 1, step 1: score '0.5' is not a number"),
    ],
)
def test_check_scores_names_the_item_and_the_problem(scores, message):
    with pytest.raises(PRMScoreError, match=message):
        check_scores(scores, ITEMS, where="where-ctx")


def test_builtin_names_are_registered():
    names = set(available_prms())
    assert {"skywork", "qwen25-math-prm", "math-shepherd", "rlhflow"} <= names
    assert {"toy", "oracle", "mc"} <= names
    assert prm_registry._PRMS["toy"] == "sppd.prm.toy:build_toy_prm"
    assert prm_registry._PRMS["oracle"] == "sppd.prm.oracle:build_oracle_prm"
    assert prm_registry._PRMS["mc"] == "sppd.prm.mc:build_mc_prm"


def test_unknown_name_lists_the_available_ones(registry):
    with pytest.raises(KeyError, match="unknown PRM 'nope'; available: .*math-shepherd.*skywork"):
        build_prm("nope")


def test_registered_factory_is_built_with_kwargs(registry):
    register_prm("constant", f"{__name__}:build_constant_prm")
    prm = build_prm("constant", value=0.25)
    assert isinstance(prm, ProcessRewardModel)
    assert prm.score(ITEMS) == [[0.25], [0.25, 0.25, 0.25]]


def test_registration_does_not_import_and_a_broken_module_fails_only_when_built(registry):
    register_prm("ghost", "sppd_no_such_module_xyz:build")
    assert "ghost" in available_prms()
    assert "sppd_no_such_module_xyz" not in sys.modules
    with pytest.raises(ImportError, match="PRM 'ghost'.*could not be imported"):
        build_prm("ghost")


def test_missing_factory_attribute_is_named(registry):
    register_prm("noattr", f"{__name__}:no_such_factory")
    with pytest.raises(ImportError, match="has no attribute 'no_such_factory'"):
        build_prm("noattr")


def test_reregistering_a_name_needs_replace(registry):
    register_prm("skywork", "sppd.prm.skywork:build_skywork_prm")  # same path: fine
    with pytest.raises(ValueError, match="already registered"):
        register_prm("skywork", "elsewhere:build")
    register_prm("skywork", "elsewhere:build", replace=True)
    assert registry["skywork"] == "elsewhere:build"
    with pytest.raises(ValueError, match="module:factory"):
        register_prm("bad", "no_colon")


def test_importing_base_pulls_in_no_torch_and_no_adapter():
    code = textwrap.dedent(
        """
        import sys
        import sppd.prm.base
        heavy = [m for m in ("torch", "transformers", "sppd.prm.skywork") if m in sys.modules]
        print(heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
