"""Tokenization and collation: exact prompt/completion boundaries, the EOS rule, over-long rules.

The toy tokenizer is character level (one id per character, BOS prepended by the prompt, EOS
never added by the tokenizer), so every expected id list below is written out by hand.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sppd.data.collate import collate_pairs, collate_sft
from sppd.data.tokenize import (
    TokenizeSettings,
    tokenize_preference_pairs,
    tokenize_sft,
    tokenize_step_pairs,
)
from sppd.records import PreferencePair, SFTExample, StepPair
from sppd.settings import PromptConfig
from sppd.types import ChatTemplateMode, OverlongRule

PROMPT = PromptConfig(template="Q: {question}\n", chat_template=ChatTemplateMode.NEVER)


def settings(max_length: int = 64, overlong: OverlongRule = OverlongRule.DROP) -> TokenizeSettings:
    return TokenizeSettings(max_length=max_length, overlong=overlong, delimiter="\n", prompt=PROMPT)


def chars(tok, text: str) -> list[int]:
    return [tok.convert_tokens_to_ids(c) for c in text]


def step_pair(chosen: str, rejected: str, terminal: bool, prefix: str = "S1\n") -> StepPair:
    return StepPair(
        id="s",
        problem_id="p",
        prompt="1+2",
        initial_reason_steps=prefix,
        prefix_steps=[prefix.strip()] if prefix else [],
        chosen=chosen,
        rejected=rejected,
        chosen_value=0.9,
        rejected_value=0.2,
        chosen_terminal=terminal,
        rejected_terminal=terminal,
    )


def test_sft_is_prompt_then_completion_then_eos(toy_tokenizer):
    tok = toy_tokenizer
    rec = SFTExample(id="a", problem_id="p", prompt="1+2", completion="S1\nA", steps=["S1", "A"])
    (ex,), report = tokenize_sft([rec], tok, settings())
    assert ex.prompt_ids == [tok.bos_token_id] + chars(tok, "Q: 1+2\n")  # 1 + 7 ids
    assert ex.completion_ids == chars(tok, "S1\nA") + [tok.eos_token_id]
    assert ex.n_tokens == 8 + 5 and report.kept == 1 and report.records == 1


def test_step_pair_eos_only_after_a_terminal_step(toy_tokenizer):
    tok = toy_tokenizer
    (mid, end), _ = tokenize_step_pairs(
        [step_pair("S2", "X2", terminal=False), step_pair("A 3", "A 4", terminal=True)], tok, settings()
    )
    # Prompt and prefix are the shared context: BOS + "Q: 1+2\n" + "S1\n".
    assert mid.prompt_ids == [tok.bos_token_id] + chars(tok, "Q: 1+2\nS1\n")
    # An intermediate step ends with the delimiter and never with EOS ...
    assert mid.chosen_ids == chars(tok, "S2\n") and mid.rejected_ids == chars(tok, "X2\n")
    assert tok.eos_token_id not in mid.chosen_ids + mid.rejected_ids
    # ... a step that ends the solution ends with EOS and no delimiter.
    assert end.chosen_ids == chars(tok, "A 3") + [tok.eos_token_id]
    assert end.rejected_ids == chars(tok, "A 4") + [tok.eos_token_id]
    assert (mid.chosen_value, mid.rejected_value) == (0.9, 0.2)


def test_step_pair_at_depth_zero_has_only_the_prompt_as_prefix(toy_tokenizer):
    (ex,), _ = tokenize_step_pairs([step_pair("S1", "X1", terminal=False, prefix="")], toy_tokenizer, settings())
    assert ex.prompt_ids == [toy_tokenizer.bos_token_id] + chars(toy_tokenizer, "Q: 1+2\n")


def test_sentence_pairs_are_complete_trajectories(toy_tokenizer):
    tok = toy_tokenizer
    rec = PreferencePair(
        id="d",
        problem_id="p",
        prompt="1+2",
        chosen="A 3",
        rejected="A 4",
        chosen_steps=["A 3"],
        rejected_steps=["A 4"],
    )
    (ex,), _ = tokenize_preference_pairs([rec], tok, settings())
    assert ex.chosen_ids == chars(tok, "A 3") + [tok.eos_token_id]
    assert ex.rejected_ids == chars(tok, "A 4") + [tok.eos_token_id]
    assert (ex.chosen_value, ex.rejected_value) == (0.0, 0.0)  # None values become 0


@pytest.mark.parametrize("rule", [OverlongRule.DROP, OverlongRule.TRUNCATE])
def test_overlong_rule_is_applied_and_counted(toy_tokenizer, rule):
    tok = toy_tokenizer
    fits = SFTExample(id="fits", problem_id="p", prompt="1+2", completion="ab", steps=["ab"])  # 8 + 3 = 11
    long = SFTExample(id="long", problem_id="p", prompt="1+2", completion="abcdef", steps=["abcdef"])  # 8 + 7
    huge_prompt = SFTExample(id="huge", problem_id="p", prompt="1+2+3+4+5", completion="a", steps=["a"])  # 14 + 2
    examples, report = tokenize_sft([fits, long, huge_prompt], tok, settings(max_length=12, overlong=rule))
    assert report.records == 3
    if rule == OverlongRule.DROP:
        assert [len(e.completion_ids) for e in examples] == [3]
        assert (report.kept, report.dropped_overlong, report.truncated) == (1, 2, 0)
        assert report.dropped_ids == ["long", "huge"]
    else:
        # The completion is cut to the room left after the prompt (12 - 8 = 4): EOS is cut off too.
        assert [e.completion_ids for e in examples] == [chars(tok, "ab") + [tok.eos_token_id], chars(tok, "abcd")]
        # A prompt that alone fills max_length leaves no room: dropped under either rule.
        assert (report.kept, report.dropped_overlong, report.truncated) == (2, 1, 1)


def test_pair_truncation_cuts_each_side_to_the_room_left(toy_tokenizer):
    tok = toy_tokenizer
    (ex,), report = tokenize_step_pairs(
        [step_pair("S2345", "X2", terminal=False)], tok, settings(max_length=14, overlong=OverlongRule.TRUNCATE)
    )
    assert len(ex.prompt_ids) == 11  # BOS + "Q: 1+2\n" + "S1\n", never cut
    assert ex.chosen_ids == chars(tok, "S23") and ex.rejected_ids == chars(tok, "X2\n")
    assert report.truncated == 1


def test_collate_sft_masks_exactly_the_completion(toy_tokenizer):
    tok = toy_tokenizer
    recs = [
        SFTExample(id=str(i), problem_id="p", prompt="1+2", completion=c, steps=[c])
        for i, c in enumerate(["a", "abc"])
    ]
    examples, _ = tokenize_sft(recs, tok, settings())
    batch = collate_sft(examples, pad_id=tok.pad_token_id)
    assert batch.input_ids.shape == (2, 12)  # 8 prompt + "abc" + EOS
    assert batch.loss_mask.tolist() == [[0] * 8 + [1, 1, 0, 0], [0] * 8 + [1, 1, 1, 1]]
    assert batch.attention_mask.tolist() == [[1] * 10 + [0, 0], [1] * 12]
    assert batch.input_ids[0, 10:].tolist() == [tok.pad_token_id] * 2  # right padding
    assert batch.n_tokens == 10 + 12 and batch.prompt_lens.tolist() == [8, 8]


def test_collate_pairs_unshared_and_packed_hold_the_same_tokens(toy_tokenizer):
    tok = toy_tokenizer
    examples, _ = tokenize_step_pairs(
        [step_pair("S2", "X22", terminal=False), step_pair("A", "B", terminal=True)], tok, settings()
    )
    rows = collate_pairs(examples, tok.pad_token_id, prefix_sharing=False)
    packed = collate_pairs(examples, tok.pad_token_id, prefix_sharing=True)
    assert rows.packed is None and packed.rows is None
    ids, mask = rows.rows.input_ids, rows.rows.loss_mask.bool()
    # Rows 0..B-1 are chosen, B..2B-1 rejected; the masks select exactly each step's ids.
    for b, ex in enumerate(examples):
        assert ids[b][mask[b]].tolist() == ex.chosen_ids
        assert ids[2 + b][mask[2 + b]].tolist() == ex.rejected_ids
        assert packed.packed.input_ids[b][packed.packed.chosen_mask[b]].tolist() == ex.chosen_ids
        assert packed.packed.input_ids[b][packed.packed.rejected_mask[b]].tolist() == ex.rejected_ids
    # Unshared token count: (11 + 3) + (11 + 4) and (11 + 2) + (11 + 2).
    assert rows.n_tokens == packed.n_tokens == 29 + 26
    assert torch.allclose(rows.chosen_values, torch.tensor([0.9, 0.9]))


def _prompt(tok) -> list[int]:
    return [tok.bos_token_id] + chars(tok, "Q: 1+2\n")


def test_sampled_ids_are_trained_and_the_text_path_is_the_fallback(toy_tokenizer):
    tok = toy_tokenizer
    text_only = SFTExample(id="t", problem_id="p", prompt="1+2", completion="S1\nA", steps=["S1", "A"])
    # sampled " S1\n" + "A": the step text lost the leading space, so the text gives other ids
    sampled = replace(text_only, id="s", prompt_ids=_prompt(tok), completion_ids=chars(tok, " S1\nA"))
    same = replace(text_only, id="e", prompt_ids=_prompt(tok), completion_ids=chars(tok, "S1\nA"))
    (a, b, c), report = tokenize_sft([text_only, sampled, same], tok, settings())
    assert a.completion_ids == c.completion_ids == chars(tok, "S1\nA") + [tok.eos_token_id]
    assert b.completion_ids == chars(tok, " S1\nA") + [tok.eos_token_id]  # the sampled ids, then EOS
    assert (report.from_text, report.from_ids, report.retokenize_mismatch) == (1, 2, 1)
    assert "2 on their sampled token ids (1 of them would re-tokenize differently" in report.describe(
        OverlongRule.DROP, 64
    )


def test_sampled_prompt_ids_are_used_as_they_are(toy_tokenizer):
    tok = toy_tokenizer
    rec = SFTExample(id="s", problem_id="p", prompt="1+2", completion="A", steps=["A"])
    (ex,), report = tokenize_sft([replace(rec, prompt_ids=[7, 8], completion_ids=chars(tok, "A"))], tok, settings())
    assert ex.prompt_ids == [7, 8] and report.retokenize_mismatch == 1
    # records with step ids but no prompt ids get the prompt built as the sampler builds it
    (ex,), _ = tokenize_sft([replace(rec, completion_ids=chars(tok, "A"))], tok, settings())
    assert ex.prompt_ids == _prompt(tok)


def test_sampled_step_pair_sides_share_exactly_the_prompt_and_prefix_ids(toy_tokenizer):
    tok = toy_tokenizer
    prefix_ids = chars(tok, " S1\n")  # as sampled: the text "S1" lost its leading space
    mid = replace(
        step_pair("S2", "X2", terminal=False),
        prompt_ids=_prompt(tok),
        prefix_ids=prefix_ids,
        chosen_ids=chars(tok, "S2\n"),  # an intermediate step's ids end with its sampled delimiter
        rejected_ids=chars(tok, "X2\n"),
    )
    end = replace(
        step_pair("A 3", "A 4", terminal=True),
        prompt_ids=_prompt(tok),
        prefix_ids=prefix_ids,
        chosen_ids=chars(tok, "A 3"),  # ended by EOS (removed by the builder)
        rejected_ids=chars(tok, "A 4\n"),  # an answer step that ended at the delimiter
    )
    (m, e), report = tokenize_step_pairs([mid, end], tok, settings())
    shared = _prompt(tok) + prefix_ids
    assert m.prompt_ids == e.prompt_ids == shared
    assert (m.chosen_ids, m.rejected_ids) == (chars(tok, "S2\n"), chars(tok, "X2\n"))
    assert (e.chosen_ids, e.rejected_ids) == (
        chars(tok, "A 3") + [tok.eos_token_id],
        chars(tok, "A 4\n") + [tok.eos_token_id],
    )
    for ex, same_start in ((m, 0), (e, 2)):  # the rows agree on the shared ids (+ "A " of "A 3"/"A 4")
        chosen, rejected = ex.prompt_ids + ex.chosen_ids, ex.prompt_ids + ex.rejected_ids
        first_diff = next(i for i, (x, y) in enumerate(zip(chosen, rejected)) if x != y)
        assert first_diff == len(shared) + same_start
    assert (report.from_ids, report.retokenize_mismatch) == (2, 2)
