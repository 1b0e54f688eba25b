"""Exact checkers for toy-world answers and steps (diagnostics and the toy reward).

Model text is only ever parsed with regular expressions and ``int()``; nothing is evaluated.
Every function here accepts arbitrary strings and never raises on them.
"""

from __future__ import annotations

import re

from sppd.toy.world import ANSWER_PREFIX, apply_op, evaluate, parse_expr, reduce_at

_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
_INT_RE = re.compile(r"-?\d{1,30}")
# "Step k: a<op>b=c" with an optional ", <remaining expression>"; a may be negative.
_STEP_RE = re.compile(r"Step \d{1,3}: (-?\d{1,30})([+\-*])(\d{1,30})=(-?\d{1,30})(?:, (\S{1,1000}))?")
_ANSWER_RE = re.compile(re.escape(ANSWER_PREFIX) + r"\\boxed\{(-?\d{1,30})\}")


def extract_answer(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (stripped), or ``None`` if there is none."""
    if not isinstance(text, str):
        return None
    found = _BOXED_RE.findall(text)
    return found[-1].strip() if found else None


def _as_int(text: str | None) -> int | None:
    if text is None or not _INT_RE.fullmatch(text.strip()):
        return None
    return int(text.strip())


def check_answer(gold: str, text: str) -> bool:
    """Whether the last boxed integer in ``text`` equals ``gold``; a missing box is wrong."""
    gold_value = _as_int(gold) if isinstance(gold, str) else None
    answer = _as_int(extract_answer(text))
    return gold_value is not None and answer is not None and answer == gold_value


def valid_positions(nums: list[int], ops: list[str], a: int, op: str, b: int) -> list[int]:
    """Operator indices ``i`` where ``nums[i] op nums[i+1]`` is ``a op b`` and reducing it first
    keeps the expression's value.

    A ``*`` between adjacent numbers can always be reduced (integer products are associative).
    A ``+``/``-`` needs whole terms on both sides (no ``*`` touching either operand) and a left
    operand that opens the expression or follows ``+`` (reducing ``b-c`` inside ``a-b-c``
    would change the value).
    """
    positions = []
    for i, o in enumerate(ops):
        if o != op or nums[i] != a or nums[i + 1] != b:
            continue
        if op != "*":
            left_ok = i == 0 or ops[i - 1] == "+"
            right_ok = i + 1 >= len(ops) or ops[i + 1] != "*"
            if not (left_ok and right_ok):
                continue
        positions.append(i)
    return positions


def check_step_line(line: str, nums: list[int], ops: list[str]):
    """``(ok, next_state)`` for one step line against the current state ``(nums, ops)``.

    ``next_state`` is the state later steps are checked against: the model's own rewritten
    expression when it gave a parseable one, else the current state with the step applied as
    written (so one wrong value is carried, and only its step is flagged).
    """
    m = _STEP_RE.fullmatch(line)
    if m is None or not ops:
        return False, (nums, ops)
    a, op, b, claimed = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    rest = parse_expr(m.group(5)) if m.group(5) is not None else None
    if m.group(5) is not None and rest is None:
        return False, (nums, ops)
    positions = valid_positions(nums, ops, a, op, b)
    arithmetic_ok = apply_op(a, op, b) == claimed
    if not positions:
        return False, rest or (nums, ops)
    candidates = [reduce_at(nums, ops, i, claimed) for i in positions]
    if rest is None:
        return arithmetic_ok, candidates[0]
    return arithmetic_ok and rest in candidates, rest


def check_steps(question: str, steps: list[str]) -> list[bool]:
    """Per step: is it a right step from the state reached so far?

    The state starts as ``question`` and changes with every step line. What is accepted:

    - a step line ``Step k: a<op>b=c`` optionally followed by ``, <expression>`` (the step
      number ``k`` is not checked; surrounding whitespace and a trailing newline are ignored);
    - it is right when ``a op b == c`` exactly, ``a op b`` are two adjacent numbers of the
      current expression joined by that operator, reducing them first keeps the value (any
      ``*``; a ``+``/``-`` between whole terms whose left operand opens the expression or
      follows ``+``) — so any valid order is accepted, not only the canonical one — and the
      appended expression, if any, is the current one with ``a op b`` replaced by ``c``;
    - an answer line ``The answer is \\boxed{n}`` is right when ``n`` equals the value of the
      current state (normally the single number left after the last step);
    - a line that parses as neither, any step after an answer line, and a step when nothing is
      left to reduce are wrong.

    A wrong step does not derail the rest: later steps are checked against the state the wrong
    step wrote (its expression, else its value substituted), so an error carried through
    consistently is flagged once. Returns one bool per entry of ``steps``; ``[]`` for ``[]``.
    """
    parsed = parse_expr(question.strip()) if isinstance(question, str) else None
    if parsed is None or not isinstance(steps, (list, tuple)):
        return [False] * (len(steps) if isinstance(steps, (list, tuple)) else 0)
    nums, ops = parsed
    verdicts: list[bool] = []
    answered = False
    for raw in steps:
        line = raw.strip() if isinstance(raw, str) else ""
        if answered:
            verdicts.append(False)
            continue
        answer = _ANSWER_RE.fullmatch(line)
        if answer is not None:
            answered = True
            verdicts.append(int(answer.group(1)) == evaluate(nums, ops))
            continue
        ok, (nums, ops) = check_step_line(line, nums, ops)
        verdicts.append(ok)
    return verdicts
