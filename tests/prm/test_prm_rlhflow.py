"""RLHFlow adapter: steps as user turns answered '+', P(+) where the '+' is predicted."""

from __future__ import annotations

import pytest
import torch
from prm_tiny_hf import char_ids, make_rlhflow_folder

from sppd.prm.base import PRMInput
from sppd.prm.rlhflow import build_rlhflow_prm

ITEM = PRMInput("1+1?", [" a=2\n\n", "so 2"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_rlhflow_folder(tmp_path_factory.mktemp("rlhflow") / "prm")


@pytest.fixture(scope="module")
def prm(tiny):
    return build_rlhflow_prm(tiny.folder, device="cpu")


def expected_layout(tiny):
    """Llama-3 turns: user "1+1? a=2", assistant "+", user "so 2", assistant "+"."""
    tok = tiny.tokenizer
    bos, header, header_end, eot = (
        tok.convert_tokens_to_ids(t)
        for t in ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
    )

    def turn(role, text):
        return [header] + char_ids(tok, role) + [header_end] + char_ids(tok, "\n\n" + text) + [eot]

    ids = [bos] + turn("user", "1+1? a=2")
    ids += turn("assistant", "+")
    first = len(ids) - 3  # the token before '+': the assistant header's "\n\n"
    ids += turn("user", "so 2") + turn("assistant", "+")
    return ids, [first, len(ids) - 3]


def test_layout_follows_rlhflow_conversation_format(tiny, prm):
    ids, positions = expected_layout(tiny)
    encoded = prm.encode(ITEM)
    assert encoded.input_ids == ids
    assert encoded.score_positions == positions
    plus = char_ids(tiny.tokenizer, "+")[0]
    assert [ids[p + 1] for p in positions] == [plus, plus]


def test_scores_are_plus_against_minus_where_the_answer_is_predicted(tiny, prm):
    ids, positions = expected_layout(tiny)
    plus, minus = char_ids(tiny.tokenizer, "+-")
    with torch.no_grad():
        logits = tiny.reference(torch.tensor([ids])).logits[0][:, [plus, minus]]
        p_plus = torch.softmax(logits, dim=-1)[:, 0]
    (scores,) = prm.score([ITEM])
    assert scores == pytest.approx(p_plus[positions].tolist(), abs=1e-5)
    assert abs(p_plus[positions[0] + 1].item() - scores[0]) > 1e-3


def test_each_step_scores_as_in_rlhflows_growing_conversation(tiny, prm):
    """RLHFlow re-runs the conversation up to each step and reads position -3."""
    plus, minus = char_ids(tiny.tokenizer, "+-")
    messages = prm.conversation(ITEM)
    expected = []
    for k in range(len(ITEM.steps)):
        text = tiny.tokenizer.apply_chat_template(messages[: 2 * k + 2], tokenize=False)
        ids = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = tiny.reference(torch.tensor([ids])).logits[0, -3, [plus, minus]]
        expected.append(torch.softmax(logits, dim=-1)[0].item())
    assert prm.score([ITEM])[0] == pytest.approx(expected, abs=1e-5)


def test_a_template_whose_prefix_differs_is_rejected(tiny, tmp_path):
    folder = tmp_path / "odd"
    make_rlhflow_folder(folder)
    template_file = folder / "chat_template.jinja"
    # the generation prompt ends in one newline where a rendered answer has two
    template = template_file.read_text().replace(
        "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
        "'<|start_header_id|>assistant<|end_header_id|>\\n' }}{%- endif %}",
    )
    assert template != template_file.read_text()
    template_file.write_text(template)
    prm = build_rlhflow_prm(folder, device="cpu")
    with pytest.raises(ValueError, match="cannot locate the score position"):
        prm.encode(ITEM)
