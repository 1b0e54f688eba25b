"""Qwen2.5-Math-PRM adapter: the model card's chat layout and the 2-way head at <extra_0>."""

from __future__ import annotations

import pytest
import torch
from prm_tiny_hf import char_ids, make_qwen_math_prm_folder

from sppd.prm.base import PRMInput, PRMScoreError
from sppd.prm.qwen_math_prm import build_qwen_math_prm

ITEM = PRMInput("1+1?", ["a=2\n\n", "so 2"])
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_qwen_math_prm_folder(tmp_path_factory.mktemp("qwen") / "prm")


@pytest.fixture(scope="module")
def prm(tiny):
    return build_qwen_math_prm(tiny.folder, device="cpu")


def expected_layout(tiny):
    """ChatML system / user / assistant turns; steps joined by <extra_0> plus a trailing one."""
    tok = tiny.tokenizer
    start, end, sep = (tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<extra_0>"))
    ids = [start] + char_ids(tok, "system\n" + SYSTEM) + [end] + char_ids(tok, "\n")
    ids += [start] + char_ids(tok, "user\n1+1?") + [end] + char_ids(tok, "\n")
    ids += [start] + char_ids(tok, "assistant\na=2") + [sep]
    first = len(ids) - 1
    ids += char_ids(tok, "so 2") + [sep]
    second = len(ids) - 1
    ids += [end] + char_ids(tok, "\n")
    return ids, [first, second]


def test_layout_follows_the_model_card(tiny, prm):
    ids, positions = expected_layout(tiny)
    encoded = prm.encode(ITEM)
    assert encoded.input_ids == ids
    assert encoded.score_positions == positions
    assert positions[1] - positions[0] == 5  # "so 2" sits between the two separators


def test_scores_are_the_positive_class_probability_at_each_separator(tiny, prm):
    ids, positions = expected_layout(tiny)
    head = tiny.head
    with torch.no_grad():
        hidden = tiny.reference.model(torch.tensor([ids])).last_hidden_state[0]
        inner = torch.relu(hidden @ head["score.0.weight"].T + head["score.0.bias"])
        logits = inner @ head["score.2.weight"].T + head["score.2.bias"]
        positive = torch.softmax(logits, dim=-1)[:, 1]
    (scores,) = prm.score([ITEM])
    assert scores == pytest.approx(positive[positions].tolist(), abs=1e-5)
    assert abs(positive[positions[0] - 1].item() - scores[0]) > 1e-3


def test_a_separator_inside_a_step_is_an_error_naming_the_item(prm):
    items = [PRMInput("q", ["ok"]), PRMInput("q", ["a<extra_0>b", "c"])]
    message = "qwen25-math-prm: item 1: the input has 3 step separators for 2 steps"
    with pytest.raises(PRMScoreError, match=message):
        prm.score(items)
