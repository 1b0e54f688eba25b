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
from sppd.prm.toy_lines import with_char_labels
from sppd.records import Tree
from sppd.toy.config import ToyWorldConfig
from sppd.toy.world import (
    answer_line,
    apply_op,
    consistent_slip,
    corrupt_steps,
    format_solution,
    generate_problems,
    next_op_index,
    parse_expr,
    reduce_at,
    render_expr,
    slip_candidates,
)
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


def local_labels(verdicts: Sequence[bool]) -> list[float]:
    """1.0 where the step itself is right (from the state the steps before it wrote), else 0.0.

    The running min of these is ``process_labels``: a PRM trained on them only has to check the
    line in front of it, not remember whether any earlier line was wrong (see ``prm.label``)."""
    return [float(ok) for ok in verdicts]


def label_options(label: PRMLabel | str, step_judge: StepChecker | None) -> tuple[bool, StepChecker | None]:
    """``(hard, step_judge)`` for ``labelled_paths`` from ``prm.label``: the judge only for process
    and local labels, which cannot do without one."""
    label = PRMLabel(label)
    if label.needs_step_checker and step_judge is None:
        raise ValueError(f"prm.label={label.value} needs the task's step judge; none was given")
    return label is PRMLabel.HARD, step_judge if label.needs_step_checker else None


def labelled_paths(
    prm: TokenLevelPRM,
    trees: Sequence[Tree],
    min_paths: int,
    hard: bool = False,
    step_judge: StepChecker | None = None,
    local: bool = False,
) -> list[LabelledPath]:
    """One example per complete path; each distinct node's label appears on one path only.

    With ``step_judge`` (``prm.label: process``) every node is labelled by ``process_labels`` of
    its path, so no MC value is needed and a right step followed by a later slip stays 1.0; with
    ``local`` too (``prm.label: local``) by ``local_labels``, each step's own verdict.
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
                verdicts = step_judge(tree.problem.question, steps)
                labels: list[float | None] = local_labels(verdicts) if local else process_labels(verdicts)
            else:
                nodes = [tree.nodes[k] for k in path]
                labels = [
                    mc_label(n.mc_value, hard) if n.mc_value is not None and n.mc_count >= min_paths else None
                    for n in nodes
                ]
            keep = [j for j, k in enumerate(path) if k not in claimed and labels[j] is not None]
            claimed.update(path)
            if keep and local:  # with the characters' labels inside each kept line (sppd.prm.toy_lines)
                kept = [labels[j] if j in keep else None for j in range(len(path))]
                positions, targets = with_char_labels(enc.score_positions, steps, kept, tree.problem.question)
                examples.append((enc.input_ids, positions, targets))
            elif keep:
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


def labelled_paths_from_solutions(prm, solutions, local: bool = False) -> list[LabelledPath]:
    """Encode solutions in the PRM's token layout: (input ids, score positions, targets); with
    ``local`` also each line's characters (``sppd.prm.toy_lines``)."""
    examples = []
    for question, steps, labels in solutions:
        enc = prm.encode(PRMInput(question, steps))
        if local:
            examples.append((enc.input_ids, *with_char_labels(enc.score_positions, steps, labels, question)))
        else:
            examples.append((enc.input_ids, list(enc.score_positions), labels))
    return examples


def slipped_lines(question: str, world: ToyWorldConfig, rng: random.Random, slip_rate: float) -> list[str]:
    """A toy solution in which every step may slip on its own: a wrong value (the corpus's slip or
    any other of ``slip_candidates``) at ``slip_rate``, a reduction out of order, a miscopied
    rewritten state, a misreported answer (each rarer). Later steps go on from what was written,
    as the checker does, so a path can hold several errors, each a wrong line of its own.
    Lines leave out the state at ``world.terse_rate``, as the policy's do."""
    nums, ops = parse_expr(question) or ([], [])
    lines = []
    while ops:
        i = next_op_index(ops)
        if len(ops) > 1 and rng.random() < slip_rate / 4:
            i = rng.randrange(len(ops))  # maybe another order (the checker accepts the valid ones)
        a, op, b = nums[i], ops[i], nums[i + 1]
        result = apply_op(a, op, b)
        if rng.random() < slip_rate:
            values = [v for vs in slip_candidates(nums, ops, i).values() for v in vs]
            result = consistent_slip(nums, ops, i) if rng.random() < 0.5 else rng.choice(values)
        nums, ops = reduce_at(nums, ops, i, result)
        line = f"Step {len(lines) + 1}: {a}{op}{b}={result}"
        if ops and rng.random() >= world.terse_rate:
            if rng.random() < slip_rate / 4:  # one number of the state miscopied
                j, delta = rng.randrange(len(nums)), rng.choice([-10, -1, 1, 10])
                if j > 0 and nums[j] + delta < 0:  # only the first number may be negative
                    delta = -delta
                nums = nums[:j] + [nums[j] + delta] + nums[j + 1 :]
            line += f", {render_expr(nums, ops)}"
        lines.append(line)
    answer = nums[0] + (rng.choice([-10, -1, 1, 10]) if rng.random() < slip_rate / 4 else 0)
    return lines + [answer_line(answer)]


def local_labelled_solutions(
    world: ToyWorldConfig, n: int, seed: int, step_judge: StepChecker, slip_rate: float = 0.15
) -> list[tuple[str, list[str], list[float]]]:
    """``n`` (question, steps, local labels) from training-split questions, each step slipping
    on its own (``slipped_lines``) and labelled by ``step_judge``, so the labels are exact."""
    rng = random.Random(f"toy-prm-local-{seed}")
    out = []
    for problem in generate_problems(world, "train", n, seed=seed + 7919):
        lines = slipped_lines(problem.question, world, rng, slip_rate)
        out.append((problem.question, lines, local_labels(step_judge(problem.question, lines))))
    return out
