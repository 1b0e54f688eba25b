"""The toy arithmetic world: problems, reference solutions and the "web-like" noisy corpus.

A problem is an integer expression such as ``7+3*4-5``. Its solution reduces the expression one
operation at a time with standard precedence (every ``*`` left to right first, then ``+``/``-``
left to right), one step per line, in the paper's step format::

    Step 1: 3*4=12, 7+12-5
    Step 2: 7+12=19, 19-5
    Step 3: 19-5=14
    The answer is \\boxed{14}

Each step line starts ``Step k: a<op>b=c`` and, unless the expression is fully reduced, appends
the rewritten remaining expression: a ~1M-parameter model then only has to copy and combine
adjacent tokens instead of tracking the state in its head.

Why the base model trained here is imperfect *structurally*: the pretraining corpus, like web
data, contains solutions with one plausible step error carried through to the answer. Errors
concentrate on "hard" steps (a product >= ``hard_product_min``, a subtraction that crosses zero,
optionally a subtraction that borrows or an addition that carries), each with one consistent
wrong value, at ``corrupt_hard_rate`` (0.6 by default). A model that learns the corpus
distribution therefore answers greedily with the wrong value at most hard steps, and more
pretraining does not fix that, while sampling still yields the correct value ~40% of the time
there: room for self-training to improve it. (At the defaults about half of the test problems
have no hard step; the base model's greedy accuracy is ~0.6, its accuracy at temperature 1
~0.55 and its pass@8 ~0.85.)

That is the default error model, ``v1``. Its slips nearly all make the number larger, so in a
step preference pair the smaller first differing character marks the correct step; the opt-in
``v2`` (``ToyWorldConfig.error_model``) draws one of several slips in both directions instead
(``slip_candidates``), which also leaves the correct value the most common one at hard steps.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from enum import StrEnum

from sppd.records import Problem
from sppd.toy.config import OPS, ToyWorldConfig
from sppd.types import ToyErrorModel

STEP_DELIMITER = "\n"
ANSWER_PREFIX = "The answer is "


class ToySplit(StrEnum):
    """A split of the toy world's question space (fixed by a hash of the question); the toy task's
    splits, not a config choice (``problems.split`` is a string each task checks)."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


@dataclass(frozen=True)
class Step:
    """One reduction ``a op b = result``; ``state`` is the whole expression after it."""

    a: int
    op: str
    b: int
    result: int
    state: str
    terse: bool = False  # the line leaves out the rewritten state (``ToyWorldConfig.terse_rate``)

    def line(self, k: int) -> str:
        """The step's text as line ``k`` (1-based) of a solution, without the delimiter."""
        text = f"Step {k}: {self.a}{self.op}{self.b}={self.result}"
        # A fully reduced state is just the result: repeating it would add nothing.
        return text if self.terse or self.state == str(self.result) else f"{text}, {self.state}"


# --- expressions: numbers and operators, never eval ------------------------------------------


