"""Grading: equivalence table, fast path vs math-verify, timeouts on hostile answers, threads."""

import os
import signal
import threading
import time

import pytest

from sppd.eval.grading import (
    GradePath,
    Grader,
    GraderConfig,
    answers_equivalent,
    canonical_answer,
)

EQUIVALENT = [
    # fractions
    ("\\frac{1}{2}", "1/2"),
    ("\\frac{1}{2}", "\\dfrac{1}{2}"),
    ("\\frac12", "0.5"),
    ("\\tfrac{3}{4}", "0.75"),
    ("-\\frac{2}{3}", "\\frac{-2}{3}"),
    ("\\frac{6}{8}", "\\frac{3}{4}"),
    # decimals
    ("0.5", "0.50"),
    ("\\frac{1}{3}", "0.333333"),
    ("2", "2.0"),
    # percent
    ("50\\%", "50"),
    ("50\\%", "0.5"),
    ("12.5\\%", "12.5"),
    # thousands separators
    ("1000", "1,000"),
    ("1000000", "1{,}000{,}000"),
    # x=5 versus 5
    ("5", "x=5"),
    ("x=5", "5"),
    # intervals
    ("[1,2)", "[1, 2)"),
    ("(-\\infty, 3]", "(-\\infty,3]"),
    # tuples
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("(1,-2,3)", "(1, -2, 3)"),
    # square roots
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ("2\\sqrt{3}", "\\sqrt{12}"),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt2}{2}"),
    # pi multiples
    ("2\\pi", "2 \\pi"),
    ("\\frac{\\pi}{2}", "\\pi/2"),
    ("\\frac{3\\pi}{4}", "\\frac34\\pi"),
    # degrees
    ("90^\\circ", "90"),
    ("30", "30^{\\circ}"),
    # text answers
    ("\\text{Evelyn}", "Evelyn"),
    ("\\text{(C)}", "C"),
    ("\\text{yes}", "yes"),
    # other forms
    ("x^2+2x+1", "(x+1)^2"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("\\$18.90", "18.9"),
    ("5\\text{ cm}", "5"),
    ("3+4i", "4i+3"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    # e-notation (58 OCW golds): math-verify alone reads the "e" as Euler's number
    ("4.5e33", "4.5 \\times 10^{33}"),
    ("4.5e33", "4.5\\cdot10^{33}"),
    ("4.5e33", "4.5e33"),
    ("1e-5", "0.00001"),
    ("1.2E+3", "1200"),
    ("2.7778e-6", "2.7778 \\times 10^{-6}"),
    # Python float before a division (OCW "-1./3")
    ("-1./3", "-\\frac{1}{3}"),
    ("-3./2", "-1.5"),
    # "\text {red}" (space after \text) and a gold with an inner "$ $" (OCW)
    ("\\lambda_{\\text {red}} / \\sqrt{2}", "\\lambda_{\\text{red}} / \\sqrt{2}"),
    (
        "x_{0} \\cos (\\omega t)+$ $\\dot{x}_{0} \\sin (\\omega t) / \\omega",
        "x_0\\cos(\\omega t)+\\dot{x}_0\\sin(\\omega t)/\\omega",
    ),
]

NOT_EQUIVALENT = [
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("\\frac{2}{3}", "\\frac{3}{2}"),
    ("0.5", "0.55"),
    ("12", "12.1"),
    ("\\frac{1}{3}", "0.333"),
    ("50\\%", "5"),
    ("1000", "100"),
    ("1,000", "1"),
    ("-5", "5"),
    ("5", "x=6"),
    ("[1,2)", "(1,2)"),
    ("[0,1]", "[0,1)"),
    ("(1,2)", "(2,1)"),
    ("(1,2,3)", "(1,3,2)"),
    ("\\sqrt{2}", "2"),
    ("\\sqrt{2}", "\\sqrt{3}"),
    ("2\\pi", "\\pi"),
    ("\\pi", "3.14"),
    ("90^\\circ", "45^\\circ"),
    ("\\text{Evelyn}", "\\text{Alice}"),
    ("\\text{A}", "\\text{B}"),
    ("x+1", "x-1"),
    ("1,2", "1,3"),
    ("3", ""),
    # e-notation: 4.5e33 is not 4.5*e*33, and small numbers are not all 0 to 6 places
    ("4.5e33", "148.5e"),
    ("4.5e33", "4.5"),
    ("1e-8", "3e-8"),
    ("1e-8", "0"),
    ("148.5", "148.5e"),
    # a./b is a/b, not a
    ("-1./3", "-1"),
    ("-3./2", "-3"),
    # Python powers are not LaTeX (math-verify read "2**3" as 2)
    ("2", "2**3"),
    ("2", "2**2"),
    ("2", "2**2**2**2"),
    ("8", "2 ** 3"),
]


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout_s=5.0, workers=2) as g:
        yield g


