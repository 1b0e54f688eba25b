"""Tree packing: packed scores equal per-path and per-node scores; layouts and fallbacks."""

from __future__ import annotations

import pytest
import torch
from prm_tiny_hf import MAKERS
from test_mc import hand_tree

from sppd.judging import toy_judge
from sppd.prm.base import PRMInput, PRMScoreError, build_prm
from sppd.prm.packing import (
    PackingUnsupported,
    layout_tree,
    pack_rows,
    packing_support,
    row_allowed_mask,
    score_trees,
)
from sppd.prm.toy import new_toy_prm, random_backbone
from sppd.records import Problem
from sppd.sampling.hf_engine import HFEngine
from sppd.sampling.tree import TreeParams, TreeSampler
from sppd.toy.config import ToyModelConfig
from sppd.types import PackingMode


@pytest.fixture(scope="module")
def sampled_trees(tiny_policy):
    """Trees sampled by the tiny random policy, nudged to end steps at newlines often."""
    model, tok = tiny_policy
    newline = tok.convert_tokens_to_ids("\n")
    params = TreeParams(
        K=16,
        C=2,
        max_depth=5,
        max_step_tokens=8,
        max_total_tokens=48,
        temperature=1.0,
        top_p=1.0,
        selection_temperature=1.0,
        delimiter="\n",
        answer_pattern=r"\\boxed|The answer is",
    )
    problems = [Problem(id=f"p{i}", question=f"{i + 1}+{i + 2}*3", gold="0") for i in range(3)]
    prompts = [tok(f"Q: {p.question}\n")["input_ids"] for p in problems]
    with torch.no_grad():
        model.lm_head.weight[newline] += 0.8
    try:
        trees = TreeSampler(HFEngine(model, tok, batch_size=64), params, toy_judge).sample(problems, prompts, seed=3)
    finally:
        with torch.no_grad():
            model.lm_head.weight[newline] -= 0.8
    assert sum(len(t.nodes) for t in trees) > 20 and any(t.nodes[0].children for t in trees)
    return trees


def tiny_toy_prm(attn: str = "sdpa"):
    prm = new_toy_prm(
        *random_backbone(ToyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, seed=5))
    )
    with torch.no_grad():
        torch.nn.init.normal_(prm.model.value_head.weight, std=0.2)
    prm.model.model.set_attn_implementation(attn)
    prm.model.eval()
    return prm


def flat(scores):
    return [v for tree_scores in scores for v in tree_scores]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_equals_per_path_and_per_node(sampled_trees, attn):
    prm = tiny_toy_prm(attn)
    path_scores, path_stats = score_trees(prm, sampled_trees, PackingMode.PATH)
    node_scores, _ = score_trees(prm, sampled_trees, PackingMode.NODE)
    for max_row_tokens in (4096, 40):  # one row per tree, and rows cut with repeated context
        packed, stats = score_trees(prm, sampled_trees, PackingMode.TREE, max_row_tokens=max_row_tokens)
        assert stats.fallback_trees == 0
        assert flat(packed) == pytest.approx(flat(path_scores), abs=1e-4)
        assert len(set(round(v, 5) for v in flat(packed))) > 5  # the check is not vacuous
    assert flat(node_scores) == pytest.approx(flat(path_scores), abs=1e-4)
    # one row per tree: each distinct token once, fewer than per-path scoring processes
    single, single_stats = score_trees(prm, sampled_trees, PackingMode.TREE, max_row_tokens=4096)
    distinct = sum(layout_tree(prm, t).distinct_tokens for t in sampled_trees)
    assert single_stats.forward_tokens == distinct < path_stats.forward_tokens


def test_layout_pieces_concatenate_to_the_path_encoding(sampled_trees):
    prm = tiny_toy_prm()
    for tree in sampled_trees:
        layout = layout_tree(prm, tree)
        for node in tree.nodes:
            enc = prm.encode(PRMInput(tree.problem.question, tree.path_steps(node.id)))
            assert layout.path_ids(tree, node.id) == enc.input_ids
            assert layout.offsets[node.id] + layout.score_index[node.id] == enc.score_positions[-1]


