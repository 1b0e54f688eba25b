"""Training records -> token ids with an exact prompt/completion boundary.

The prompt (``build_prompt_ids``: the same ids sampling and evaluation use) and the completion
are tokenized separately and their ids concatenated, so the loss mask starts exactly where the
model's own generation would start; re-tokenizing ``prompt + completion`` as one string could
merge tokens across the boundary.

Sampled ids first: a record that carries the token ids the sampler produced (builders fill them)
is trained on exactly those ids: the prompt ids as sampled, the steps' ids as sampled (an
intermediate step's ids end with its delimiter). Re-tokenizing the stripped step text would change
them on a BPE tokenizer (a leading space lost, another split), so the policy would be trained on
sequences it never produced. Records without ids (hand-made, or written by an older sppd) fall back
to text tokenization. :class:`TokenizeReport` counts both, and for records with ids how many the
text path would have tokenized differently (``retokenize_mismatch``).

End rule (the reason this module exists): a complete trajectory (SFT example, either side of a
sentence-level pair, a step that ends its solution) is followed by the end token; an intermediate
step is followed by the step delimiter and never by the end token, or the policy would learn to
stop after one step. The end token is one the engines stop at (``prompting.end_token_id``): EOS,
or under a chat template its end-of-turn token (``<|im_end|>`` on a ChatML base model).

Over-long examples follow ``train.overlong``: ``drop`` skips them, ``truncate`` cuts the end of the
completion (the prompt, and a step pair's prefix, are never cut; a prompt that alone fills
``max_length`` is dropped either way). Both are counted in :class:`TokenizeReport`, which the
train stage logs and writes to its summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from sppd.prompting import build_prompt_ids, end_token_id
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
    """One SFT example: loss on ``completion_ids`` only (they end with the end token unless truncated)."""

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


# a record's training input before the over-long rule: (prompt ids, completion ids of each side)
_Inputs = tuple[list[int], list[list[int]]]


@dataclass
class TokenizeReport:
    """What happened to the records; ``kept`` of them are trained on."""

    records: int = 0
    kept: int = 0
    truncated: int = 0  # kept with a completion cut at max_length
    dropped_overlong: int = 0  # skipped: longer than max_length (drop rule) or prompt alone too long
    dropped_ids: list[str] = field(default_factory=list)  # ids of dropped records (first 20)
    from_ids: int = 0  # records trained on their sampled token ids
    from_text: int = 0  # records without ids: their text was tokenized
    retokenize_mismatch: int = 0  # of ``from_ids``: records whose text would tokenize to other ids

    def drop(self, record_id: str) -> None:
        self.dropped_overlong += 1
        if len(self.dropped_ids) < 20:
            self.dropped_ids.append(record_id)

    def summary(self) -> dict:
        return asdict(self)

    def describe(self, rule: OverlongRule, max_length: int) -> str:
        return (
            f"tokenize: {self.kept}/{self.records} examples kept; over max_length={max_length} "
            f"(rule {rule}): {self.dropped_overlong} dropped, {self.truncated} truncated; "
            f"{self.from_ids} on their sampled token ids ({self.retokenize_mismatch} of them would re-tokenize "
            f"differently from text), {self.from_text} tokenized from text"
        )

    def choose(self, sampled: _Inputs | None, text: Callable[[], _Inputs]) -> _Inputs:
        """A record's inputs: the ``sampled`` ids when it has them (compared with the ``text``
        path's, for ``retokenize_mismatch``), else the text path's. Both are counted."""
        if sampled is None:
            self.from_text += 1
            return text()
        self.from_ids += 1
        self.retokenize_mismatch += sampled != text()
        return sampled


class _Encoder:
    """Tokenizer calls with the two pieces of state they need: a prompt cache and the end token id."""

    def __init__(self, tokenizer, settings: TokenizeSettings):
        end_id = end_token_id(tokenizer, settings.prompt)
        if end_id is None:
            raise ValueError("the tokenizer has no eos_token_id; complete trajectories must end with EOS")
        self.tokenizer = tokenizer
        self.settings = settings
        self.end_id = end_id
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
        """A text that ends the trajectory: its ids then the end token."""
        return self.text(text) + [self.end_id]

    def step(self, text: str, terminal: bool) -> list[int]:
        """A step: + the end token when it ends the solution, + the step delimiter otherwise."""
        return self.complete(text) if terminal else self.text(text + self.settings.delimiter)

    def sampled_prompt(self, prompt_ids: list[int] | None, question: str) -> list[int]:
        """The prompt ids as the sampler built them, or built now (the same ``build_prompt_ids``)."""
        return list(prompt_ids) if prompt_ids is not None else self.prompt(question)

    def sampled_step(self, ids: list[int], terminal: bool) -> list[int]:
        """Sampled step ids: + the end token when the step ends the solution; an intermediate
        step's ids already end with the delimiter it was sampled with."""
        return list(ids) + [self.end_id] if terminal else list(ids)


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


