"""The toy corpus's slips as step preference pairs: does the first differing character give the answer away?

A step pair compares a correct sibling with a wrong one after the same prefix, so the two lines
share ``Step k: a<op>b=`` and first differ inside the result. Under the v1 error model almost every
slip makes the number larger (c+1, c+10, a dropped minus sign), so "the smaller character is the
correct one" predicts the pair: a step-DPO run that moves the model learns that shortcut. The v2
error model must not have it; v1 is kept (it names the cached base model) and shown to fail.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import replace

import pytest

from sppd.toy.checker import check_steps
from sppd.toy.config import ToyWorldConfig
from sppd.toy.world import (
    Step,
    apply_op,
    corpus_text,
    corrupt_steps,
    format_solution,
    next_op_index,
    parse_expr,
    reduce_at,
    render_expr,
    sample_questions,
    slip_candidates,
)
from sppd.types import ToyErrorModel


def slip_pairs(cfg: ToyWorldConfig, n_questions: int, seed: int = 0) -> list[tuple[str, str]]:
    """(correct line, wrong line) at the erring step of corpus solutions of train questions."""
    rng = random.Random(f"balance-{seed}")
    pairs = []
    for q in sample_questions(cfg, "train", n_questions, seed, unique=False):
        steps, wrong_at = corrupt_steps(q, cfg, rng)
        if wrong_at is None:
            continue
        nums, ops = parse_expr(steps[wrong_at - 1].state if wrong_at else q)
        i = next_op_index(ops)
        c = apply_op(nums[i], ops[i], nums[i + 1])
        right_nums, right_ops = reduce_at(nums, ops, i, c)
        right = Step(nums[i], ops[i], nums[i + 1], c, render_expr(right_nums, right_ops))
        pairs.append((right.line(wrong_at + 1), steps[wrong_at].line(wrong_at + 1)))
    return pairs


def first_difference(right: str, wrong: str) -> tuple[str, str]:
    """The two lines' characters where they first differ; "" for a line that ends first."""
    k = next(j for j in range(max(len(right), len(wrong))) if right[j : j + 1] != wrong[j : j + 1])
    return right[k : k + 1], wrong[k : k + 1]


def balance(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """(share of pairs whose correct side has the smaller first differing character, share of the
    most common (correct char, wrong char) kind); a line that ends first has the smaller one."""
    firsts = [first_difference(right, wrong) for right, wrong in pairs]
    top_kind = Counter(firsts).most_common(1)[0][1]
    return sum(r < w for r, w in firsts) / len(pairs), top_kind / len(pairs)


def minus_side(pairs: list[tuple[str, str]]) -> tuple[int, int]:
    """(pairs where only the correct side has a '-' at the first difference, pairs where only the wrong side has)."""
    firsts = [first_difference(right, wrong) for right, wrong in pairs]
    return sum(r == "-" for r, _ in firsts), sum(w == "-" for _, w in firsts)


def balanced(pairs: list[tuple[str, str]]) -> bool:
    smaller_share, top_kind_share = balance(pairs)
    return abs(smaller_share - 0.5) <= 0.10 and top_kind_share <= 0.15


V1 = ToyWorldConfig()
V2 = replace(V1, error_model=ToyErrorModel.V2)


def toy_world() -> ToyWorldConfig:
    """The world of the shipped toy config (the demo's)."""
    from sppd.settings import load_run_config

    return load_run_config("toy").toy.world


def test_the_demo_world_is_v3():
    """v3 = v2's slips on 4-6 operations, carrying/borrowing steps erring too (graded values)."""
    world = toy_world()
    assert world.error_model is ToyErrorModel.V2 and world.corrupt_medium_rate > 0
    assert (world.min_ops, world.max_ops) == (4, 6)


@pytest.mark.parametrize("seed", range(2))
def test_v2_slips_do_not_give_the_correct_step_away(seed):
    pairs = slip_pairs(toy_world(), 3000, seed)
    assert len(pairs) > 500
    assert balanced(pairs), balance(pairs)
    # the side with the minus is right about as often as wrong (errors concentrate on steps crossing
    # below zero, so a full share of sign slips there would lean); measured 128 vs 128 of 1441
    right_minus, wrong_minus = minus_side(pairs)
    assert wrong_minus > 0 and right_minus < 2 * wrong_minus


def test_v1_slips_do_give_it_away():
    # the shortcut the v2 model removes, in numbers: the balance check can fail
    pairs = slip_pairs(V1, 3000)
    smaller_share, _ = balance(pairs)
    assert smaller_share > 0.75 and not balanced(pairs)
    assert minus_side(pairs)[1] == 0  # a minus is never the wrong side's


def test_v1_is_the_default_and_its_corpus_is_unchanged():
    assert ToyWorldConfig().error_model == ToyErrorModel.V1
    cfg = ToyWorldConfig(corrupt_hard_rate=0.5, corrupt_easy_rate=0.5)
    rng = random.Random(3)
    texts = [corpus_text(q, cfg, rng)[0] for q in sample_questions(cfg, "train", 300, 0, unique=False)]
    # measured with the code before v2 existed: the same texts and the same random stream after them
    assert hashlib.sha256("\n\n".join(texts).encode()).hexdigest()[:16] == "59786048d83cb48f"
    assert rng.random() == 0.002372891511639441


@pytest.mark.parametrize("seed", range(3))
def test_v2_corpus_errs_once_and_the_checker_sees_it(seed):
    cfg = replace(V2, corrupt_hard_rate=0.8, corrupt_easy_rate=0.3, corrupt_medium_rate=0.5, terse_rate=0.3)
    rng = random.Random(seed)
    for q in sample_questions(cfg, "train", 200, seed, unique=False):
        steps, wrong_at = corrupt_steps(q, cfg, rng)
        lines = format_solution(steps, steps[-1].result).split("\n")
        assert check_steps(q, lines) == [j != wrong_at for j in range(len(steps))] + [True], (q, lines)


def test_slip_candidates_cover_both_directions_and_every_kind():
    # 3*4 = 12 inside 7+12-5: not the first number, so no sign slip and nothing negative
    assert slip_candidates([7, 3, 4, 5], ["+", "*", "-"], 1) == {
        "off_by_one": [11, 13],
        "tens": [2, 22],
        "swap": [21],
        "operand": [15, 20, 21, 28],  # 7 or 5 copied in place of 3 or 4
        "operator": [7],  # 3+4 (3-4 would be negative)
    }
    # 3-8 = -5 opens the expression: only the sign slip leaves the negatives
    assert slip_candidates([3, 8], ["-"], 0) == {"off_by_one": [-6, -4], "tens": [-15], "sign": [5]}
    assert slip_candidates([9, 2], ["-"], 0)["sign"] == [-7]  # a minus added as well as dropped


def test_v2_is_a_config_choice_with_its_own_base_model():
    from sppd.errors import SppdError
    from sppd.settings import load_run_config
    from sppd.toy.pretrain import config_hash

    v1 = load_run_config("toy-tiny", ["toy.world.error_model=v1"]).toy
    v2 = load_run_config("toy-tiny").toy
    assert v2.world.error_model is ToyErrorModel.V2
    assert config_hash(v2) != config_hash(v1) == config_hash(replace(v1, world=replace(v1.world)))
    with pytest.raises((SppdError, ValueError), match="error_model"):
        load_run_config("toy-tiny", ["toy.world.error_model=v3"])
