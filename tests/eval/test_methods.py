"""Greedy, MAJ@N, ORM_VOTE@N, ORM_MAX@N and pass@N on a hand-made sample file.

``data/hand_samples.jsonl`` holds 5 problems with N = 3..6 samples each and dyadic PRM scores
(exact in binary, so sums have no rounding). Every expected value below is worked out by hand in
the comments; ``s<i>`` is the i-th sample of a problem.
"""

import json
from pathlib import Path

import pytest

from sppd.eval.grading import Grader, answers_equivalent
from sppd.eval.methods import (
    MethodResult,
    Sample,
    greedy,
    group_answers,
    maj_at_n,
    orm_max_at_n,
    orm_vote_at_n,
    pass_at_n,
    sample_score,
)
from sppd.types import SampleScore

DATA = Path(__file__).parent / "data" / "hand_samples.jsonl"


def _load():
    problems = {}
    for line in DATA.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        samples = [Sample(s["answer"], s["correct"], tuple(s["step_scores"])) for s in record["samples"]]
        greedy_sample = Sample(record["greedy"]["answer"], record["greedy"]["correct"])
        problems[record["id"].split("-")[0]] = (greedy_sample, samples)
    return problems


PROBLEMS = _load()


@pytest.fixture(scope="module")
def equivalent():
    """Full equivalence (math-verify for ``x=5`` vs ``5``) through one module-wide grader."""
    with Grader(timeout_s=5.0, workers=1) as grader:
        yield lambda a, b: answers_equivalent(a, b, grader)


def never(a, b):
    """No equivalence beyond equal canonical strings."""
    return False


# (problem, SampleScore) -> expected (MAJ, ORM_VOTE, ORM_MAX) picks, each (answer, correct).
# p1: s0 "5" [.5,.25]  s1 "\frac{10}{2}" [.75,.25]  s2 "x=5" [.5,.5]  s3 "6" [1,.875]
#     groups {s0,s1,s2} (10/2 = 5 by value, x=5 by math-verify) and {s3}.
#     MAJ 3:1 -> "5". VOTE last .25+.25+.5=1.0 > .875; min same; mean .375+.5+.5=1.375 > .9375
#     -> "5". MAX: s3 is best under last (.875), min (.875) and mean (.9375) -> "6" (wrong).
# p2: s0 "" [.9375]  s1 "7" [.5]  s2 "8" [.75]  s3 "  " [1]  s4 "8" [.5]  s5 "7" [.5]
#     missing answers never vote. MAJ 7:2 vs 8:2 tie -> "7" seen first (wrong).
#     VOTE 7: 1.0, 8: 1.25 -> "8". MAX among answered: s2 .75 -> "8" (s3's 1.0 has no answer).
# p3: every answer empty -> "" and wrong for all methods (s1's empty score list is never read).
# p4: s0 "12" [.25,.75]  s1 "15" [.75,.75]  s2 "12" [.5,.5]
#     last: VOTE 12: 1.25 vs .75 -> "12"; MAX tie s0 .75 = s1 .75 -> s0 "12".
#     min:  VOTE 12: .25+.5=.75 vs .75 tie -> "12" first; MAX s1 .75 -> "15".
#     mean: VOTE 12: .5+.5=1.0 vs .75 -> "12"; MAX s1 .75 -> "15".
# p5: s0 "0.5" [.25]  s1 "\frac{1}{2}" [.25]  s2 "50\%" [.25]  s3 "\frac13" [.625]
#     one group {s0,s1,s2} by value (50% = 0.5). MAJ 3:1 and VOTE .75 > .625 -> "0.5" (wrong);
#     MAX s3 .625 -> "\frac13".
LAST, MIN, MEAN = SampleScore.LAST, SampleScore.MIN, SampleScore.MEAN
EXPECTED = {
    ("p1", LAST): (("5", True), ("5", True), ("6", False)),
    ("p1", MIN): (("5", True), ("5", True), ("6", False)),
    ("p1", MEAN): (("5", True), ("5", True), ("6", False)),
    ("p2", LAST): (("7", False), ("8", True), ("8", True)),
    ("p3", LAST): (("", False), ("", False), ("", False)),
    ("p4", LAST): (("12", False), ("12", False), ("12", False)),
    ("p4", MIN): (("12", False), ("12", False), ("15", True)),
    ("p4", MEAN): (("12", False), ("12", False), ("15", True)),
    ("p5", LAST): (("0.5", False), ("0.5", False), ("\\frac13", True)),
}


