"""Process-labelled toy solutions for training the toy PRM (the toy analogue of PRM800K-style data).

Monte-Carlo labels from the policy's own trees are a weak signal on the toy world: the trees
branch mostly where the policy is already unsure, and a correct step followed by a later slip is
labelled as a failure. A PRM trained on them alone learns "how far along is this path" rather
than "is this step right", and rarely separates siblings by more than the paper's 0.5 gap. The
paper's PRM was trained on its own process-labelled data; this module provides the toy world's:
solutions with at most one plausible error (the corpus's own error types) carried through to the
answer, labelled 1 before the error and 0 from it on. Mixed with the tree MC labels it gives a
learned PRM that checks arithmetic, while staying imperfect.
"""

from __future__ import annotations

import dataclasses
import random

from sppd.prm.base import PRMInput
from sppd.toy.config import ToyWorldConfig
from sppd.toy.world import corrupt_steps, format_solution, generate_problems


def labelled_solutions(
    world: ToyWorldConfig, n: int, seed: int, error_rate: float = 0.5
) -> list[tuple[str, list[str], list[float]]]:
    """``n`` (question, steps, labels) from training-split questions; about ``error_rate`` have an error."""
    noisy = dataclasses.replace(world, corrupt_hard_rate=error_rate, corrupt_easy_rate=error_rate / 3)
    rng = random.Random(f"toy-prm-labels-{seed}")
    out = []
    for problem in generate_problems(world, "train", n, seed=seed + 7919):
        steps, wrong_at = corrupt_steps(problem.question, noisy, rng)
        lines = format_solution(steps, steps[-1].result).split("\n")
        first_bad = len(lines) if wrong_at is None else wrong_at
        if wrong_at is None and rng.random() < 0.1:  # an answer line that misreports the last value
            lines[-1] = lines[-1].replace(str(steps[-1].result), str(steps[-1].result + 1))
            first_bad = len(lines) - 1
        out.append((problem.question, lines, [1.0 if j < first_bad else 0.0 for j in range(len(lines))]))
    return out


def labelled_paths_from_solutions(prm, solutions) -> list[tuple[list[int], list[int], list[float]]]:
    """Encode solutions in the PRM's token layout: (input ids, score positions, targets)."""
    examples = []
    for question, steps, labels in solutions:
        enc = prm.encode(PRMInput(question, steps))
        examples.append((enc.input_ids, list(enc.score_positions), labels))
    return examples
