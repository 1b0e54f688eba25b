"""Math-Shepherd adapter: the model card's `Step k: ... ки` layout and +/- at each tag."""

from __future__ import annotations

import pytest
import torch
from prm_tiny_hf import char_ids, make_math_shepherd_folder

from sppd.prm.base import PRMInput, PRMScoreError
from sppd.prm.math_shepherd import build_math_shepherd_prm

ITEM = PRMInput("1+1?", ["a=2", " so 2\n"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_math_shepherd_folder(tmp_path_factory.mktemp("shepherd") / "prm")


@pytest.fixture(scope="module")
def prm(tiny):
    return build_math_shepherd_prm(tiny.folder, device="cpu")


def expected_layout(tiny, numbered=True):
    """<s> + "1+1? Step 1: a=2 ки\\nStep 2: so 2 ки" (the tag is one token)."""
    tok = tiny.tokenizer
    bos, tag = tok.convert_tokens_to_ids("<s>"), tok.convert_tokens_to_ids("ки")
    first, second = ("Step 1: a=2 ", "\nStep 2: so 2 ") if numbered else ("a=2 ", "\nso 2 ")
    ids = [bos] + char_ids(tok, "1+1? " + first) + [tag]
    positions = [len(ids) - 1]
    ids += char_ids(tok, second) + [tag]
    return ids, positions + [len(ids) - 1]


def test_layout_follows_the_model_card(tiny, prm):
    ids, positions = expected_layout(tiny)
    encoded = prm.encode(ITEM)
    assert encoded.input_ids == ids
    assert encoded.score_positions == positions == [18, 33]


def test_unnumbered_steps_layout(tiny):
    prm = build_math_shepherd_prm(tiny.folder, device="cpu", number_steps=False)
    ids, positions = expected_layout(tiny, numbered=False)
    assert prm.encode(ITEM).input_ids == ids
    assert prm.encode(ITEM).score_positions == positions


def test_scores_are_plus_against_minus_at_each_tag(tiny, prm):
    ids, positions = expected_layout(tiny)
    plus, minus = char_ids(tiny.tokenizer, "+-")
    with torch.no_grad():
        logits = tiny.reference(torch.tensor([ids])).logits[0][:, [plus, minus]]
        p_plus = torch.softmax(logits, dim=-1)[:, 0]
    (scores,) = prm.score([ITEM])
    assert scores == pytest.approx(p_plus[positions].tolist(), abs=1e-5)
    assert abs(p_plus[positions[0] - 1].item() - scores[0]) > 1e-3


def test_a_tag_inside_a_step_is_an_error_naming_the_item(prm):
    items = [PRMInput("q", ["ok"]), PRMInput("q", ["x ки y"])]
    message = "math-shepherd: item 1: the input has 2 step separators for 1 steps"
    with pytest.raises(PRMScoreError, match=message):
        prm.score(items)
