"""Grading: is a predicted answer equivalent to the gold answer?

Model output is untrusted. Nothing here evaluates it as Python: plain numbers are parsed by a
small regular grammar into ``fractions.Fraction``; anything else goes to math-verify's own LaTeX
parser (``verify(parse(gold), parse(pred))``, gold first because verify is asymmetric).

math-verify guards itself with ``signal.alarm``, which only works in the main thread and cannot
interrupt a hang inside C code (``2^{2^{2^{99}}}`` makes sympy/GMP build a gigantic integer). So
every math-verify call runs in a pool of worker *processes* (fresh interpreters, safe next to
torch in the parent); a call that exceeds ``timeout_s`` of wall-clock time gets its worker
killed and replaced, and the answer is graded wrong with path ``timeout``. Workers also run
under a memory cap, and answers longer than ``max_answer_chars`` are graded wrong unparsed.

Decision order in :meth:`Grader.grade_many` (path in brackets):
empty gold or prediction [empty] -> too long [too_long] -> Python ``**`` power [rejected] ->
both plain numbers [fast] -> same canonical string [exact] -> math-verify in a worker
[verify | timeout | crash]. Both sides are first put in :func:`grading_form`
(e-notation, ``a./b``, inner ``$``), so both paths see the same strings.
"""

from __future__ import annotations

import atexit
import dataclasses
import re
import threading
import weakref
from dataclasses import dataclass

from sppd.eval.answers import clean_answer, strip_dollars
from sppd.eval.canonical import canonical_answer, numbers_equal, parse_plain_number
from sppd.eval.verify_pool import GradePath, GradeResult, VerifyPool

__all__ = [
    "Grader",
    "GraderConfig",
    "GradePath",
    "GradeResult",
    "answers_equivalent",
    "canonical_answer",
    "grading_form",
    "unwinnable_reason",
]

# "2**3" is not LaTeX: math-verify reads its "2" and stops, so gold 2 would match. Grading it
# wrong without a worker also never builds a huge power. "**5** apples" (markdown bold) is not
# matched: a power has an operand right before "**" and right after it (or spaces on both sides).
_PYTHON_POWER_RE = re.compile(r"[\w)}\]](?:\*\*|\s+\*\*\s+)[\w({\[+-]")


# A Python float before a division: OCW's "-1./3" is -1/3 (math-verify would read "-1." then stop).
_FLOAT_BEFORE_SLASH_RE = re.compile(r"(\d)\.(?=\s*/)")
_SIGNED_E_NUMBER_RE = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d{1,6})")


def grading_form(answer: str) -> str:
    """The form of a gold or predicted answer that the grader compares (both paths).

    Besides :func:`clean_answer`: ``$`` signs inside the answer go (an OCW gold reads
    ``x_{0} \\cos (\\omega t)+$ $\\dot{x}_{0} ...``); ``a./b`` becomes ``a/b``; an answer that is
    just an e-notation number (``4.5e33``, ``1e-5``, ``1.2E+3``) becomes ``4.5\\times10^{33}``,
    because math-verify reads ``e`` as Euler's number (``4.5e33`` would equal ``148.5e``). Only a
    whole-answer number is rewritten: ``3e^{-2t}`` and ``2e`` keep their ``e``.
    """
    s = clean_answer(answer)
    if "$" in s:
        s = strip_dollars(s)
    s = _FLOAT_BEFORE_SLASH_RE.sub(r"\1", s)
    match = _SIGNED_E_NUMBER_RE.fullmatch(s)
    if match:
        sign, mantissa, exponent = match.group(1), match.group(2).rstrip("."), int(match.group(3))
        s = f"{sign}{mantissa}\\times10^{{{exponent}}}"
    return s


@dataclass(frozen=True)
class GraderConfig:
    """Settings of a :class:`Grader`."""

    use_fast_path: bool = True
    """Decide plain numbers and identical canonical strings without math-verify."""
    timeout_s: float = 5.0
    """Wall-clock limit for one math-verify comparison; past it the answer is graded wrong."""
    workers: int = 2
    """Number of math-verify worker processes (started on first use)."""
    max_answer_chars: int = 1000
    """Answers (gold or prediction) longer than this are graded wrong without parsing."""
    memory_limit_mb: int | None = 4096
    """Address-space cap of each worker process; None leaves it unlimited."""


