"""Evaluate a policy on problems: generate, grade, PRM-score, then apply the selection methods.

Engine-, judge- and PRM-agnostic library code behind ``sppd eval``: the stage does the file
handling. One record per problem holds the greedy completion and the N samples with their
extracted answers, correctness and PRM step scores, so every method (and any new one) can be
recomputed from the generations file without generating again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sppd.eval import methods
from sppd.eval.stats import bootstrap_ci
from sppd.prm.base import PRMInput, ProcessRewardModel, check_scores
from sppd.records import Problem
from sppd.sampling.engine import Engine, GenerationParams
from sppd.types import SampleScore

METHODS = ("greedy", "maj", "orm_vote", "orm_max", "pass")
Judge = Callable[[Sequence[tuple[Problem, str]]], list[tuple[str | None, bool]]]


def split_steps(text: str, delimiter: str) -> list[str]:
    """A completion's steps: pieces between delimiters, stripped, empty ones dropped."""
    return [s.strip() for s in text.split(delimiter) if s.strip()]


def generate_records(
    engine: Engine,
    problems: Sequence[Problem],
    prompts: Sequence[list[int]],
    n_samples: int,
    sample_params: GenerationParams,
    greedy_params: GenerationParams,
    seed: int,
) -> list[dict[str, Any]]:
    """Greedy completion plus ``n_samples`` sampled completions per problem (texts and token counts)."""
    greedy = engine.generate(list(prompts), 1, greedy_params, seed=seed)
    sampled = (
        engine.generate(list(prompts), n_samples, sample_params, seed=seed + 1) if n_samples else [[] for _ in prompts]
    )
    records = []
    for problem, (g,), group in zip(problems, greedy, sampled):
        records.append(
            {
                "id": problem.id,
                "question": problem.question,
                "gold": problem.gold,
                "source": problem.source,
                "greedy": {"text": g.text, "n_tokens": len(g.token_ids), "finish_reason": str(g.finish_reason)},
                "samples": [
                    {"text": s.text, "n_tokens": len(s.token_ids), "finish_reason": str(s.finish_reason)}
                    for s in group
                ],
            }
        )
    return records


def _completions(records: Sequence[dict]) -> list[tuple[dict, dict]]:
    return [(r, c) for r in records for c in [r["greedy"], *r["samples"]]]


def grade_records(records: Sequence[dict], judge: Judge) -> None:
    """Attach ``answer`` and ``correct`` to every completion (in place)."""
    items = _completions(records)
    verdicts = judge([(Problem(id=r["id"], question=r["question"], gold=r["gold"]), c["text"]) for r, c in items])
    for (_, completion), (answer, correct) in zip(items, verdicts):
        completion["answer"] = answer or ""
        completion["correct"] = bool(correct)


def score_records(records: Sequence[dict], prm: ProcessRewardModel, delimiter: str) -> None:
    """Attach PRM ``step_scores`` to every completion that has steps (in place)."""
    items = [(r, c, split_steps(c["text"], delimiter)) for r, c in _completions(records)]
    items = [x for x in items if x[2]]
    inputs = [PRMInput(question=r["question"], steps=steps) for r, _, steps in items]
    scores = prm.score(inputs) if inputs else []
    check_scores(scores, inputs, where="eval")
    for (_, completion, _), step_scores in zip(items, scores):
        completion["step_scores"] = [float(x) for x in step_scores]
    for _, completion in _completions(records):
        completion.setdefault("step_scores", [])


def _sample(c: dict) -> methods.Sample:
    return methods.Sample(
        answer=c.get("answer", ""), correct=bool(c.get("correct")), step_scores=tuple(c.get("step_scores", ()))
    )


def problem_outcomes(record: dict, how: SampleScore, with_prm: bool, equivalent=None) -> dict[str, bool]:
    """Which methods got this problem right."""
    samples = [_sample(c) for c in record["samples"]]
    # A sample with an answer but no steps cannot be scored; ORM methods then treat it as score 0.
    scored = [s if s.step_scores or not s.answer else methods.Sample(s.answer, s.correct, (0.0,)) for s in samples]
    out = {"greedy": methods.greedy(_sample(record["greedy"])).correct}
    if samples:
        out["maj"] = methods.maj_at_n(samples, equivalent).correct
        out["pass"] = methods.pass_at_n(samples)
        if with_prm:
            out["orm_vote"] = methods.orm_vote_at_n(scored, how, equivalent).correct
            out["orm_max"] = methods.orm_max_at_n(scored, how).correct
    return out


def summarize(
    records: Sequence[dict], how: SampleScore, with_prm: bool, n_boot: int, seed: int, equivalent=None
) -> dict[str, Any]:
    """Accuracy of each method with a 95% bootstrap interval, plus generation statistics."""
    outcomes = [problem_outcomes(r, how, with_prm, equivalent) for r in records]
    metrics: dict[str, Any] = {"n_problems": len(records), "n_samples": len(records[0]["samples"]) if records else 0}
    for name in METHODS:
        values = [float(o[name]) for o in outcomes if name in o]
        if values:
            ci = bootstrap_ci(values, n_boot=n_boot, seed=seed)
            metrics[name] = {"acc": ci.mean, "lo": ci.low, "hi": ci.high}
    completions = _completions(records)
    metrics["mean_tokens"] = sum(c["n_tokens"] for _, c in completions) / max(len(completions), 1)
    metrics["no_answer_rate"] = sum(1 for _, c in completions if not c.get("answer")) / max(len(completions), 1)
    return metrics