def test_rows_and_mask_on_a_hand_made_tree():
    # question piece q; nodes 0 -> 1, 0 -> 2 (siblings), 3 a second root child
    tree = hand_tree([(-1, "a", False, None), (0, "bb", True, True), (0, "c", True, False), (-1, "d", True, True)])
    prm = tiny_toy_prm()
    layout = layout_tree(prm, tree)
    q = len(layout.root_ids)  # <bos> "Q: 2+3*4\n" = 10 tokens
    assert q == 10 and [len(p) for p in layout.pieces] == [2, 3, 2, 2]
    (row,) = pack_rows([tree], [layout], max_row_tokens=100)
    assert [s[1] for s in row.segments] == [-1, 0, 1, 2, 3]
    assert row.position_ids == list(range(q + 5)) + [q + 2, q + 3] + [q, q + 1]
    allowed = row_allowed_mask([tree], row, width=len(row.input_ids) + 1)
    first_of_2, first_of_1, first_of_3 = q + 5, q + 2, q + 7
    assert allowed[first_of_2, : q + 2].all() and not allowed[first_of_2, q + 2 : q + 5].any()
    assert allowed[first_of_2, first_of_2] and not allowed[first_of_2, first_of_2 + 1]
    assert not allowed[first_of_1, first_of_1 + 1]  # causal inside a piece
    assert allowed[first_of_3, :q].all() and not allowed[first_of_3, q:first_of_3].any()
    assert allowed[-1].tolist() == [False] * len(row.input_ids) + [True]  # padding sees itself
    # a tight budget restarts rows with the question and the ancestors as unscored context
    rows = pack_rows([tree], [layout], max_row_tokens=q + 5)
    assert [[s[1] for s in r.segments] for r in rows] == [[-1, 0, 1], [-1, 0, 2], [-1, 3]]
    assert [[n for _, n, _ in r.scored] for r in rows] == [[0, 1], [2], [3]]
    # two trees share a row; the second tree's tokens see only its own question and ancestors
    (both,) = pack_rows([tree, tree], [layout, layout], max_row_tokens=100)
    assert [s[:2] for s in both.segments][5:7] == [(1, -1), (1, 0)]
    mask = row_allowed_mask([tree, tree], both, width=len(both.input_ids))
    second_q = q + 9
    assert mask[second_q + q, second_q : second_q + q + 1].all() and not mask[second_q + q, :second_q].any()


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_hf_adapters_pack_or_fall_back(name, tmp_path):
    """skywork, math-shepherd and rlhflow (with these char-level tokenizers) pack; the
    Qwen2.5-Math-PRM chat template does not and is scored per path. Scores agree either way."""
    MAKERS[name](tmp_path / name)
    prm = build_prm(name, path=str(tmp_path / name), device="cpu")
    tree = hand_tree(
        [
            (-1, "Step 1: 3*4=12, 2+12", False, None),
            (0, "Step 2: 2+12=14", True, True),
            (0, "Step 2: 2+12=15", True, False),
            (-1, "Step 1: x", True, False),
        ]
    )
    packed, stats = score_trees(prm, [tree], PackingMode.TREE)
    per_path, _ = score_trees(prm, [tree], PackingMode.PATH)
    assert flat(packed) == pytest.approx(flat(per_path), abs=1e-4)
    if name == "qwen25-math-prm":
        assert stats.fallback_trees == 1 and "qwen25-math-prm, problem p0" in stats.fallback_reasons[0]
        with pytest.raises(PackingUnsupported):
            layout_tree(prm, tree)
    else:
        assert stats.fallback_trees == 0


def test_flash_attention_and_plain_prms_are_not_packed():
    prm = tiny_toy_prm()
    prm.model.model.config._attn_implementation = "flash_attention_2"
    assert "ignores dense 4D masks" in packing_support(prm)
    assert "no token-level hooks" in packing_support(build_prm("oracle"))
    tree = hand_tree([(-1, "Step 1: 3*4=12, 2+12", False, None), (0, "Step 2: 2+12=14", True, True)])
    scores, stats = score_trees(build_prm("oracle"), [tree], PackingMode.TREE)
    assert scores == [[1.0, 1.0]] and stats.fallback_trees == 1


class WrongCountPRM:
    """Deliberate fault injector: drops the last score of every path."""

    name = "wrong-count"

    def score(self, items):
        return [[0.5] * max(len(item.steps) - 1, 0) for item in items]


def test_wrong_score_count_names_problem_and_node():
    tree = hand_tree([(-1, "a", False, None), (0, "b", True, True)], pid="prob-7")
    with pytest.raises(PRMScoreError, match=r"problem prob-7, node 1: .*1 scores for a path of 2 steps"):
        score_trees(WrongCountPRM(), [tree], PackingMode.PATH)
