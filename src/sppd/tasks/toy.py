"""The toy arithmetic task: generated train/val/test splits, the exact checker as judge."""

from __future__ import annotations

from sppd.judging import toy_judge, toy_process_judge, toy_step_judge
from sppd.records import Problem
from sppd.tasks.base import Task

NAME = "toy"
SPLITS = ("train", "val", "test")  # disjoint by a hash of the question (sppd.toy.world.split_of)
DEFAULT_N = 1000  # problems drawn when problems.n is unset: a generator has no "all"


def exact_equivalent(a: str, b: str) -> bool:
    """Toy answers are integers: two answers agree only when their canonical strings do."""
    return False


def toy_task(world=None) -> Task:
    """The toy task over ``world`` (a ``ToyWorldConfig``; the default world when None)."""

    def load(split: str, n: int | None, seed: int) -> list[Problem]:
        from sppd.toy.config import ToyWorldConfig
        from sppd.toy.world import generate_problems

        return generate_problems(world or ToyWorldConfig(), split, DEFAULT_N if n is None else n, seed)

    return Task(
        name=NAME,
        splits=SPLITS,
        load=load,
        outcome_judge=lambda **_: toy_judge,  # exact and instant: no timeout, no workers
        equivalent=exact_equivalent,
        process_judge=toy_process_judge,
        step_judge=toy_step_judge,
        config_keys=("toy.world",),
        synthetic=True,
    )
