"""The engine protocol: token-id prefixes in; steps (text, ids, log-probs, finish reason) out.

The tree search only ever talks to this protocol, so a faster backend (vLLM, SGLang) plugs in
through the registry without touching the tree code. Backends are registered as dotted paths
and imported only when chosen, so ``import sppd`` never imports an inference library.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class FinishReason(StrEnum):
    """Why generation of one step (or one whole completion) stopped."""

    DELIMITER = "delimiter"  # the step delimiter was produced: more steps may follow
    EOS = "eos"  # the model ended the sequence
    LENGTH = "length"  # the step/sequence token budget ran out


@dataclass(frozen=True)
class GenerationParams:
    """What to sample and when to stop; ``stop`` None generates whole completions."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: str | None = None  # a step ends at the first token whose text completes this string
    greedy: bool = False


@dataclass
class StepSample:
    """One generated continuation of a prefix.

    ``token_ids`` are exactly the generated tokens, including the delimiter or EOS token that
    ended it, so concatenating a path's steps reproduces the generated sequence. ``token_logps``
    are log-probs under the model's own (temperature-1, untruncated) distribution: that is
    pi_infer = pi_ref in the paper's selection score, independent of the sampling temperature.
    ``text`` is the decoded step without EOS and without the trailing delimiter.
    """

    token_ids: list[int]
    token_logps: list[float]
    text: str
    finish_reason: FinishReason

    @property
    def avg_logp(self) -> float:
        return sum(self.token_logps) / max(len(self.token_logps), 1)


@dataclass
class EngineStats:
    """Counters an engine keeps so stages can report tokens/s."""

    calls: int = 0
    sequences: int = 0
    generated_tokens: int = 0
    prompt_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """A policy that continues token prefixes."""

    stats: EngineStats

    def generate(
        self, prefixes: list[list[int]], n: int, params: GenerationParams, seed: int
    ) -> list[list[StepSample]]:
        """``n`` samples for each prefix (result[i][j] is sample j of prefix i).

        ``seed`` makes the call reproducible: the same prefixes, n, params and seed give the
        same samples.
        """
        ...


_ENGINES: dict[str, str] = {
    "hf": "sppd.sampling.hf_engine:HFEngine",
    "vllm": "sppd.sampling.vllm_engine:VLLMEngine",
}


def available_engines() -> list[str]:
    return sorted(_ENGINES)


def build_engine(name: str, **kwargs: Any) -> Engine:
    """Import and construct the engine registered as ``name``."""
    if name not in _ENGINES:
        raise KeyError(f"unknown engine {name!r}; available: {', '.join(available_engines())}")
    module_name, attr = _ENGINES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"engine {name!r} needs a package that is not installed: {exc}") from exc
    return getattr(module, attr)(**kwargs)
