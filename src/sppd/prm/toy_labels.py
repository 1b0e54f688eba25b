"""Training labels for value-head PRMs: per-node labels of tree paths (``labelled_paths``: MC values
or a task's step checker, ``prm.label``) and process-labelled toy solutions (the toy analogue of
PRM800K-style data), used by the toy PRM and the HF value-head trainer alike.

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
from collections.abc import Sequence
from itertools import accumulate

from sppd.prm.base import PRMInput, TokenLevelPRM
from sppd.records import Tree
from sppd.toy.config import ToyWorldConfig
from sppd.toy.world import corrupt_steps, format_solution, generate_problems
from sppd.types import PRMLabel, StepChecker

# (input ids, score positions to train, their soft targets)
LabelledPath = tuple[list[int], list[int], list[float]]


def mc_label(value: float, hard: bool) -> float:
    """Math-Shepherd's soft estimate (fraction of correct completions) or hard estimate (any correct).

    The hard label makes the PRM judge whether a step can still lead to the answer, close to how
    the paper's PRM behaves (scores near 1 until an erroneous step, App. B); the soft label is
    the policy's success rate, which stays low after a correct step when later steps are hard.
    """
    return (1.0 if value > 0.0 else 0.0) if hard else float(value)


def process_labels(verdicts: Sequence[bool]) -> list[float]:
    """1.0 while a step and every earlier one are right (``verdicts``: the task's step judge), else 0.0."""
    return [float(ok) for ok in accumulate(verdicts, lambda so_far, ok: so_far and ok)]


def label_options(label: PRMLabel | str, step_judge: StepChecker | None) -> tuple[bool, StepChecker | None]:
    """``(hard, step_judge)`` for ``labelled_paths`` from ``prm.label``: the judge only for process
    labels, which cannot do without one."""
    label = PRMLabel(label)
    if label is PRMLabel.PROCESS and step_judge is None:
        raise ValueError("prm.label=process needs the task's step judge; none was given")
    return label is PRMLabel.HARD, step_judge if label is PRMLabel.PROCESS else None


def labelled_paths(
    prm: TokenLevelPRM,
    trees: Sequence[Tree],
    min_paths: int,
    hard: bool = False,
    step_judge: StepChecker | None = None,
) -> list[LabelledPath]:
    """One example per complete path; each distinct node's label appears on one path only.

    With ``step_judge`` (``prm.label: process``) every node is labelled by ``process_labels`` of
    its path, so no MC value is needed and a right step followed by a later slip stays 1.0.
    Otherwise a node carries its MC label when it rests on at least ``min_paths`` complete paths
    (``mc_count``).
    """
    examples = []
    for tree in trees:
        claimed: set[int] = set()
        for leaf in tree.leaves():
            path, steps = tree.path_to(leaf), tree.path_steps(leaf)
            enc = prm.encode(PRMInput(tree.problem.question, steps))
            if step_judge is not None:
                labels: list[float | None] = process_labels(step_judge(tree.problem.question, steps))
            else:
                nodes = [tree.nodes[k] for k in path]
                labels = [
                    mc_label(n.mc_value, hard) if n.mc_value is not None and n.mc_count >= min_paths else None
                    for n in nodes
                ]
            keep = [j for j, k in enumerate(path) if k not in claimed and labels[j] is not None]
            claimed.update(path)
            if keep:
                examples.append((enc.input_ids, [enc.score_positions[j] for j in keep], [labels[j] for j in keep]))
    return examples


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


def labelled_paths_from_solutions(prm, solutions) -> list[LabelledPath]:
    """Encode solutions in the PRM's token layout: (input ids, score positions, targets)."""
    examples = []
    for question, steps, labels in solutions:
        enc = prm.encode(PRMInput(question, steps))
        examples.append((enc.input_ids, list(enc.score_positions), labels))
    return examples