class Grader:
    """Grades (gold, prediction) answer pairs; a context manager owning the worker processes.

    Thread-safe (one batch at a time); works from any thread because the parent side uses no
    signals. Example::

        with Grader(timeout_s=5.0, workers=2) as grader:
            grader.grade("\\frac{1}{2}", "0.5")          # True (fast path)
            grader.grade_many([("x+1", "1+x")])[0].path   # GradePath.VERIFY
    """

    def __init__(
        self,
        use_fast_path: bool = True,
        timeout_s: float = 5.0,
        workers: int = 2,
        max_answer_chars: int = 1000,
        memory_limit_mb: int | None = 4096,
    ) -> None:
        if timeout_s <= 0 or workers < 1 or max_answer_chars < 1:
            raise ValueError("timeout_s must be > 0, workers >= 1 and max_answer_chars >= 1")
        self.config = GraderConfig(use_fast_path, float(timeout_s), workers, max_answer_chars, memory_limit_mb)
        self._pool = VerifyPool(workers, memory_limit_mb)
        self._lock = threading.Lock()
        # Workers must not outlive a grader that was never closed (or the interpreter).
        weakref.finalize(self, self._pool.close)

    @classmethod
    def from_config(cls, config: GraderConfig) -> Grader:
        return cls(**dataclasses.asdict(config))

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        with self._lock:
            self._pool.close()

    def grade(self, gold: str, pred: str) -> bool:
        """True when ``pred`` is equivalent to ``gold``."""
        return self.grade_many([(gold, pred)])[0].correct

    def grade_many(self, pairs: list[tuple[str, str]]) -> list[GradeResult]:
        """Grade (gold, prediction) pairs; results in input order.

        Pairs the fast checks cannot decide run through math-verify in parallel workers.
        """
        pairs = list(pairs)
        results: list[GradeResult | None] = [self._decide_locally(g, p) for g, p in pairs]
        todo = [i for i, result in enumerate(results) if result is None]
        if todo:
            forms = [(grading_form(pairs[i][0]), grading_form(pairs[i][1])) for i in todo]
            with self._lock:
                outcomes = self._pool.run(forms, self.config.timeout_s)
            for i, outcome in zip(todo, outcomes, strict=True):
                results[i] = outcome
        return [r for r in results if r is not None]

    def equivalent(self, a: str, b: str) -> bool:
        """Symmetric equivalence for grouping votes: same canonical string, or verify either way."""
        if not a.strip() or not b.strip():
            return False
        if canonical_answer(a) == canonical_answer(b):
            return True
        return any(r.correct for r in self.grade_many([(a, b), (b, a)]))

    def _decide_locally(self, gold: str, pred: str) -> GradeResult | None:
        """The verdict when it needs no math-verify, else None."""
        limit = self.config.max_answer_chars
        if len(pred) > 2 * limit or len(gold) > 2 * limit:  # before any string work
            side = "prediction" if len(pred) > 2 * limit else "gold"
            return GradeResult(False, GradePath.TOO_LONG, f"{side} longer than {limit} chars")
        gold, pred = grading_form(gold), grading_form(pred)
        if not pred:
            return GradeResult(False, GradePath.EMPTY, "no predicted answer")
        if not gold:
            return GradeResult(False, GradePath.EMPTY, "empty gold answer")
        if len(pred) > limit or len(gold) > limit:
            side = "prediction" if len(pred) > limit else "gold"
            return GradeResult(False, GradePath.TOO_LONG, f"{side} longer than {limit} chars")
        for side, text in (("prediction", pred), ("gold", gold)):
            if "**" in text and _PYTHON_POWER_RE.search(text):
                return GradeResult(False, GradePath.REJECTED, f"{side} uses Python's ** power, not LaTeX")
        if not self.config.use_fast_path:
            return None
        gold_number, pred_number = parse_plain_number(gold), parse_plain_number(pred)
        if gold_number is not None and pred_number is not None:
            same = numbers_equal(gold_number, pred_number)
            reason = f"plain numbers {'equal' if same else 'differ'}"
            return GradeResult(same, GradePath.FAST, reason)
        if canonical_answer(gold) == canonical_answer(pred):
            return GradeResult(True, GradePath.EXACT, "same canonical string")
        return None


def unwinnable_reason(gold: str, max_answer_chars: int = GraderConfig.max_answer_chars) -> str:
    """Why no prediction can be graded right against ``gold``; ``""`` when one can.

    The gold-side verdicts of :meth:`Grader.grade_many` that need no worker: an empty gold, one
    longer than ``max_answer_chars``, one in a form the grader rejects. Cheap (string work only),
    so benchmark loaders flag such problems on every load.
    """
    if len(gold) > 2 * max_answer_chars:
        return f"gold longer than {max_answer_chars} chars"
    form = grading_form(gold)
    if not form:
        return "empty gold"
    if len(form) > max_answer_chars:
        return f"gold longer than {max_answer_chars} chars"
    if "**" in form and _PYTHON_POWER_RE.search(form):
        return "gold uses Python's ** power"
    return ""


_shared: Grader | None = None
_shared_lock = threading.Lock()


def shared_grader() -> Grader:
    """A process-wide default :class:`Grader`, created on first use and closed at exit.

    It backs :func:`answers_equivalent` when no grader is passed, so that voting code need not
    thread a grader through every call and the worker processes start once, not per call.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Grader()
            atexit.register(_shared.close)
        return _shared


def answers_equivalent(a: str, b: str, grader: Grader | None = None) -> bool:
    """True when two predicted answers should count as the same answer in a vote.

    Symmetric: canonical strings equal, plain numbers equal, or math-verify accepts either
    order. Empty answers are never equivalent to anything. math-verify (if needed) runs in
    ``grader``'s workers, or in :func:`shared_grader`'s.
    """
    if not a.strip() or not b.strip():
        return False
    if canonical_answer(a) == canonical_answer(b):
        return True
    a_number, b_number = parse_plain_number(a), parse_plain_number(b)
    if a_number is not None and b_number is not None:
        return numbers_equal(a_number, b_number)  # symmetric
    return (grader or shared_grader()).equivalent(a, b)
