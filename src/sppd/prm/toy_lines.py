"""Character-level labels inside toy step lines, for the toy PRM on local labels (``prm.label: local``).

A line's verdict at its newline is one bit per ~20 characters, from which a ~1M-parameter
backbone learns only slowly where the line went wrong. The exact checker also knows *which
character* first left every right line: the label of a character is 1 while the line so far is
the start of some right line from the current state (any valid reduction, with or without the
rewritten state; the step number is not checked, as the checker does not check it), and 0 from
the first character that is not. The token head (:mod:`sppd.prm.toy_token`) is trained on each
character up to the first wrong one (after it nothing in the line is judged) and on the newline of
a line with no wrong character, whose label is the checker's verdict (0 for an unfinished line).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sppd.toy.checker import check_step_line, valid_positions  # the checker's own state rules
from sppd.toy.world import ANSWER_PREFIX, answer_line, apply_op, evaluate, parse_expr, reduce_at, render_expr

_NUMBER_RE = re.compile(r"Step (\d{1,3}): ")


def right_lines(nums: list[int], ops: list[str], number: str) -> list[str]:
    """Every right step line from state ``(nums, ops)`` numbered ``number``, and the answer line."""
    lines = [answer_line(evaluate(nums, ops))] if nums else []
    for i, op in enumerate(ops):
        if i in valid_positions(nums, ops, nums[i], op, nums[i + 1]):
            result = apply_op(nums[i], op, nums[i + 1])
            head = f"Step {number}: {nums[i]}{op}{nums[i + 1]}={result}"
            lines += [head, f"{head}, {render_expr(*reduce_at(nums, ops, i, result))}"]
    return lines


def with_char_labels(
    encoded_positions: Sequence[int], steps: Sequence[str], labels: Sequence[float | None], question: str
) -> tuple[list[int], list[float]]:
    """``(positions, targets)``: each labelled step's newline (its label) preceded by its
    characters (``char_labels``), when the PRM's encoding has one token per character there."""
    chars = char_labels(question, steps)
    positions: list[int] = []
    targets: list[float] = []
    previous = None
    for j, (pos, label) in enumerate(zip(encoded_positions, labels)):
        start = pos - len(steps[j].rstrip("\n"))
        if label is not None and chars is not None and (start == previous + 1 if previous is not None else start > 0):
            line = chars[j][: chars[j].index(0.0) + 1] if 0.0 in chars[j] else chars[j]
            positions += range(start, start + len(line))  # one token per character (the toy tokenizer)
            targets += line
            if 0.0 not in line:  # after a wrong character nothing in the line is judged
                positions.append(pos)
                targets.append(label)
        elif label is not None:
            positions.append(pos)
            targets.append(label)
        previous = pos
    return positions, targets


def _prefix_labels(line: str, candidates: Sequence[str]) -> list[float]:
    """1.0 for each character of ``line`` while ``line[: j + 1]`` starts some candidate."""
    longest = max((_common_prefix(line, c) for c in candidates), default=0)
    return [1.0 if j < longest else 0.0 for j in range(len(line))]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def char_labels(question: str, steps: Sequence[str]) -> list[list[float]] | None:
    """Per step, one label per character of ``step.rstrip("\\n")`` (see the module docstring);
    None when ``question`` is no toy expression. States follow the checker's rules: a wrong line
    moves on from what it wrote, and nothing is right after an answer line."""
    parsed = parse_expr(question.strip())
    if parsed is None:
        return None
    nums, ops = parsed
    out, answered = [], False
    for k, step in enumerate(steps):
        line = step.rstrip("\n")
        if answered:
            out.append([0.0] * len(line))
            continue
        match = _NUMBER_RE.match(line)
        out.append(_prefix_labels(line, right_lines(nums, ops, match.group(1) if match else str(k + 1))))
        if line.strip().startswith(ANSWER_PREFIX):
            answered = True
        else:
            _, (nums, ops) = check_step_line(line.strip(), nums, ops)
    return out
