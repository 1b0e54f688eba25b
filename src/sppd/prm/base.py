"""The PRM protocol, score validation and the registry of PRM implementations.

SPPD stands in a process reward model's score of the state after each step for the optimal
value V*(s_t). Everything downstream (scoring stage, builders, diagnostics) only talks to
``ProcessRewardModel.score``: a question and its steps in, one number in [0, 1] per step out.

Implementations live in their own modules and are registered here as ``"module:factory"``
strings, imported only when ``build_prm`` picks them, so importing this module pulls in neither
torch nor transformers.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sppd.errors import SppdError
from sppd.prm import registry
from sppd.prm.registry import available_prms

if TYPE_CHECKING:  # only for annotations: this module must stay import-light
    import torch


class PRMScoreError(SppdError, ValueError):
    """A PRM returned scores that cannot be values: NaN, outside [0, 1], or the wrong count."""


@dataclass(frozen=True)
class PRMInput:
    """One trajectory prefix to score: the question and the steps taken so far (in order)."""

    question: str
    steps: list[str]

    def __post_init__(self) -> None:
        if not isinstance(self.question, str):
            raise TypeError(f"PRMInput.question must be a str, got {type(self.question).__name__}")
        if isinstance(self.steps, str) or not all(isinstance(s, str) for s in self.steps):
            raise TypeError("PRMInput.steps must be a list of str (one entry per step)")


@runtime_checkable
class ProcessRewardModel(Protocol):
    """Scores every step of every item: ``result[i][j]`` is the value after step j of item i.

    Each score lies in [0, 1] and ``len(result[i]) == len(items[i].steps)``; ``check_scores``
    enforces this contract and implementations are expected to call it before returning.
    """

    name: str

    def score(self, items: Sequence[PRMInput]) -> list[list[float]]: ...


@dataclass(frozen=True)
class EncodedInput:
    """An item laid out in a PRM's own token format.

    ``input_ids`` is the exact sequence the PRM was trained on; ``score_positions[j]`` is the
    index in it whose per-token score is step j's value (strictly increasing).
    """

    input_ids: list[int]
    score_positions: list[int]


@runtime_checkable
class TokenLevelPRM(ProcessRewardModel, Protocol):
    """A causal PRM that exposes its token layout and a per-token scoring forward.

    The scoring stage can use these two hooks to score many paths at once, for instance by
    packing a whole tree into one sequence with a tree-shaped attention mask and matching
    ``position_ids``; ``score`` is the plain path-by-path route.
    """

    pad_token_id: int

    def encode(self, item: PRMInput) -> EncodedInput: ...

    def token_scores(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Per-token scores in [0, 1], shape ``(B, T)``, for ``(B, T)`` ids/mask/positions.

        ``attention_mask`` may also be a 4-D ``(B, 1, T, T)`` mask, which HF decoders accept.
        """
        ...


def check_scores(scores: Sequence[Sequence[float]], items: Sequence[PRMInput], where: str) -> None:
    """Raise ``PRMScoreError`` naming ``where`` and the item if any score breaks the contract.

    ``where`` is the caller's context (the PRM's name, or a tree and node id in the scoring
    stage) so the message points at the culprit without a debugger.
    """
    if len(scores) != len(items):
        raise PRMScoreError(f"{where}: got scores for {len(scores)} items, expected {len(items)}")
    for i, (item_scores, item) in enumerate(zip(scores, items)):
        if len(item_scores) != len(item.steps):
            raise PRMScoreError(f"{where}: item {i}: got {len(item_scores)} scores for {len(item.steps)} steps")
        for j, value in enumerate(item_scores):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PRMScoreError(f"{where}: item {i}, step {j}: score {value!r} is not a number")
            if math.isnan(value):
                raise PRMScoreError(f"{where}: item {i}, step {j}: score is NaN")
            if not 0.0 <= value <= 1.0:
                raise PRMScoreError(f"{where}: item {i}, step {j}: score {value} is outside [0, 1]")


def build_prm(name: str, **kwargs: Any) -> ProcessRewardModel:
    """Import the factory registered as ``name`` and call it with ``kwargs``."""
    if name not in registry._PRMS:
        raise KeyError(f"unknown PRM {name!r}; available: {', '.join(available_prms())}")
    module_name, _, attr = registry._PRMS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"PRM {name!r} ({registry._PRMS[name]}) could not be imported: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise ImportError(f"PRM {name!r}: module {module_name!r} has no attribute {attr!r}")
    return factory(**kwargs)
