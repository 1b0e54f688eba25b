"""Toy world: generation determinism, held-out split, reference solutions and corpus noise."""

import random

import pytest

from sppd.toy.checker import check_answer, check_steps
from sppd.toy.config import ToyWorldConfig
from sppd.toy.world import (
    STEP_DELIMITER,
    Step,
    corrupt_steps,
    format_solution,
    generate_problems,
    parse_expr,
    plausible_error,
    prompt_text,
    sample_questions,
    solve,
    split_of,
)

CFG = ToyWorldConfig()


def test_generation_is_deterministic_by_seed():
    a = generate_problems(CFG, "test", 50, seed=3)
    b = generate_problems(CFG, "test", 50, seed=3)
    c = generate_problems(CFG, "test", 50, seed=4)
    assert [p.question for p in a] == [p.question for p in b]
    assert [p.question for p in a] != [p.question for p in c]
    # A longer list extends the shorter one.
    longer = generate_problems(CFG, "test", 80, seed=3)
    assert [p.question for p in longer[:50]] == [p.question for p in a]


def test_problem_records():
    problems = generate_problems(CFG, "test", 20, seed=0)
    assert problems[17].id == "toy-test-000017"
    assert len({p.question for p in problems}) == 20
    for p in problems:
        assert p.source == "toy"
        n_ops = sum(ch in "+-*" for ch in p.question[1:])
        assert CFG.min_ops <= n_ops <= CFG.max_ops
        assert "*" * 2 not in p.question
        assert p.gold == str(solve(p.question)[-1].result)


def test_train_and_test_are_disjoint_for_any_seed():
    test_qs = set()
    for seed in range(3):
        test_qs |= {p.question for p in generate_problems(CFG, "test", 300, seed)}
    train_qs = set(sample_questions(CFG, "train", 5000, seed=9, unique=False))
    assert not test_qs & train_qs
    assert all(split_of(q, CFG) == "test" for q in test_qs)
    # The split is a property of the question, roughly test_fraction of the space.
    drawn = sample_questions(ToyWorldConfig(test_fraction=0.5), "train", 10, 0, True)
    assert all(split_of(q, ToyWorldConfig(test_fraction=0.5)) == "train" for q in drawn)


def test_solve_and_format_hand_example():
    steps = solve("7+3*4-5")
    assert [(s.a, s.op, s.b, s.result) for s in steps] == [(3, "*", 4, 12), (7, "+", 12, 19), (19, "-", 5, 14)]
    assert [s.state for s in steps] == ["7+12-5", "19-5", "14"]
    text = format_solution(steps, 14)
    assert text == ("Step 1: 3*4=12, 7+12-5\nStep 2: 7+12=19, 19-5\nStep 3: 19-5=14\nThe answer is \\boxed{14}")
    assert STEP_DELIMITER == "\n"
    assert prompt_text("7+3*4-5") == "Q: 7+3*4-5\n"


def test_solve_left_to_right_and_negative_states():
    # Products first, left to right; then +/- left to right (not right to left).
    steps = solve("2*3-8+1*4")
    assert [(s.a, s.op, s.b, s.result) for s in steps] == [
        (2, "*", 3, 6),
        (1, "*", 4, 4),
        (6, "-", 8, -2),
        (-2, "+", 4, 2),
    ]
    assert steps[2].state == "-2+4"
    assert solve("9-4-3")[0].result == 5  # (9-4)-3, not 9-(4-3)
    assert parse_expr("-2+4") == ([-2, 4], ["+"])
    assert parse_expr("2+-4") is None and parse_expr("") is None and parse_expr("3*") is None


def test_plausible_errors_are_the_documented_slips():
    assert plausible_error(7, "*", 8, CFG) == (True, 66)  # product >= 30: tens digit +1
    assert plausible_error(3, "*", 4, CFG) == (False, 13)  # easy: off by one
    assert plausible_error(3, "-", 8, CFG) == (True, 5)  # crosses zero: sign dropped
    assert plausible_error(-5, "+", 2, CFG) == (False, -2)
    assert plausible_error(23, "-", 7, ToyWorldConfig(hard_borrow=True)) == (True, 26)
    assert plausible_error(17, "+", 8, ToyWorldConfig(hard_carry=True)) == (True, 15)


def test_corruption_is_one_wrong_step_carried_to_the_answer():
    cfg = ToyWorldConfig(corrupt_hard_rate=1.0, corrupt_easy_rate=1.0)
    steps, wrong_at = corrupt_steps("7+3*4-5", cfg, random.Random(0))
    # Every step would err, but only the first does; later steps are right given its value.
    assert wrong_at == 0
    assert [(s.a, s.op, s.b, s.result) for s in steps] == [(3, "*", 4, 13), (7, "+", 13, 20), (20, "-", 5, 15)]
    lines = format_solution(steps, steps[-1].result).split("\n")
    assert check_steps("7+3*4-5", lines) == [False, True, True, True]
    assert not check_answer("14", lines[-1])


@pytest.mark.parametrize("seed", range(5))
def test_corpus_errors_flagged_exactly_once(seed):
    cfg = ToyWorldConfig(corrupt_hard_rate=0.6, corrupt_easy_rate=0.2)
    rng = random.Random(seed)
    n_wrong = 0
    for q in sample_questions(cfg, "train", 200, seed, unique=False):
        steps, wrong_at = corrupt_steps(q, cfg, rng)
        lines = format_solution(steps, steps[-1].result).split("\n")
        verdicts = check_steps(q, lines)
        expected = [i != wrong_at for i in range(len(steps))] + [True]
        assert verdicts == expected, (q, lines)
        gold = str(solve(q)[-1].result)
        assert check_answer(gold, lines[-1]) == (wrong_at is None)
        n_wrong += wrong_at is not None
    assert 40 < n_wrong < 160


def test_clean_corpus_at_zero_rates():
    cfg = ToyWorldConfig(corrupt_hard_rate=0.0, corrupt_easy_rate=0.0)
    for q in sample_questions(cfg, "train", 100, 0, unique=False):
        steps, wrong_at = corrupt_steps(q, cfg, random.Random(0))
        assert wrong_at is None and steps == solve(q)


def test_bad_config_and_question():
    with pytest.raises(ValueError):
        ToyWorldConfig(min_ops=3, max_ops=2)
    with pytest.raises(ValueError):
        ToyWorldConfig(ops="+/")
    with pytest.raises(ValueError):
        solve("7+x")
    with pytest.raises(ValueError):
        generate_problems(ToyWorldConfig(min_ops=1, max_ops=1, operand_max=1, ops="+"), "test", 5, 0)


def test_step_line_without_state_when_done():
    assert Step(19, "-", 5, 14, "14").line(3) == "Step 3: 19-5=14"
    assert Step(3, "*", 4, 12, "7+12-5").line(1) == "Step 1: 3*4=12, 7+12-5"


def test_val_split_is_disjoint_from_train_and_test():
    cfg = ToyWorldConfig()
    val = {p.question for p in generate_problems(cfg, "val", 200, seed=0)}
    train = {p.question for p in generate_problems(cfg, "train", 2000, seed=0)}
    test = {p.question for p in generate_problems(cfg, "test", 400, seed=0)}
    assert len(val) == 200 and not (val & train) and not (val & test)
    assert all(split_of(q, cfg) == "val" for q in val)
    assert generate_problems(cfg, "val", 3, seed=0)[0].id == "toy-val-000000"
    with pytest.raises(ValueError, match="val_fraction"):
        ToyWorldConfig(test_fraction=0.5, val_fraction=0.6)
