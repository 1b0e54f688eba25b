"""Every gold of the shipped benchmarks is graded right against the ways a model would write it.

Goes through answer extraction and the math judge exactly as ``sppd eval`` does
(:class:`sppd.judging.MathJudge`), on every gold of the five paper benchmarks that is not
flagged unwinnable. A table of near misses (``-1`` for ``-1./3``, ``2**3`` for ``2``) must be
graded wrong. The fast path decides almost all of it; a deterministic sample of the golds that
are not plain numbers also goes through math-verify alone, so its parsing of the golds is checked.
"""

import re

import pytest

from sppd.eval.benchmarks import load_benchmark
from sppd.eval.canonical import parse_plain_number
from sppd.eval.grading import GradePath, Grader
from sppd.judging import MathJudge
from sppd.records import Problem

BENCHMARKS = ("gsm8k", "math500", "gaokao2023en", "ocw", "olympiadbench")
E_NUMBER_RE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))[eE]([+-]?\d+)")

RENDERINGS = {
    "boxed in a sentence": lambda g: f"Putting it together, we get $\\boxed{{{g}}}$ as the result.",
    "the answer is": lambda g: f"The answer is {g}",
    "in dollars": lambda g: f"Therefore, the final answer is ${g}$.",
    "minerva": lambda g: f"Final Answer: The final answer is ${g}$. I hope it is correct.",
    "display box": lambda g: f"**Final Answer**\n\\[\n\\boxed{{{g}}}\n\\]",
}
E_RENDERINGS = {  # what a model writes for an e-notation gold such as 4.5e33
    "times ten": lambda a, b: f"So $L = \\boxed{{{a} \\times 10^{{{b}}}}}$.",
    "cdot ten": lambda a, b: f"The answer is ${a}\\cdot10^{{{b}}}$.",
}

# (gold, model output) pairs that must be graded wrong; golds from the shipped sets where possible.
NEAR_MISSES = [
    ("-1./3", "\\boxed{-1}"),  # ocw: the Python float must not be read as -1
    ("-3./2", "The answer is -3."),
    ("4.5e33", "\\boxed{148.5e}"),  # ocw: not 4.5 * e * 33
    ("4.5e33", "\\boxed{4.5}"),
    ("2.7778e-6", "\\boxed{2.7778 \\times 10^{6}}"),
    ("1e-8", "\\boxed{3 \\times 10^{-8}}"),  # 6 decimal places would make these equal
    ("148.5", "\\boxed{148.5e}"),
    ("2", "\\boxed{2**3}"),  # math-verify reads "2**3" as 2
    ("2", "The answer is 2**2**2**2."),
    ("18", "The answer is \\boxed{}."),  # an empty box is no answer
    ("20", "\\boxed{20 cm^{2}}"),  # gaokao: the unit was stripped from the gold, not added to answers
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{3}}"),
    ("\\lambda_{\\text {red}} / \\sqrt{2}", "\\boxed{\\lambda_{\\text{red}} / \\sqrt{3}}"),
    ("(3, \\frac{\\pi}{2})", "\\boxed{(3, \\frac{\\pi}{3})}"),
]


@pytest.fixture(scope="module")
def judge():
    judge = MathJudge(timeout_s=5.0, workers=2)
    yield judge
    judge.close()


@pytest.fixture(scope="module")
def golds():
    """(benchmark, problem) for every shipped gold not flagged unwinnable."""
    return [(name, p) for name in BENCHMARKS for p in load_benchmark(name) if not p.unwinnable]


def _renderings(gold: str) -> list[tuple[str, str]]:
    texts = [(label, render(gold)) for label, render in RENDERINGS.items()]
    match = E_NUMBER_RE.fullmatch(gold)
    if match:
        texts += [(label, render(match.group(1), int(match.group(2)))) for label, render in E_RENDERINGS.items()]
    return texts


def test_every_gold_is_right_against_itself_and_its_renderings(judge, golds):
    items, owners = [], []
    for name, p in golds:
        for label, text in _renderings(p.gold):
            items.append((Problem(p.id, p.question, p.gold, name), text))
            owners.append((name, p.id, label))
    verdicts = judge(items)
    itself = judge.grader.grade_many([(p.gold, p.gold) for _, p in golds])
    failures = [owner + (answer,) for owner, (answer, correct) in zip(owners, verdicts, strict=True) if not correct]
    failures += [(name, p.id, "itself", r.reason) for (name, p), r in zip(golds, itself, strict=True) if not r.correct]
    assert failures == []
    passed = {name: sum(1 for n, _ in golds if n == name) for name in BENCHMARKS}
    assert passed == {"gsm8k": 1319, "math500": 500, "gaokao2023en": 383, "ocw": 272, "olympiadbench": 675}
    e_golds = sum(1 for name, p in golds if name == "ocw" and E_NUMBER_RE.fullmatch(p.gold))
    assert e_golds == 58


def test_math_verify_alone_parses_a_sample_of_the_golds(golds):
    """Every 12th gold that is not a plain number, graded against itself with the fast path off."""
    symbolic = [p.gold for _, p in golds if parse_plain_number(p.gold) is None][::12]
    assert len(symbolic) >= 40
    # A generous timeout: a first parse of a long OCW gold can take seconds on a loaded machine.
    with Grader(use_fast_path=False, timeout_s=20.0, workers=2) as grader:
        results = grader.grade_many([(g, g) for g in symbolic])
    assert [(g, r.reason) for g, r in zip(symbolic, results, strict=True) if not r.correct] == []
    assert {r.path for r in results} <= {GradePath.VERIFY, GradePath.REJECTED}


def test_near_misses_are_wrong(judge):
    golds = {p.gold for name in BENCHMARKS for p in load_benchmark(name)}
    assert {"-1./3", "-3./2", "4.5e33", "2.7778e-6", "2", "18", "20", "\\frac{1}{2}"} <= golds
    verdicts = judge([(Problem("near-miss", "", gold), text) for gold, text in NEAR_MISSES])
    assert [(pair, answer) for pair, (answer, correct) in zip(NEAR_MISSES, verdicts, strict=True) if correct] == []
