"""Toy checker: final answers and per-step verdicts on right, wrong, garbage and partial text."""

import random

from sppd.toy.checker import check_answer, check_steps, extract_answer

Q = "7+3*4-5"
RIGHT = ["Step 1: 3*4=12, 7+12-5", "Step 2: 7+12=19, 19-5", "Step 3: 19-5=14", "The answer is \\boxed{14}"]


def test_extract_and_check_answer():
    assert extract_answer("x \\boxed{3} then \\boxed{ 14 }") == "14"
    assert extract_answer("no box here") is None
    assert check_answer("14", "The answer is \\boxed{14}")
    assert check_answer("-3", "The answer is \\boxed{-3}")
    assert not check_answer("14", "The answer is \\boxed{15}")
    assert not check_answer("14", "The answer is 14")  # no box
    assert not check_answer("14", "\\boxed{14.0}")
    assert not check_answer("14", "\\boxed{}")
    assert not check_answer("x", "\\boxed{14}")
    assert check_answer("14", "\\boxed{1} ... \\boxed{14}")  # the last box counts


def test_right_solution():
    assert check_steps(Q, RIGHT) == [True, True, True, True]
    # Steps as the sampler cuts them (delimiter kept) and without the optional state.
    assert check_steps(Q, [s + "\n" for s in RIGHT]) == [True] * 4
    assert (
        check_steps(Q, ["Step 1: 3*4=12", "Step 2: 7+12=19", "Step 3: 19-5=14", "The answer is \\boxed{14}"])
        == [True] * 4
    )


def test_wrong_arithmetic_is_flagged_once():
    wrong = ["Step 1: 3*4=12, 7+12-5", "Step 2: 7+12=20, 20-5", "Step 3: 20-5=15", "The answer is \\boxed{15}"]
    assert check_steps(Q, wrong) == [True, False, True, True]


def test_wrong_state_copy_and_unavailable_operands():
    # Right product, but the rewritten expression dropped a term.
    assert check_steps(Q, ["Step 1: 3*4=12, 7+12"]) == [False]
    # 7+3 ignores precedence; 4-5 uses numbers not adjacent in the state; 8*2 are not there.
    assert check_steps(Q, ["Step 1: 7+3=10, 10*4-5"]) == [False]
    assert check_steps(Q, ["Step 1: 3*4=12, 7+12-5", "Step 2: 12-5=7, 7+7"]) == [True, True]
    assert check_steps("9-4-3", ["Step 1: 4-3=1, 9-1"]) == [False]  # 9-(4-3) is not 9-4-3
    assert check_steps(Q, ["Step 1: 8*2=16"]) == [False]


def test_other_valid_orders_are_accepted():
    # 12-5 after 7+12: a '+' before the left operand keeps the value.
    assert (
        check_steps(
            Q, ["Step 1: 3*4=12, 7+12-5", "Step 2: 12-5=7, 7+7", "Step 3: 7+7=14", "The answer is \\boxed{14}"]
        )
        == [True] * 4
    )
    # A later product first.
    assert check_steps("2*3+4*5", ["Step 1: 4*5=20, 2*3+20", "Step 2: 2*3=6, 6+20"]) == [True, True]


def test_answer_line():
    assert check_steps(Q, RIGHT[:3] + ["The answer is \\boxed{13}"]) == [True, True, True, False]
    # Answering early: right only if the value of the unreduced state matches.
    assert check_steps(Q, ["The answer is \\boxed{14}"]) == [True]
    assert check_steps(Q, ["The answer is \\boxed{12}"]) == [False]
    # Anything after the answer line is wrong.
    assert check_steps(Q, RIGHT + ["Step 4: 1+1=2"]) == [True] * 4 + [False]


def test_garbage_and_partial():
    assert check_steps(Q, []) == []
    assert check_steps(Q, RIGHT[:2]) == [True, True]
    assert check_steps(Q, ["Step 1: 3*4=", "", "hello", "Step 1: 3*4=12, 7+12-5"]) == [False, False, False, True]
    assert check_steps(Q, ["Step 1: 3*4=12, 7++12"]) == [False]
    assert check_steps("not a question", RIGHT) == [False] * 4
    assert check_steps(Q, [None, 3]) == [False, False]  # type: ignore[list-item]
    assert check_steps("3*4", ["Step 1: 3*4=12", "Step 2: 12*1=12"]) == [True, False]  # nothing left


def test_never_raises_on_random_strings():
    rng = random.Random(0)
    alphabet = "0123456789+-*=:, \n{}\\boxedStepThe answer is"
    for _ in range(500):
        texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3)]
        verdicts = check_steps(Q, texts)
        assert len(verdicts) == 3 and all(isinstance(v, bool) for v in verdicts)
        assert isinstance(check_answer("14", texts[0]), bool)
    huge = "Step 1: " + "9" * 29 + "*" + "9" * 29 + "=1, " + "9*" * 400 + "9"
    assert check_steps(Q, [huge, "The answer is \\boxed{1}"]) == [False, False]