def _sft_inputs(enc: _Encoder, rec: SFTExample, report: TokenizeReport) -> _Inputs:
    sampled = None
    if rec.completion_ids is not None:
        sampled = (enc.sampled_prompt(rec.prompt_ids, rec.prompt), [enc.sampled_step(rec.completion_ids, True)])
    return report.choose(sampled, lambda: (enc.prompt(rec.prompt), [enc.complete(rec.completion)]))


def tokenize_sft(
    records: Iterable[SFTExample], tokenizer, settings: TokenizeSettings
) -> tuple[list[SFTTokens], TokenizeReport]:
    """SFT: prompt ids + completion ids + the end token (the completion is a complete trajectory)."""
    enc, report, out = _Encoder(tokenizer, settings), TokenizeReport(), []
    for rec in records:
        report.records += 1
        prompt_ids, completions = _sft_inputs(enc, rec, report)
        fitted, cut = fit_completions(len(prompt_ids), completions, settings)
        if fitted is None:
            report.drop(rec.id)
            continue
        report.truncated += cut
        out.append(SFTTokens(prompt_ids=prompt_ids, completion_ids=fitted[0]))
    report.kept = len(out)
    return out, report


def _pair_inputs(enc: _Encoder, rec: PreferencePair, report: TokenizeReport) -> _Inputs:
    sampled = None
    if rec.chosen_ids is not None and rec.rejected_ids is not None:
        sides = [enc.sampled_step(rec.chosen_ids, True), enc.sampled_step(rec.rejected_ids, True)]
        sampled = (enc.sampled_prompt(rec.prompt_ids, rec.prompt), sides)
    return report.choose(
        sampled, lambda: (enc.prompt(rec.prompt), [enc.complete(rec.chosen), enc.complete(rec.rejected)])
    )


def tokenize_preference_pairs(
    records: Iterable[PreferencePair], tokenizer, settings: TokenizeSettings
) -> tuple[list[PairTokens], TokenizeReport]:
    """Sentence-level DPO: both sides are complete trajectories, so both end with the end token."""
    enc, report, out = _Encoder(tokenizer, settings), TokenizeReport(), []
    for rec in records:
        report.records += 1
        prompt_ids, sides = _pair_inputs(enc, rec, report)
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


def _step_pair_inputs(enc: _Encoder, rec: StepPair, report: TokenizeReport) -> _Inputs:
    sampled = None
    if rec.prefix_ids is not None and rec.chosen_ids is not None and rec.rejected_ids is not None:
        sides = [
            enc.sampled_step(rec.chosen_ids, rec.chosen_terminal),
            enc.sampled_step(rec.rejected_ids, rec.rejected_terminal),
        ]
        sampled = (enc.sampled_prompt(rec.prompt_ids, rec.prompt) + list(rec.prefix_ids), sides)

    def text() -> _Inputs:
        # Prompt and prefix tokenized apart: the prompt ids are exactly the sampler's.
        sides = [enc.step(rec.chosen, rec.chosen_terminal), enc.step(rec.rejected, rec.rejected_terminal)]
        return enc.prompt(rec.prompt) + enc.text(rec.initial_reason_steps), sides

    return report.choose(sampled, text)


def tokenize_step_pairs(
    records: Iterable[StepPair], tokenizer, settings: TokenizeSettings
) -> tuple[list[PairTokens], TokenizeReport]:
    """Step pairs: prompt + prefix steps as the shared context; each step + delimiter, or + the end
    token when that step ends its trajectory (``chosen_terminal`` / ``rejected_terminal``)."""
    enc, report, out = _Encoder(tokenizer, settings), TokenizeReport(), []
    for rec in records:
        report.records += 1
        prompt_ids, sides = _step_pair_inputs(enc, rec, report)
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
