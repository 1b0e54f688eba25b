"""Judges: the final answer of a complete path and whether it is correct.

The toy world has an exact checker; real benchmarks go through ``sppd.eval`` (answer
extraction + math-verify with timeouts in worker processes). A judge takes a batch so the real
one can spread grading over its worker pool. Which judge a problem source uses is its task's
choice (``sppd.tasks``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sppd.records import Problem


def toy_judge(items: Sequence[tuple[Problem, str]]) -> list[tuple[str | None, bool]]:
    from sppd.toy.checker import check_answer, extract_answer

    return [(extract_answer(text), check_answer(problem.gold, text)) for problem, text in items]


def toy_process_judge(items: Sequence[tuple[Problem, str]]) -> list[tuple[str | None, bool]]:
    """Right only when the answer is right AND every line is a right step (the exact checker).

    The toy policy sometimes reaches the gold answer through two compensating errors
    ("8*6=58", then "58-7=41"); an outcome judge calls that right. As the judge of Monte-Carlo
    values (``score.mc_judge: process``) this makes them estimate the chance of a fully right
    solution, the quantity a process reward model stands in for, so such steps get value 0.
    """
    from sppd.toy.checker import check_answer, check_steps, extract_answer

    out = []
    for problem, text in items:
        lines = [line for line in text.split("\n") if line.strip()]
        ok = check_answer(problem.gold, text) and bool(lines) and all(check_steps(problem.question, lines))
        out.append((extract_answer(text), ok))
    return out


def toy_step_judge(question: str, steps: Sequence[str]) -> list[bool]:
    """Per step of a toy path: is it right from the state the earlier steps reached? (the exact
    checker, ``check_steps``; the toy task's step judge, which ``prm.label: process`` labels by)."""
    from sppd.toy.checker import check_steps

    return check_steps(question, list(steps))


class MathJudge:
    """Extract the last boxed/stated answer and grade it against the gold with math-verify."""

    def __init__(self, timeout_s: float = 5.0, workers: int = 2):
        from sppd.eval.grading import Grader

        self.grader = Grader(use_fast_path=True, timeout_s=timeout_s, workers=workers)

    def __call__(self, items: Sequence[tuple[Problem, str]]) -> list[tuple[str | None, bool]]:
        from sppd.eval.answers import extract_answer

        answers = [extract_answer(text) for _, text in items]
        pairs = [(problem.gold, ans or "") for (problem, _), ans in zip(items, answers)]
        results = self.grader.grade_many(pairs)
        return [(ans, bool(res.correct) and ans is not None) for ans, res in zip(answers, results)]

    def close(self) -> None:
        close = getattr(self.grader, "close", None)
        if close:
            close()
