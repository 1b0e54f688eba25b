"""Token-exact training data on a real byte-level BPE tokenizer (the tiny Qwen2 fixture, ChatML).

Trees are sampled with the HF engine from the random tiny Qwen2 model under its chat template,
scored by hand, built into the three training sets and tokenized for training. Every training
sequence must be the sampled ids: the prompt the sampler built, the nodes' ids as sampled
(delimiters included), and ``<|im_end|>`` (the end of turn the engine stops on) after a complete
trajectory. The random model's steps rarely re-tokenize to their own ids (bytes of split
characters, lost leading spaces), so the old text path differs, which the tests check too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch

from fixtures_qwen2 import build_qwen2
from sppd.data.builders import build_dpo, build_sft, build_step_pairs
from sppd.data.tokenize import TokenizeSettings, tokenize_preference_pairs, tokenize_sft, tokenize_step_pairs
from sppd.prompting import build_prompt_ids, end_of_turn_ids, end_token_id
from sppd.records import Problem, Tree
from sppd.sampling.hf_engine import HFEngine
from sppd.sampling.tree import TreeParams, TreeSampler
from sppd.settings import BuildConfig, PromptConfig
from sppd.types import ChatTemplateMode, OverlongRule, StepPairMode

DELIMITER = "\n\n"
PROMPT = PromptConfig()  # chat template: auto (the fixture has one)
SETTINGS = TokenizeSettings(max_length=4096, overlong=OverlongRule.DROP, delimiter=DELIMITER, prompt=PROMPT)
PARAMS = TreeParams(
    K=6,
    C=3,
    max_depth=4,
    max_step_tokens=8,
    max_total_tokens=40,
    temperature=1.0,
    top_p=1.0,
    selection_temperature=1.0,
    delimiter=DELIMITER,
    answer_pattern=r"\\boxed|The answer is",
)


def _judge(items):
    """Correct when the solution text has even length: both kinds of leaf in every tree."""
    return [(None, len(text) % 2 == 0) for _, text in items]


@pytest.fixture(scope="module")
def qwen2():
    model, tok = build_qwen2()
    with torch.no_grad():  # steps end at "\n\n" and turns at <|im_end|> often enough to branch and finish
        model.lm_head.weight[tok.convert_tokens_to_ids("ĊĊ")] += 1.5
        model.lm_head.weight[tok.convert_tokens_to_ids("<|im_end|>")] += 1.2
    return model, tok


@pytest.fixture(scope="module")
def trees(qwen2) -> list[Tree]:
    model, tok = qwen2
    engine = HFEngine(model, tok, batch_size=64, extra_eos_ids=end_of_turn_ids(tok, PROMPT))
    problems = [Problem(id=f"p{i}", question=f"What is {i}+{i}?", gold=str(2 * i)) for i in range(3)]
    prompts = [build_prompt_ids(tok, p.question, PROMPT) for p in problems]
    out = TreeSampler(engine, PARAMS, _judge).sample(problems, prompts, seed=0)
    for tree in out:
        for node in tree.nodes:  # distinct values, so every sibling pair is a candidate
            node.value = (node.id * 0.37 + len(tree.problem.id) * 0.11) % 1
    return out


def _end_id(tok) -> int:
    return tok.convert_tokens_to_ids("<|im_end|>")


def _sampled(tree: Tree, node_id: int, tok, ends: bool) -> list[int]:
    """What training must see after the prompt: the path's ids as sampled, ending with <|im_end|>
    when the path ends the trajectory (replacing the stop token the model sampled, if any)."""
    ids = tree.path_token_ids(node_id)
    if not ends:
        return ids
    if tree.nodes[node_id].finish_reason == "eos":
        ids = ids[:-1]
    return ids + [_end_id(tok)]


def test_end_token_is_the_end_of_turn_under_the_chat_template(qwen2, toy_tokenizer):
    _, tok = qwen2
    assert tok.eos_token == "<|endoftext|>"  # a base model: EOS is not the end of turn
    assert end_token_id(tok, PROMPT) == _end_id(tok)
    assert end_token_id(tok, PromptConfig(chat_template=ChatTemplateMode.NEVER)) == tok.eos_token_id
    assert end_token_id(toy_tokenizer, PROMPT) == toy_tokenizer.eos_token_id  # no chat template


def test_sampled_trees_have_what_the_checks_need(trees):
    finish = Counter(n.finish_reason for t in trees for n in t.nodes)
    assert finish["delimiter"] and finish["eos"]  # intermediate steps and turns the model ended


def test_sft_and_dpo_train_on_the_sampled_ids(trees, qwen2):
    _, tok = qwen2
    sft = [r for t in trees if (r := build_sft(t, delimiter=DELIMITER)) is not None]
    dpo = [r for t in trees if (r := build_dpo(t, delimiter=DELIMITER)) is not None]
    assert sft and dpo
    by_id = {t.problem.id: t for t in trees}
    sft_tokens, sft_report = tokenize_sft(sft, tok, SETTINGS)
    for rec, ex in zip(sft, sft_tokens, strict=True):
        tree = by_id[rec.problem_id]
        assert ex.prompt_ids == tree.prompt_ids
        assert ex.completion_ids == _sampled(tree, rec.meta["leaf"], tok, ends=True)
        assert ex.completion_ids[-1] == _end_id(tok)
    pair_tokens, pair_report = tokenize_preference_pairs(dpo, tok, SETTINGS)
    for rec, ex in zip(dpo, pair_tokens, strict=True):
        tree = by_id[rec.problem_id]
        assert ex.prompt_ids == tree.prompt_ids
        assert ex.chosen_ids == _sampled(tree, rec.meta["chosen"]["leaf"], tok, ends=True)
        assert ex.rejected_ids == _sampled(tree, rec.meta["rejected"]["leaf"], tok, ends=True)
    assert (sft_report.from_ids, sft_report.from_text) == (len(sft), 0)
    assert pair_report.from_ids == len(dpo)
    # the text path would have trained other ids: the check above can fail
    assert sft_report.retokenize_mismatch + pair_report.retokenize_mismatch >= 1
    old, _ = tokenize_sft([replace(r, prompt_ids=None, completion_ids=None) for r in sft], tok, SETTINGS)
    assert any(a.completion_ids != b.completion_ids for a, b in zip(old, sft_tokens))


def test_step_pairs_train_on_the_sampled_ids(trees, qwen2):
    _, tok = qwen2
    cfg = BuildConfig(step_pair_mode=StepPairMode.EVERY_STEP, require_complete_subtree=False)
    pairs = [p for t in trees for p in build_step_pairs(t, cfg, delimiter=DELIMITER)]
    assert len(pairs) >= 3
    assert any(p.chosen_terminal or p.rejected_terminal for p in pairs)
    assert any(not p.chosen_terminal for p in pairs)
    by_id = {t.problem.id: t for t in trees}
    tokens, report = tokenize_step_pairs(pairs, tok, SETTINGS)
    for rec, ex in zip(pairs, tokens, strict=True):
        tree, meta = by_id[rec.problem_id], rec.meta
        assert ex.prompt_ids == tree.prompt_ids + tree.path_token_ids(meta["parent"])
        for node_id, ids, terminal in (
            (meta["chosen_node"], ex.chosen_ids, rec.chosen_terminal),
            (meta["rejected_node"], ex.rejected_ids, rec.rejected_terminal),
        ):
            node = tree.nodes[node_id]
            sampled = node.token_ids[:-1] if node.finish_reason == "eos" else node.token_ids
            assert ids == (sampled + [_end_id(tok)] if terminal else sampled)
            if not terminal:  # an intermediate step ends with the delimiter it was sampled with
                assert tok.decode(ids).endswith(DELIMITER)
    assert report.from_ids == len(pairs) and report.retokenize_mismatch >= 1
