"""Answer-selection methods over the N samples of one problem: Greedy, MAJ@N, ORM_VOTE@N,
ORM_MAX@N and pass@N (the "Evaluation" paragraph of the paper's experimental setup).

Pure functions: they take the samples already graded (``correct``) and scored by a PRM
(``step_scores``) and return which answer the method picks and whether it is right.

Rules shared by the voting methods (all deterministic):

* Answers are grouped when they are equivalent: same canonical string, or
  ``equivalent(representative, answer)`` holds (default :func:`answers_equivalent`). A group's
  representative is its first sample; samples join the earliest-created group that accepts them.
* A sample without an answer (``""`` after stripping) is in no group: it never wins a vote. Only
  when every sample lacks an answer does a method return ``""`` (and that is wrong).
* Ties (scores equal within a relative 1e-9) go to the group (or, for ORM_MAX, the sample)
  that appears first in sample order.
* A group is correct when its representative sample is correct.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sppd.eval.grading import answers_equivalent, canonical_answer
from sppd.types import SampleScore

Equivalence = Callable[[str, str], bool]
_TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Sample:
    """One sampled solution: its extracted answer, whether that answer is right, PRM step scores."""

    answer: str
    correct: bool
    step_scores: tuple[float, ...] = ()


@dataclass(frozen=True)
class MethodResult:
    """The answer a method picked for one problem and whether it is right."""

    answer: str
    correct: bool


def sample_score(step_scores: Sequence[float], how: SampleScore = SampleScore.LAST) -> float:
    """Reduce per-step PRM scores ``(S,)`` to one score for the sample."""
    if not step_scores:
        raise ValueError("a sample with an answer needs at least one PRM step score")
    if any(math.isnan(score) for score in step_scores):
        raise ValueError("PRM step score is NaN")
    if how is SampleScore.LAST:
        return float(step_scores[-1])
    if how is SampleScore.MIN:
        return float(min(step_scores))
    if how is SampleScore.MEAN:
        return float(sum(step_scores) / len(step_scores))
    raise ValueError(f"unknown SampleScore {how!r}")


def _ties(a: float, b: float) -> bool:
    """Scores this close are a tie (sums of floats differ in the last bits by summation order)."""
    return abs(a - b) <= _TIE_TOLERANCE * max(1.0, abs(a), abs(b))


def has_answer(sample: Sample) -> bool:
    return bool(sample.answer.strip())


def group_answers(answers: Sequence[str], equivalent: Equivalence | None = None) -> list[int]:
    """Group index per answer (``-1`` for a missing answer); groups are numbered by first use."""
    equivalent = equivalent or answers_equivalent
    representatives: list[str] = []
    keys: list[str] = []
    groups: list[int] = []
    for answer in answers:
        if not answer.strip():
            groups.append(-1)
            continue
        key = canonical_answer(answer)
        found = next((g for g, k in enumerate(keys) if k == key), None)
        if found is None:
            found = next((g for g, rep in enumerate(representatives) if equivalent(rep, answer)), None)
        if found is None:
            representatives.append(answer)
            keys.append(key)
            found = len(representatives) - 1
        groups.append(found)
    return groups


def _no_answer(samples: Sequence[Sample]) -> MethodResult:
    if not samples:
        raise ValueError("no samples")
    return MethodResult("", False)


def _pick_group(samples: Sequence[Sample], weights: Sequence[float], equivalent: Equivalence | None) -> MethodResult:
    """The group with the largest summed weight; ties -> the group first seen."""
    groups = group_answers([s.answer for s in samples], equivalent)
    totals: dict[int, float] = {}
    first_sample: dict[int, int] = {}
    for index, (group, weight) in enumerate(zip(groups, weights, strict=True)):
        if group < 0:
            continue
        totals[group] = totals.get(group, 0.0) + weight
        first_sample.setdefault(group, index)
    if not totals:
        return _no_answer(samples)
    top = max(totals.values())
    # Groups are numbered in order of first appearance: the lowest number among the best wins.
    best = min(g for g, total in totals.items() if _ties(total, top))
    representative = samples[first_sample[best]]
    return MethodResult(representative.answer, representative.correct)


def greedy(sample: Sample) -> MethodResult:
    """Greedy-CoT: the single greedy sample's answer (pass@1)."""
    return MethodResult(sample.answer, sample.correct and has_answer(sample))


def maj_at_n(samples: Sequence[Sample], equivalent: Equivalence | None = None) -> MethodResult:
    """MAJ@N: the most frequent answer group."""
    return _pick_group(samples, [1.0] * len(samples), equivalent)


def orm_vote_at_n(
    samples: Sequence[Sample],
    how: SampleScore = SampleScore.LAST,
    equivalent: Equivalence | None = None,
) -> MethodResult:
    """ORM_VOTE@N: the answer group with the largest sum of sample scores."""
    weights = [sample_score(s.step_scores, how) if has_answer(s) else 0.0 for s in samples]
    return _pick_group(samples, weights, equivalent)


def orm_max_at_n(samples: Sequence[Sample], how: SampleScore = SampleScore.LAST) -> MethodResult:
    """ORM_MAX@N: the answer of the single best-scored sample with an answer; ties -> earliest."""
    best: Sample | None = None
    best_score = float("-inf")
    for sample in samples:
        if not has_answer(sample):
            continue
        score = sample_score(sample.step_scores, how)
        if best is None or (score > best_score and not _ties(score, best_score)):
            best, best_score = sample, score
    if best is None:
        return _no_answer(samples)
    return MethodResult(best.answer, best.correct)


def pass_at_n(samples: Sequence[Sample]) -> bool:
    """pass@N: any sample is right (the ceiling of every selection method)."""
    if not samples:
        raise ValueError("no samples")
    return any(s.correct and has_answer(s) for s in samples)