@pytest.mark.parametrize(("problem", "how"), EXPECTED)
def test_methods_on_hand_made_samples(equivalent, problem, how):
    _, samples = PROBLEMS[problem]
    got = (
        maj_at_n(samples, equivalent),
        orm_vote_at_n(samples, how, equivalent),
        orm_max_at_n(samples, how),
    )
    assert got == tuple(MethodResult(*pick) for pick in EXPECTED[problem, how])


def test_accuracy_over_the_file(equivalent):
    # greedy: p1 T, p2 F (no answer), p3 F, p4 T, p5 F -> 2/5
    # MAJ: p1 only -> 1/5; VOTE: p1, p2 -> 2/5; MAX: p2, p5 -> 2/5; pass@N: all but p3 -> 4/5
    rows = list(PROBLEMS.values())
    assert sum(greedy(g).correct for g, _ in rows) == 2
    assert sum(maj_at_n(s, equivalent).correct for _, s in rows) == 1
    assert sum(orm_vote_at_n(s, LAST, equivalent).correct for _, s in rows) == 2
    assert sum(orm_max_at_n(s, LAST).correct for _, s in rows) == 2
    assert [pass_at_n(s) for _, s in rows] == [True, True, False, True, True]


def test_equivalence_changes_the_vote():
    # p1 without math-verify: {s0, s1} .5, {x=5} .5, {6} .875 -> ORM_VOTE picks the wrong "6",
    # while MAJ still picks "5" (2 vs 1 vs 1).
    _, samples = PROBLEMS["p1"]
    assert orm_vote_at_n(samples, LAST, never) == MethodResult("6", False)
    assert maj_at_n(samples, never) == MethodResult("5", True)


def test_default_equivalence_groups_plain_numbers_without_workers():
    assert group_answers(["0.5", "\\frac{1}{2}", "", "50\\%", "1/3", "0.50"]) == [0, 0, -1, 0, 1, 0]


def test_group_answers_uses_earliest_matching_group():
    calls = []

    def loose(a, b):
        calls.append((a, b))
        return b == "a-or-b"

    assert group_answers(["a", "b", "a-or-b", "a"], loose) == [0, 1, 0, 0]
    assert ("a", "a-or-b") in calls  # compared against group representatives, first group first


@pytest.mark.parametrize(
    ("how", "expected"),
    [(SampleScore.LAST, 0.5), (SampleScore.MIN, 0.25), (SampleScore.MEAN, 0.625)],
)
def test_sample_score(how, expected):
    assert sample_score([1.0, 0.25, 0.75, 0.5], how) == expected


def test_sample_score_rejects_missing_or_nan_scores():
    with pytest.raises(ValueError, match="at least one"):
        sample_score([])
    with pytest.raises(ValueError, match="NaN"):
        sample_score([0.5, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        orm_max_at_n([Sample("5", True, ())])


def test_empty_sample_lists_are_errors():
    with pytest.raises(ValueError):
        maj_at_n([])
    with pytest.raises(ValueError):
        pass_at_n([])


def test_float_sums_that_differ_in_the_last_bit_tie():
    # 0.1 + 0.2 != 0.3 in binary; the earlier group must still win the tie.
    samples = [Sample("a", False, (0.3,)), Sample("b", True, (0.1,)), Sample("b", True, (0.2,))]
    assert orm_vote_at_n(samples, LAST, never) == MethodResult("a", False)