def apply_op(a: int, op: str, b: int) -> int:
    """``a op b`` for op in '+-*'."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}")


def render_expr(nums: list[int], ops: list[str]) -> str:
    """``[7, 3], ['+']`` -> ``'7+3'``; only the first number may be negative."""
    parts = [str(nums[0])]
    for op, num in zip(ops, nums[1:]):
        parts.append(f"{op}{num}")
    return "".join(parts)


def parse_expr(text: str) -> tuple[list[int], list[str]] | None:
    """Inverse of ``render_expr``; ``None`` for anything else (never raises on garbage)."""
    if not isinstance(text, str) or not text or len(text) > 1000:
        return None
    nums: list[int] = []
    ops: list[str] = []
    i, n = 0, len(text)
    while True:
        j = i + 1 if (i < n and text[i] == "-" and not nums) else i  # leading sign only
        k = j
        while k < n and text[k].isdigit() and text[k].isascii():
            k += 1
        if k == j:
            return None
        nums.append(int(text[i:k]))
        if k == n:
            return nums, ops
        if text[k] not in OPS:
            return None
        ops.append(text[k])
        i = k + 1


def next_op_index(ops: list[str]) -> int:
    """Index of the canonical next reduction: the first '*', else the first operator."""
    return ops.index("*") if "*" in ops else 0


def reduce_at(nums: list[int], ops: list[str], i: int, result: int) -> tuple[list[int], list[str]]:
    """Replace ``nums[i] ops[i] nums[i+1]`` by ``result``."""
    return nums[:i] + [result] + nums[i + 2 :], ops[:i] + ops[i + 1 :]


def evaluate(nums: list[int], ops: list[str]) -> int:
    """Exact value of an expression with standard precedence."""
    while ops:
        i = next_op_index(ops)
        nums, ops = reduce_at(nums, ops, i, apply_op(nums[i], ops[i], nums[i + 1]))
    return nums[0]


def solve(question: str) -> list[Step]:
    """Correct steps for ``question``: all '*' left to right, then '+'/'-' left to right."""
    parsed = parse_expr(question)
    if parsed is None:
        raise ValueError(f"not a toy question: {question!r}")
    nums, ops = parsed
    steps = []
    while ops:
        i = next_op_index(ops)
        a, op, b = nums[i], ops[i], nums[i + 1]
        nums, ops = reduce_at(nums, ops, i, apply_op(a, op, b))
        steps.append(Step(a, op, b, nums[i], render_expr(nums, ops)))
    return steps


def answer_line(answer: int | str) -> str:
    """The final line: ``The answer is \\boxed{14}``."""
    return f"{ANSWER_PREFIX}\\boxed{{{answer}}}"


def format_solution(steps: list[Step], answer: int | str) -> str:
    """Step lines then the answer line, joined by ``STEP_DELIMITER`` (no trailing delimiter)."""
    lines = [s.line(k) for k, s in enumerate(steps, start=1)]
    return STEP_DELIMITER.join(lines + [answer_line(answer)])


def prompt_text(question: str) -> str:
    """What precedes a solution, for pretraining, sampling and evaluation alike."""
    return f"Q: {question}\n"


# --- the noisy corpus ------------------------------------------------------------------------


def plausible_error(a: int, op: str, b: int, cfg: ToyWorldConfig) -> tuple[bool, int]:
    """``(is_hard, wrong_value)`` for step ``a op b``: the one mistake the v1 corpus makes there.

    Hard steps get a classic slip (tens digit, borrow, carry, sign); easy ones an off-by-one.
    The wrong value always differs from the right one.
    """
    c = apply_op(a, op, b)
    if cfg.hard_negative and a >= 0 and c < 0:
        # Sign dropped when a subtraction crosses zero: b-a instead of a-b.
        return True, -c
    if op == "*" and c >= cfg.hard_product_min:
        return True, c + 10
    if op == "-" and cfg.hard_borrow and a >= 0 and a % 10 < b % 10:
        return True, c + 10
    if op == "+" and cfg.hard_carry and a >= 0 and a % 10 + b % 10 >= 10:
        return True, c - 10
    return False, c + 1


def is_medium(a: int, op: str, b: int) -> bool:
    """A carrying addition or a borrowing subtraction (of a non-negative left operand): the steps
    that err at ``corrupt_medium_rate`` when they are not hard."""
    if a < 0 or op == "*":
        return False
    return a % 10 + b % 10 >= 10 if op == "+" else a % 10 < b % 10


def step_error_rate(a: int, op: str, b: int, cfg: ToyWorldConfig) -> float:
    """P(the corpus errs at step ``a op b`` | no error yet): the hard, medium or easy rate."""
    if plausible_error(a, op, b, cfg)[0]:
        return cfg.corrupt_hard_rate
    if cfg.corrupt_medium_rate and is_medium(a, op, b):
        return cfg.corrupt_medium_rate
    return cfg.corrupt_easy_rate


def slip_candidates(nums: list[int], ops: list[str], i: int) -> dict[str, list[int]]:
    """Kind -> the wrong values of the v2 error model for reducing ``nums[i] ops[i] nums[i+1]``.

    Slips go both ways (±1, ±10, sign flipped, two adjacent digits swapped, another number of the
    expression used as an operand, another operator applied), so neither the wrong value's size
    nor its first character tells it from the right one. Every value differs from the right one;
    only the sign slip changes the sign, and only at index 0 (only the first number may be negative).
    """
    a, op, b = nums[i], ops[i], nums[i + 1]
    c = apply_op(a, op, b)
    others = [x for j, x in enumerate(nums) if j not in (i, i + 1)]
    digits, sign = str(abs(c)), -1 if c < 0 else 1
    swapped = [digits[:k] + digits[k + 1] + digits[k] + digits[k + 2 :] for k in range(len(digits) - 1)]
    kinds = {
        "off_by_one": [c + 1, c - 1],
        "tens": [c + 10, c - 10],
        "swap": [sign * int(t) for t in swapped if t[0] != "0"],
        "operand": [apply_op(a, op, x) for x in others] + [apply_op(x, op, b) for x in others],
        "operator": [apply_op(a, o, b) for o in OPS if o != op],
    }
    # Only the sign slip changes the sign: if every kind could, the many slips that push a small
    # negative result above zero would make "the side with the minus is right" a shortcut.
    out = {
        kind: kept
        for kind, values in kinds.items()
        if (kept := sorted({v for v in values if (v < 0) == (c < 0)} - {c}))
    }
    if i == 0 and c != 0:  # only the first number may be negative
        out["sign"] = [-c]
    return out


def consistent_slip(nums: list[int], ops: list[str], i: int) -> int:
    """The v2 corpus's wrong value for reducing ``nums[i] ops[i] nums[i+1]``: a kind, then one of
    its values, drawn by a hash of the step (and of whether it opens the expression).

    The same step always gets the same slip, as a person's misremembered fact would: a model that
    learns the corpus then prefers that wrong value where the corpus errs more often than not, so
    its greedy answer is wrong there and self-training has something to fix (a fresh slip at every
    occurrence would leave the right value the most common one). Which kind a step gets varies
    from step to step, so across steps the slips still go both ways (see ``slip_candidates``)."""
    a, op, b = nums[i], ops[i], nums[i + 1]
    kinds = slip_candidates(nums, ops, i)
    # the operand slip depends on the rest of the expression: not a property of the step itself
    kinds = {kind: values for kind, values in kinds.items() if kind != "operand"} or kinds
    rng = random.Random(f"toy-slip-{a}{op}{b}-{i == 0}")
    kind = rng.choice(sorted(kinds))
    if kind == "sign" and apply_op(a, op, b) < 0 and len(kinds) > 1 and rng.random() < 0.5:
        # Hard steps are mostly subtractions crossing zero, so a full share of sign slips there would
        # make "the side with the minus is right" a shortcut again (measured 192 vs 39 pairs).
        kind = rng.choice(sorted(set(kinds) - {"sign"}))
    return rng.choice(kinds[kind])


def corrupt_steps(question: str, cfg: ToyWorldConfig, rng: random.Random) -> tuple[list[Step], int | None]:
    """A corpus solution: correct steps, except that at most one step may err.

    Which steps are hard (and so err at ``corrupt_hard_rate``) is the same under both error
    models; the wrong value is ``plausible_error``'s under v1 and ``consistent_slip``'s under v2.
    Steps that carry or borrow err at ``corrupt_medium_rate`` when it is set, and each line
    leaves out the rewritten state with probability ``terse_rate``: a correct but riskier way to
    write a step, since later steps must then find the state in earlier lines (both 0 by default,
    drawing nothing from ``rng``, so the v1 corpus is unchanged).

    Walking the canonical order, each step errs with its rate until one has erred; the wrong value
    then replaces the right one in the expression and later steps are computed correctly from it,
    so the error reaches the answer (with operands >= 1 and at most two factors per product it
    always changes the answer). Returns the steps and the 0-based index of the wrong step
    (``None`` when the solution is clean).
    """
    nums, ops = parse_expr(question) or ([], [])
    if not nums:
        raise ValueError(f"not a toy question: {question!r}")
    steps: list[Step] = []
    wrong_at = None
    while ops:
        i = next_op_index(ops)
        a, op, b = nums[i], ops[i], nums[i + 1]
        result = apply_op(a, op, b)
        if wrong_at is None and rng.random() < step_error_rate(a, op, b, cfg):
            if cfg.error_model == ToyErrorModel.V2:
                result = consistent_slip(nums, ops, i)
            else:
                result = plausible_error(a, op, b, cfg)[1]
            wrong_at = len(steps)
        terse = cfg.terse_rate > 0 and rng.random() < cfg.terse_rate
        nums, ops = reduce_at(nums, ops, i, result)
        steps.append(Step(a, op, b, result, render_expr(nums, ops), terse))
    return steps, wrong_at


def corpus_text(question: str, cfg: ToyWorldConfig, rng: random.Random) -> tuple[str, bool]:
    """``(prompt + solution, is_clean)`` for one pretraining example (no special tokens)."""
    steps, wrong_at = corrupt_steps(question, cfg, rng)
    return prompt_text(question) + format_solution(steps, steps[-1].result), wrong_at is None


# --- problem generation ----------------------------------------------------------------------


def split_of(question: str, cfg: ToyWorldConfig) -> ToySplit:
    """The split a question belongs to, fixed by a hash of its text for any n and seed.

    Three disjoint parts of the question space: ``test`` (reported results), ``val`` (choosing
    hyperparameters and models without looking at test) and ``train`` (the pretraining corpus
    and the self-training prompts), so no run can leak one into another by drawing seeds.
    """
    digest = hashlib.sha256(question.encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2.0**64
    if bucket < cfg.test_fraction:
        return ToySplit.TEST
    return ToySplit.VAL if bucket < cfg.test_fraction + cfg.val_fraction else ToySplit.TRAIN


def random_question(cfg: ToyWorldConfig, rng: random.Random) -> str:
    """A uniformly drawn question with ``min_ops..max_ops`` operators and the factor limit."""
    while True:
        n_ops = rng.randint(cfg.min_ops, cfg.max_ops)
        ops = [rng.choice(cfg.ops) for _ in range(n_ops)]
        run = longest = 0
        for op in ops:
            run = run + 1 if op == "*" else 0
            longest = max(longest, run)
        if longest + 1 <= cfg.max_factors:
            nums = [rng.randint(cfg.operand_min, cfg.operand_max) for _ in range(n_ops + 1)]
            return render_expr(nums, ops)


def sample_questions(cfg: ToyWorldConfig, split: ToySplit | str, n: int, seed: int, unique: bool) -> list[str]:
    """``n`` questions of ``split`` drawn with ``random.Random(seed)``; distinct if ``unique``."""
    if split not in tuple(ToySplit):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    # Mix the split into the seed so the two splits are not drawn from one stream.
    rng = random.Random(f"toy-{split}-{seed}")
    questions: list[str] = []
    seen: set[str] = set()
    budget = 200 * n + 10_000
    while len(questions) < n:
        budget -= 1
        if budget < 0:
            raise ValueError(f"cannot draw {n} distinct {split} questions from this config's space")
        q = random_question(cfg, rng)
        if split_of(q, cfg) != split or (unique and q in seen):
            continue
        seen.add(q)
        questions.append(q)
    return questions


def generate_problems(cfg: ToyWorldConfig, split: ToySplit | str, n: int, seed: int) -> list[Problem]:
    """``n`` distinct problems of ``split``, deterministic in ``(cfg, split, n, seed)``.

    Problem ``i`` has id ``toy-<split>-<i:06d>``; the same seed with a larger ``n`` extends the
    list (the first ``n`` problems do not change).
    """
    problems = []
    for i, q in enumerate(sample_questions(cfg, split, n, seed, unique=True)):
        steps = solve(q)
        problems.append(
            Problem(
                id=f"toy-{split}-{i:06d}",
                question=q,
                gold=str(steps[-1].result),
                source="toy",
                meta={"split": split, "n_ops": len(steps)},
            )
        )
    return problems
