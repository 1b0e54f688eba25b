"""The toy world's exact step checker as a PRM: for diagnostics and ablations, never the default.

The value after step t is 1.0 when steps 1..t are all correct (``check_steps``) and, if step t
is an answer line, its answer equals the question's exact value; otherwise 0.0. This is the
true V* of the toy world up to the policy's ability to finish a correct prefix. A path cut by
the depth or length limit keeps value 1.0 on its correct steps: the checker judges steps, not
whether the path was finished.
"""

from __future__ import annotations

from collections.abc import Sequence

from sppd.prm.base import PRMInput, check_scores
from sppd.toy.checker import check_steps, extract_answer
from sppd.toy.world import ANSWER_PREFIX, evaluate, parse_expr


def oracle_values(question: str, steps: Sequence[str]) -> list[float]:
    """``[v_1, ..., v_T]`` with ``v_t = 1.0`` iff steps 1..t are all right (see module doc)."""
    parsed = parse_expr(question.strip())
    if parsed is None:
        raise ValueError(f"oracle PRM: {question!r} is not a toy-world question")
    exact = evaluate(*parsed)
    values: list[float] = []
    all_ok = True
    for step, ok in zip(steps, check_steps(question, list(steps))):
        if ok and step.strip().startswith(ANSWER_PREFIX):
            # check_steps compares an answer with the state the steps wrote; the gold is fixed.
            ok = extract_answer(step) == str(exact)
        all_ok = all_ok and ok
        values.append(1.0 if all_ok else 0.0)
    return values


class OraclePRM:
    """``ProcessRewardModel`` over the exact checker (toy questions only)."""

    name = "oracle"

    def score(self, items: Sequence[PRMInput]) -> list[list[float]]:
        scores = [oracle_values(item.question, item.steps) for item in items]
        check_scores(scores, items, where=self.name)
        return scores


def build_oracle_prm() -> OraclePRM:
    """Registry factory for ``oracle``; it takes no options."""
    return OraclePRM()