@pytest.fixture(scope="module")
def quick_grader():
    """A short timeout below math-verify's own 1 s alarm, so hostile answers hit the kill."""
    with Grader(timeout_s=0.5, workers=2, max_answer_chars=200_000) as g:
        g.grade("x", "x+0")  # start the workers before anything is timed
        yield g


def test_equivalent_pairs(grader):
    results = grader.grade_many(EQUIVALENT)
    wrong = [(pair, r) for pair, r in zip(EQUIVALENT, results, strict=True) if not r.correct]
    assert wrong == []


def test_not_equivalent_pairs(grader):
    results = grader.grade_many(NOT_EQUIVALENT)
    wrong = [(pair, r) for pair, r in zip(NOT_EQUIVALENT, results, strict=True) if r.correct]
    assert wrong == []


def test_grading_is_order_independent_on_the_table(grader):
    flipped = [(p, g) for g, p in EQUIVALENT]
    assert all(r.correct for r in grader.grade_many(flipped))


def test_fast_path_decides_plain_numbers_and_agrees_with_math_verify(grader):
    pairs = EQUIVALENT + NOT_EQUIVALENT
    fast = grader.grade_many(pairs)
    plain = [pair for pair, r in zip(pairs, fast, strict=True) if r.path is GradePath.FAST]
    assert len(plain) >= 20  # fractions, decimals, percent, separators, degrees
    with Grader(use_fast_path=False, timeout_s=5.0, workers=2) as slow_grader:
        slow = slow_grader.grade_many(plain)
    assert all(r.path is GradePath.VERIFY for r in slow)
    fast_only = [r for r in fast if r.path is GradePath.FAST]
    disagree = [pair for pair, f, s in zip(plain, fast_only, slow, strict=True) if f.correct != s.correct]
    # The one documented difference: a decimal percent also matches its face value.
    assert disagree == [("12.5\\%", "12.5")]


def test_paths_and_reasons(grader):
    fast, exact, verify, empty = grader.grade_many([("1/2", "0.5"), ("[1,2)", "[1, 2)"), ("x+1", "1+x"), ("3", "  ")])
    assert (fast.path, exact.path, verify.path, empty.path) == ("fast", "exact", "verify", "empty")
    assert fast.correct and exact.correct and verify.correct and not empty.correct
    assert "math-verify" in verify.reason and empty.reason


def test_python_powers_are_rejected_without_a_worker():
    with Grader() as g:
        results = g.grade_many([("2", "2**3"), ("2", "2**2**2**2**2**99"), ("2**3", "8"), ("5", "**5**")])
        assert g._pool._workers == []  # never computed, never parsed
    assert [(r.correct, r.path) for r in results[:3]] == [(False, GradePath.REJECTED)] * 3
    assert "prediction" in results[0].reason and "gold" in results[2].reason
    assert results[3].correct and results[3].path is GradePath.FAST  # markdown bold is not a power


def test_too_long_answers_are_wrong_without_parsing():
    with Grader(max_answer_chars=50) as g:  # never starts a worker: decided locally
        long_pred, long_gold = g.grade_many([("5", "5" * 51), ("5" * 51, "5")])
        assert g._pool._workers == []
    assert not long_pred.correct and long_pred.path is GradePath.TOO_LONG
    assert "prediction" in long_pred.reason and "gold" in long_gold.reason


HOSTILE = [
    "2^{2^{2^{2^{2^{2^{99}}}}}}",
    "9^{9^{9^{9}}}",
    "100000000!",
    "{" * 5000 + "1" + "}" * 5000,
]


@pytest.mark.slow
def test_hostile_answers_are_wrong_within_the_timeout(quick_grader):
    start = time.monotonic()
    results = quick_grader.grade_many([("5", answer) for answer in HOSTILE])
    elapsed = time.monotonic() - start
    assert [r.correct for r in results] == [False] * len(HOSTILE)
    assert results[0].path is GradePath.TIMEOUT and "killed" in results[0].reason
    # 4 answers, 2 workers, 0.5 s each plus worker replacement: far below any hang.
    assert elapsed < 20.0
    # The pool recovered: a normal pair still goes through math-verify correctly.
    assert quick_grader.grade_many([("x+1", "1+x")])[0].path is GradePath.VERIFY


@pytest.mark.slow
def test_one_hostile_answer_is_bounded(quick_grader):
    start = time.monotonic()
    result = quick_grader.grade_many([("5", "2^{2^{2^{2^{2^{2^{99}}}}}}")])[0]
    assert not result.correct and result.path is GradePath.TIMEOUT
    assert time.monotonic() - start < 0.5 + 3.0  # timeout plus killing the worker


