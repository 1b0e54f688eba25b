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


def lead_length(text: str, stop: str | None) -> int:
    """Length of a step's lead: the whitespace and delimiters before its first other character.

    The shared step rule of every engine: a delimiter at the very start of a step (the model
    emitted ``"\\n\\n"`` and then the step) belongs to the step and does not end it; a step
    ends at the first delimiter that follows some other text.
    """
    i = 0
    while i < len(text):
        if stop and text.startswith(stop, i):
            i += len(stop)
        elif text[i].isspace():
            i += 1
        else:
            break
    return i


def find_step_end(text: str, stop: str | None) -> int:
    """Index of the delimiter that ends the step in ``text`` (the first one after the lead), or -1."""
    if not stop:
        return -1
    return text.find(stop, lead_length(text, stop))


def step_text(text: str, stop: str | None, reason: FinishReason) -> str:
    """A step's text: ``text`` without its lead, and without the ending delimiter and what follows."""
    end = find_step_end(text, stop) if reason == FinishReason.DELIMITER else -1
    body = text[lead_length(text, stop) : end if end >= 0 else len(text)]
    return body.strip()


def decode_step(
    tokenizer, token_ids: list[int], token_logps: list[float], reason: FinishReason, stop: str | None, eos_ids
) -> StepSample:
    """The ``StepSample`` of generated tokens: every engine builds its steps' text here."""
    text_ids = [t for t in token_ids if t not in eos_ids]
    text = tokenizer.decode(text_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return StepSample(
        token_ids=list(token_ids),
        token_logps=list(token_logps),
        text=step_text(text, stop, reason),
        finish_reason=reason,
    )


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


# engines that load the policy's weights themselves from its folder (given ``model_path``, not ``model``)
_OWN_WEIGHTS: set[str] = {"vllm"}


def register_engine(name: str, dotted_path: str, *, loads_weights: bool = False) -> None:
    """Register a backend as ``"module:attribute"``; imported only when built.

    It is built with ``tokenizer``, ``batch_size``, ``extra_eos_ids`` (end-of-turn ids to stop at
    like EOS) and either ``model`` (a loaded ``transformers`` model) or, with ``loads_weights``,
    ``model_path`` (the folder; the engine loads the weights itself).
    """
    _ENGINES[name] = dotted_path
    if loads_weights:
        _OWN_WEIGHTS.add(name)
    else:
        _OWN_WEIGHTS.discard(name)


def loads_own_weights(name: str) -> bool:
    """Whether engine ``name`` loads the policy itself, so no ``transformers`` copy is needed."""
    return name in _OWN_WEIGHTS


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
