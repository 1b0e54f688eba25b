"""Math word-problem tasks: the shipped sets by split, the paper's training mix, a user's JSONL file.

All of them are judged the same way: extract the final answer, grade it against the gold with
math-verify (``sppd.judging.MathJudge``); answers are equivalent when math-verify says so. None has
a step checker, so none has a process judge.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sppd.records import Problem
from sppd.tasks.base import Task, as_problems

# task -> split -> shipped benchmark (``sppd.eval.benchmarks``; files under ``sppd/benchdata``)
SHIPPED: dict[str, dict[str, str]] = {
    "gsm8k": {"train": "gsm8k_train", "test": "gsm8k"},
    "math": {"train": "math_train"},
    "math500": {"test": "math500"},
    "gaokao2023en": {"test": "gaokao2023en"},
    "ocw": {"test": "ocw"},  # Minerva's OCW courses (benchdata/minerva_math)
    "olympiadbench": {"test": "olympiadbench"},
}
MIX_PARTS = (("gsm8k", "train", 0.4), ("math", "train", 0.6))  # the mix's sources and shares (§6.1)
MIX_N = 10000  # the paper's training prompts (§6.1): 10k, 40% GSM8K train, 60% MATH train
FILE_SPLIT = "file"  # a user's JSONL file is one split; whether it is held out is the user's call


def math_judge(timeout_s: float = 5.0, workers: int = 2):
    """math-verify grading with ``timeout_s`` per comparison on ``workers`` processes."""
    from sppd.judging import MathJudge

    return MathJudge(timeout_s=timeout_s, workers=workers)


def math_equivalent(a: str, b: str) -> bool:
    from sppd.eval.grading import answers_equivalent

    return answers_equivalent(a, b)


def _math_task(name: str, splits: tuple[str, ...], load, count) -> Task:
    return Task(name=name, splits=splits, load=load, outcome_judge=math_judge, equivalent=math_equivalent, count=count)


def _first(problems: list[Problem], n: int | None) -> list[Problem]:
    return problems if n is None else problems[:n]


def shipped_task(name: str, benchmarks: dict[str, str]) -> Task:
    """A task whose splits are registered benchmarks (``split -> benchmark name``)."""
    from sppd.eval.benchmarks import load_benchmark

    def load(split: str, n: int | None, seed: int) -> list[Problem]:
        return _first(as_problems(load_benchmark(benchmarks[split]), name), n)

    return _math_task(name, tuple(benchmarks), load, lambda split: len(load_benchmark(benchmarks[split])))


def mix_task() -> Task:
    """The paper's training prompts, drawn with the seed (``n`` of them; ``MIX_N`` when unset or 0)."""

    def load(split: str, n: int | None, seed: int) -> list[Problem]:
        from sppd.eval.benchmarks import training_prompt_mix

        return as_problems(training_prompt_mix(n=n or MIX_N, gsm8k_frac=MIX_PARTS[0][2], seed=seed), "mix")

    return dataclasses.replace(_math_task("mix", ("train",), load, lambda split: MIX_N), parts=MIX_PARTS)


def jsonl_task(path: str, question_field: str = "question", answer_field: str = "answer", id_field: str = "") -> Task:
    """A user's JSONL file (read when its problems are asked for, so a missing file errors there)."""
    from sppd.eval.benchmarks import load_jsonl_problems

    def read() -> list[Problem]:
        items = load_jsonl_problems(
            Path(path), question_field=question_field, answer_field=answer_field, id_field=id_field or None
        )
        return as_problems(items, path)

    return _math_task(path, (FILE_SPLIT,), lambda split, n, seed: _first(read(), n), lambda split: len(read()))


def is_path(source: str) -> bool:
    """A source names a file when it looks like one (``.jsonl``/``.json``) or exists."""
    return Path(source).suffix in {".jsonl", ".json"} or Path(source).exists()