def test_100k_character_answers_are_wrong_quickly(grader):
    start = time.monotonic()
    results = grader.grade_many([("5", "1" * 100_000), ("5", "$" * 100_000), ("1" * 100_000, "1")])
    assert [(r.correct, r.path) for r in results] == [(False, GradePath.TOO_LONG)] * 3
    assert time.monotonic() - start < 1.0


def test_grading_from_a_worker_thread(grader):
    out = []

    def work():
        out.extend(grader.grade_many([("x^2+2x+1", "(x+1)^2"), ("x", "y"), ("1/2", "0.5")]))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert [r.correct for r in out] == [True, False, True]
    assert out[0].path is GradePath.VERIFY


@pytest.mark.slow
def test_dead_worker_is_replaced(quick_grader):
    quick_grader.grade("x+1", "1+x")
    for worker in quick_grader._pool._workers:
        os.kill(worker.process.pid, signal.SIGKILL)  # our own child: simulate a C-level abort
        worker.process.wait(timeout=10)
    results = quick_grader.grade_many([("x+1", "1+x"), ("x", "y")])
    assert [r.correct for r in results] == [True, False]


def test_answers_equivalent_is_symmetric(grader):
    for a, b in [("x=5", "5"), ("5", "x=5"), ("\\frac{1}{2}", "0.5"), ("50\\%", "\\frac12")]:
        assert answers_equivalent(a, b, grader) and answers_equivalent(b, a, grader)
    assert not answers_equivalent("1/2", "1/3", grader)
    assert not answers_equivalent("", "", grader)


def test_canonical_answer():
    assert canonical_answer("$\\dfrac{1}{2}$") == canonical_answer("0.5") == "1/2"
    assert canonical_answer("\\left( 1, 2 \\right)") == "(1,2)"
    assert canonical_answer("\\text{Evelyn}.") == "Evelyn"
    assert canonical_answer("30^{\\circ}") == "30"
    assert canonical_answer("\\text {red}") == canonical_answer("\\textbf  {red}") == "red"
    assert canonical_answer("4.5e33") == canonical_answer("4.5 \\times 10^{33}")


def test_config_validation_and_from_config():
    with pytest.raises(ValueError):
        Grader(timeout_s=0)
    with pytest.raises(ValueError):
        Grader(workers=0)
    config = GraderConfig(use_fast_path=False, timeout_s=2.0, workers=1)
    assert Grader.from_config(config).config == config


def test_workers_that_cannot_start_raise_a_clear_error():
    with Grader(memory_limit_mb=50, workers=1) as g:  # too little memory to import sympy
        with pytest.raises(RuntimeError, match="failing to start"):
            g.grade("x+1", "1+x")


_FAKE_WORKER = """
import os, sys
from multiprocessing.connection import Connection
conn, marker = Connection(int(sys.argv[1])), sys.argv[2]
conn.send("ready")
while True:
    task_id, gold, pred, alarm_s = conn.recv()
    if pred == "crash-always" or (pred == "crash-once" and not os.path.exists(marker)):
        open(marker, "w").close()
        os._exit(3)
    conn.send((task_id, gold == pred, "fake verify"))
"""


@pytest.fixture
def fake_workers(monkeypatch, tmp_path):
    """Workers speaking the pool's protocol that die on chosen predictions; counts the starts."""
    import socket
    import subprocess
    import sys

    from sppd.eval import verify_pool

    starts = []

    def start(memory_limit_mb):
        parent, child = socket.socketpair()
        argv = [sys.executable, "-c", _FAKE_WORKER, str(child.fileno()), str(tmp_path / "crashed")]
        process = subprocess.Popen(argv, pass_fds=(child.fileno(),))
        child.close()
        starts.append(process)
        return verify_pool._Worker(process, verify_pool.Connection(parent.detach()), time.monotonic())

    monkeypatch.setattr(verify_pool, "_start_worker", start)
    return starts


def test_a_crashed_pair_is_retried_once_on_another_worker(fake_workers):
    with Grader(workers=1, use_fast_path=False) as g:
        first, other = g.grade_many([("crash-once", "crash-once"), ("x", "x")])
    assert first.correct and first.path is GradePath.VERIFY  # the retry went through
    assert other.correct
    assert len(fake_workers) == 2  # the crashed worker was replaced by a fresh one


def test_a_pair_that_crashes_twice_is_wrong(fake_workers):
    with Grader(workers=2, use_fast_path=False) as g:
        crashed, fine = g.grade_many([("x", "crash-always"), ("y", "y")])
    assert not crashed.correct and crashed.path is GradePath.CRASH and "twice" in crashed.reason
    assert fine.correct
    assert len(fake_workers) == 4  # two workers, each crashed one replaced
