"""Training records -> token ids with an exact prompt/completion boundary.

The prompt (``build_prompt_ids``: the same ids sampling and evaluation use) and the completion
are tokenized separately and their ids concatenated, so the loss mask starts exactly where the
model's own generation would start; re-tokenizing ``prompt + completion`` as one string could
merge tokens across the boundary.

EOS rule (the reason this module exists): a complete trajectory (SFT example, either side of a
sentence-level pair, a step that ends its solution) is followed by EOS; an intermediate step is
followed by the step delimiter and never by EOS, or the policy would learn to stop after one step.

Over-long examples follow ``train.overlong``: ``drop`` skips them, ``truncate`` cuts the end of the
completion (the prompt, and a step pair's prefix, are never cut; a prompt that alone fills
``max_length`` is dropped either way). Both are counted in :class:`TokenizeReport`, which the
train stage logs and writes to its summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from sppd.prompting import build_prompt_ids
from sppd.records import PreferencePair, SFTExample, StepPair
from sppd.settings import PromptConfig
from sppd.types import OverlongRule


@dataclass(frozen=True)
class TokenizeSettings:
    """Everything that decides the ids."""

    max_length: int  # longest prompt + completion, in tokens
    overlong: OverlongRule  # drop | truncate
    delimiter: str  # text that ends an intermediate step (``StepConfig.delimiter_text()``)
    prompt: PromptConfig  # prompt template / chat template choice


@dataclass(frozen=True)
class SFTTokens:
    """One SFT example: loss on ``completion_ids`` only (they end with EOS unless truncated)."""

    prompt_ids: list[int]
    completion_ids: list[int]

    @property
    def n_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass(frozen=True)
class PairTokens:
    """A preference pair sharing ``prompt_ids`` (for a step pair: prompt + prefix steps).

    ``chosen_value``/``rejected_value`` are V(s_w), V(s_l) of a step pair (0 when unknown).
    """

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    chosen_value: float = 0.0
    rejected_value: float = 0.0

    @property
    def n_tokens(self) -> int:
        """Tokens an unshared implementation processes: (prompt + chosen) + (prompt + rejected)."""
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


@dataclass
class TokenizeReport:
    """What happened to the records; ``kept`` of them are trained on."""

    records: int = 0
    kept: int = 0
    truncated: int = 0  # kept with a completion cut at max_length
    dropped_overlong: int = 0  # skipped: longer than max_length (drop rule) or prompt alone too long
    dropped_ids: list[str] = field(default_factory=list)  # ids of dropped records (first 20)

    def drop(self, record_id: str) -> None:
        self.dropped_overlong += 1
        if len(self.dropped_ids) < 20:
            self.dropped_ids.append(record_id)

    def summary(self) -> dict:
        return asdict(self)

    def describe(self, rule: OverlongRule, max_length: int) -> str:
        return (
            f"tokenize: {self.kept}/{self.records} examples kept; over max_length={max_length} "
            f"(rule {rule}): {self.dropped_overlong} dropped, {self.truncated} truncated"
        )


class _Encoder:
    """Tokenizer calls with the two pieces of state they need: a prompt cache and the EOS id."""

    def __init__(self, tokenizer, settings: TokenizeSettings):
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token_id; complete trajectories must end with EOS")
        self.tokenizer = tokenizer
        self.settings = settings
        self.eos_id = int(tokenizer.eos_token_id)
        self._prompts: dict[str, list[int]] = {}  # many step pairs share one question

    def prompt(self, question: str) -> list[int]:
        if question not in self._prompts:
            self._prompts[question] = build_prompt_ids(self.tokenizer, question, self.settings.prompt)
        return self._prompts[question]

    def text(self, text: str) -> list[int]:
        """Ids of ``text`` with no special tokens (no BOS in the middle of a sequence)."""
        if not text:
            return []
        return [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def complete(self, text: str) -> list[int]:
        """A text that ends the trajectory: its ids then EOS."""
        return self.text(text) + [self.eos_id]

    def step(self, text: str, terminal: bool) -> list[int]:
        """A step: + EOS when it ends the solution, + the step delimiter otherwise (never EOS)."""
        return self.complete(text) if terminal else self.text(text + self.settings.delimiter)


def fit_completions(
    prompt_len: int, completions: list[list[int]], settings: TokenizeSettings
) -> tuple[list[list[int]] | None, bool]:
    """Apply the over-long rule to completions that each follow a prompt of ``prompt_len`` tokens.

    Returns ``(completions or None if dropped, whether any was truncated)``. Each sequence
    ``prompt + completion`` must fit ``max_length``; the prompt is never cut and every completion
    keeps at least one token.
    """
    room = settings.max_length - prompt_len
    if room < 1:
        return None, False
    if all(len(c) <= room for c in completions):
        return completions, False
    if settings.overlong == OverlongRule.DROP:
        return None, False
    return [c[:room] for c in completions], True


def tokenize_sft(
    records: Iterable[SFTExample], tokenizer, settings: TokenizeSettings
) -> tuple[list[SFTTokens], TokenizeReport]:
    """SFT: prompt ids + completion ids + EOS (the completion is a complete trajectory)."""
    enc, report, out = _Encoder(tokenizer, settings), TokenizeReport(), []
    for rec in records:
        report.records += 1
        prompt_ids = enc.prompt(rec.prompt)
        fitted, cut = fit_completions(len(prompt_ids), [enc.complete(rec.completion)], settings)
        if fitted is None:
            report.drop(rec.id)
            continue
        report.truncated += cut
        out.append(SFTTokens(prompt_ids=prompt_ids, completion_ids=fitted[0]))
    report.kept = len(out)
    return out, report


def tokenize_preference_pairs(
    records: Iterable[PreferencePair], tokenizer, settings: TokenizeSettings
) -> tuple[list[PairTokens], TokenizeReport]:
    """Sentence-level DPO: both sides are complete trajectories, so both end with EOS."""
    enc, report, out = _Encoder(tokenizer, settings), TokenizeReport(), []
    for rec in records:
        report.records += 1
        prompt_ids = enc.prompt(rec.prompt)
        sides = [enc.complete(rec.chosen), enc.complete(rec.rejected)]
        fitted, cut = fit_completions(len(prompt_ids), sides, settings)
        if fitted is None:
            report.drop(rec.id)
            continue
        report.truncated += cut
        out.append(
            PairTokens(
                prompt_ids=prompt_ids,
                chosen_ids=fitted[0],
                rejected_ids=fitted[1],
                chosen_value=float(rec.chosen_value or 0.0),
                rejected_value=float(rec.rejected_value or 0.0),
            )
        )
    report.kept = len(out)
    return out, report


def tokenize_step_pairs(
    records: Iterable[StepPair], tokenizer, settings: TokenizeSettings
) -> tuple[list[PairTokens], TokenizeReport]:
    """Step pairs: prompt + prefix steps as the shared context; each step + delimiter, or + EOS
    when that step ends its trajectory (``chosen_terminal`` / ``rejected_terminal``)."""
    enc, report, out = _Encoder(tokenizer, settings), TokenizeReport(), []
    for rec in records:
        report.records += 1
        # Prompt and prefix tokenized apart: the prompt ids are exactly the sampler's.
        prompt_ids = enc.prompt(rec.prompt) + enc.text(rec.initial_reason_steps)
        sides = [enc.step(rec.chosen, rec.chosen_terminal), enc.step(rec.rejected, rec.rejected_terminal)]
        fitted, cut = fit_completions(len(prompt_ids), sides, settings)
        if fitted is None:
            report.drop(rec.id)
            continue
        report.truncated += cut
        out.append(
            PairTokens(
                prompt_ids=prompt_ids,
                chosen_ids=fitted[0],
                rejected_ids=fitted[1],
                chosen_value=float(rec.chosen_value),
                rejected_value=float(rec.rejected_value),
            )
        )
    report.kept = len(out)
    return out, report
