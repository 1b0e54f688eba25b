"""What a task is: a problem source with named splits, its judges and its answer equivalence.

A ``Task`` is a frozen bundle of functions (composition, no subclasses): the stages ask it for
problems of a split, for a judge of complete paths, for a step-level (process) judge and a
checker of single steps where they exist, and for the answer equivalence the voting methods group
answers by. Capabilities are fields (``process_judge is None``, ``synthetic``) so callers never
test a task's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sppd.config import ConfigError
from sppd.records import Problem
from sppd.types import StepChecker

# a batch of (problem, path text) -> (extracted answer, correct) per item
Judge = Callable[[Sequence[tuple[Problem, str]]], list[tuple[str | None, bool]]]
# (representative answer, answer) -> same answer? (called after canonical strings differ)
Equivalence = Callable[[str, str], bool]
# (split, n, seed) -> problems; n=None means all of them (a generator's default count)
Loader = Callable[[str, int | None, int], list[Problem]]

TEST_SPLIT = "test"  # the split reserved for reported numbers: never training prompts by default


def _unknown_count(split: str) -> int | None:
    return None


@dataclass(frozen=True)
class Task:
    """A problem source: its splits, how to load them, and how its answers are judged."""

    name: str
    splits: tuple[str, ...]
    load: Loader
    # (timeout_s=, workers=) -> a fresh judge per use: the math one owns a grading pool (close() it)
    outcome_judge: Callable[..., Judge]
    equivalent: Equivalence
    process_judge: Judge | None = None  # right only when every step is right; None: no step checker
    step_checker: StepChecker | None = None  # each step's own verdict (for partial paths); None: none
    count: Callable[[str], int | None] = _unknown_count  # problems in a split (None: generated on demand)
    config_keys: tuple[str, ...] = ()  # run-config keys its problems depend on (they join fingerprints)
    # Problems come from the generator world the run configures (no fixed size). The pipeline can
    # then train the toy PRM on it and run the continued-pretraining control on its corpus.
    synthetic: bool = False
    # (task, split, share) of a mixture: where its problems come from (`sppd pipeline --dry-run` shows it)
    parts: tuple[tuple[str, str, float], ...] = ()

    def check_split(self, split: str, key: str) -> None:
        """A one-line error naming ``key`` when ``split`` is not one of this task's splits."""
        if split not in self.splits:
            raise ConfigError(
                f"config key {key!r}: task {self.name!r} has no split {split!r}; its splits: {', '.join(self.splits)}"
            )

    def problems(self, split: str, n: int | None = None, seed: int = 0) -> list[Problem]:
        """The problems of ``split`` (the first ``n`` when set; a generator draws ``n`` with ``seed``)."""
        self.check_split(split, "problems.split")
        return self.load(split, n, seed)


def as_problems(items, source: str) -> list[Problem]:
    """Benchmark loaders return their own record type; stages work with ``Problem``."""
    out = []
    for item in items:
        if not isinstance(item, Problem):
            tag = getattr(item, "source", source)
            # eval leaves unwinnable items out and says how many (see sppd.eval.benchmarks)
            meta = {"unwinnable": item.unwinnable} if getattr(item, "unwinnable", "") else {}
            item = Problem(id=str(item.id), question=item.question, gold=str(item.gold), source=tag, meta=meta)
        out.append(item)
    return out
