"""Tree Monte-Carlo values on a hand-made tree, with numbers worked out by hand."""

from __future__ import annotations

import pytest

from sppd.prm.base import PRMInput, build_prm
from sppd.prm.mc import (
    MCScorer,
    attach_mc_values,
    build_mc_prm,
    rollout_counts,
    rollout_counts_batch,
    rollout_plan,
)
from sppd.records import Node, Problem, Tree
from sppd.sampling.engine import EngineStats, FinishReason, GenerationParams, StepSample


def hand_tree(spec, question="2+3*4", gold="14", pid="p0", source="toy") -> Tree:
    """A tree from ``[(parent, text, terminal, correct), ...]`` (parents listed first).

    Token ids are the characters' codes plus 10 for the newline that ends each step.
    """
    tree = Tree(problem=Problem(id=pid, question=question, gold=gold, source=source), prompt_ids=[1, 2, 3])
    for i, (parent, text, terminal, correct) in enumerate(spec):
        depth = 0 if parent < 0 else tree.nodes[parent].depth + 1
        tree.nodes.append(
            Node(
                id=i,
                parent=parent,
                depth=depth,
                text=text,
                token_ids=[ord(c) for c in text] + [10],
                token_logps=[-0.1] * (len(text) + 1),
                finish_reason="delimiter",
                terminal=terminal,
                correct=correct if terminal else None,
            )
        )
        tree.children_of(parent).append(i)
    return tree


#   0 ── 1 (terminal, right)
#     └─ 2 ── 3 (terminal, wrong)
#          └─ 4 (terminal, right)
#   5 (dead end: no complete path below)
SPEC = [
    (-1, "a", False, None),
    (0, "b", True, True),
    (0, "c", False, None),
    (2, "d", True, False),
    (2, "e", True, True),
    (-1, "f", False, None),
]


def test_mc_values_by_hand():
    tree = hand_tree(SPEC)
    attach_mc_values(tree)
    assert [n.mc_count for n in tree.nodes] == [3, 1, 2, 1, 1, 0]
    # node 0: 2 of its 3 leaves right; node 2: 1 of 2
    assert [n.mc_value for n in tree.nodes] == [pytest.approx(2 / 3), 1.0, 0.5, 0.0, 1.0, None]


class ScriptedEngine:
    """Returns fixed completions per prefix, and records what it was asked."""

    def __init__(self, texts_by_prefix):
        self.texts_by_prefix = texts_by_prefix
        self.calls = []
        self.stats = EngineStats()

    def generate(self, prefixes, n, params, seed):
        self.calls.append((prefixes, n, params))
        return [
            [StepSample([7], [-1.0], self.texts_by_prefix[tuple(p)][j], FinishReason.EOS) for j in range(n)]
            for p in prefixes
        ]


def test_rollouts_fill_nodes_with_too_few_paths():
    tree = hand_tree(SPEC)
    prefix_2 = tuple([1, 2, 3] + [ord("a"), 10, ord("c"), 10])
    prefix_5 = tuple([1, 2, 3] + [ord("f"), 10])
    engine = ScriptedEngine({prefix_2: ["ok"], prefix_5: ["ok", "bad", "bad"]})
    judged = []

    def judge(items):
        judged.extend(text for _, text in items)
        return [(None, text.endswith("ok")) for _, text in items]

    params = GenerationParams(max_new_tokens=20, stop=None)
    counts = rollout_counts(tree, engine, judge, min_paths=3, params=params, seed=0)
    # node 2 rests on 2 paths -> 1 rollout; node 5 on 0 -> 3; node 0 already has 3; leaves never
    assert counts == {2: (1, 1), 5: (3, 1)}
    assert sorted(judged) == sorted(["a\nc\nok", "f\nok", "f\nbad", "f\nbad"])
    attach_mc_values(tree, counts)
    # the rollout below node 2 also counts for its ancestor node 0: 3+1 paths, 2+1 right
    assert [n.mc_count for n in tree.nodes] == [4, 1, 3, 1, 1, 3]
    assert [n.mc_value for n in tree.nodes] == pytest.approx([3 / 4, 1.0, 2 / 3, 0.0, 1.0, 1 / 3])
    with pytest.raises(ValueError, match="stop must be None"):
        rollout_counts(tree, engine, judge, 3, GenerationParams(max_new_tokens=5, stop="\n"), 0)


def test_mc_scorer_scores_trees_but_refuses_free_trajectories():
    scorer = build_prm("mc")
    assert isinstance(scorer, MCScorer) and scorer.name == "mc"
    assert scorer.score_tree(hand_tree(SPEC))[:3] == pytest.approx([2 / 3, 1.0, 0.5])
    with pytest.raises(TypeError, match="cannot score trajectories outside a tree"):
        scorer.score([PRMInput("1+1", ["Step 1: 1+1=2"])])
    with pytest.raises(ValueError, match="needs an engine"):
        build_mc_prm(min_paths=2).score_tree(hand_tree(SPEC))


def test_rollout_plan_branching_and_top_ups():
    tree = hand_tree(SPEC)
    # root has children 0 and 5 (branching); node 0 has 1 and 2; node 2 has 3 and 4.
    # Non-terminal children of branching nodes: 0, 2, 5. Terminal nodes are never rolled out.
    assert rollout_plan(tree, per_node=2) == {0: 2, 2: 2, 5: 2}
    # top-ups to 3 paths: node 2 has 2 paths (+1), node 5 has 0 (+3), node 0 has 3 (+0); max with per_node
    assert rollout_plan(tree, min_paths=3, per_node=2) == {0: 2, 2: 2, 5: 3}
    assert rollout_plan(tree, per_node=1, nodes="all") == {0: 1, 2: 1, 5: 1}
    assert rollout_plan(tree) == {}


def test_rollout_plan_contested_skips_siblings_whose_tree_values_agree():
    tree = hand_tree(SPEC)
    # tree values: root's children 0 (2/3) and 5 (no path); node 0's children 1 (1.0) and 2 (1/2)
    assert rollout_plan(tree, per_node=2, nodes="contested") == {0: 2, 2: 2, 5: 2}
    # with leaves 1 and 4 re-judged wrong, node 0's children both have value 0: only 0 and 5 stay
    wrong = {1: False, 3: False, 4: False}
    assert rollout_plan(tree, per_node=2, nodes="contested", leaf_correct=wrong) == {0: 2, 5: 2}
    assert rollout_plan(tree, per_node=2, nodes="branching", leaf_correct=wrong) == {0: 2, 2: 2, 5: 2}


def test_batched_rollouts_share_one_engine_call_per_count_across_trees():
    t1, t2 = hand_tree(SPEC, pid="p1"), hand_tree(SPEC, pid="p2")
    prefix_0 = (1, 2, 3, ord("a"), 10)
    prefix_2 = (1, 2, 3, ord("a"), 10, ord("c"), 10)
    prefix_5 = (1, 2, 3, ord("f"), 10)
    engine = ScriptedEngine({prefix_0: ["ok", "bad"], prefix_2: ["bad", "bad"], prefix_5: ["ok", "ok"]})

    def judge(items):
        return [(None, text.endswith("ok")) for _, text in items]

    plans = [rollout_plan(t1, per_node=2), rollout_plan(t2, per_node=2)]
    counts = rollout_counts_batch([t1, t2], plans, engine, judge, GenerationParams(max_new_tokens=9, stop=None), 0)
    assert len(engine.calls) == 1 and len(engine.calls[0][0]) == 6 and engine.calls[0][1] == 2
    assert counts[0] == counts[1] == {0: (2, 1), 2: (2, 0), 5: (2, 2)}
    scorer = MCScorer(per_node=2, engine=engine, judge=judge, params=GenerationParams(max_new_tokens=9, stop=None))
    values = scorer.score_trees([t1, t2])
    # node 2: its 2 leaves (1 right) + 2 rollouts (0 right) -> 1/4; node 0: leaves 2/3 plus its own
    # rollouts (1/2) and node 2's (0/2) -> 3/7; node 5: 0 leaves + 2/2 rollouts -> 1.0
    assert values[0][:6] == pytest.approx([3 / 7, 1.0, 1 / 4, 0.0, 1.0, 1.0])
    assert values[1] == values[0]
    with pytest.raises(ValueError, match="2 trees but 1 rollout plans"):
        rollout_counts_batch([t1, t2], plans[:1], engine, judge, GenerationParams(max_new_tokens=9, stop=None), 0)


def test_process_judge_gives_compensating_errors_value_zero():
    """Outcome MC rewards reaching the gold answer through two errors; process MC does not."""
    from sppd.judging import toy_process_judge

    spec = [
        (-1, "Step 1: 8*6=48, 48-7", False, None),
        (0, "Step 2: 48-7=41", False, None),
        (1, "The answer is \\boxed{41}", True, True),
        (-1, "Step 1: 8*6=58, 58-7", False, None),
        (3, "Step 2: 58-7=41", False, None),  # 58-7 is 51
        (4, "The answer is \\boxed{41}", True, True),
    ]
    outcome = MCScorer().score_tree(hand_tree(spec, question="8*6-7", gold="41"))
    process = MCScorer(leaf_judge=toy_process_judge).score_tree(hand_tree(spec, question="8*6-7", gold="41"))
    assert outcome == [1.0] * 6
    assert process == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert toy_process_judge(
        [
            (
                hand_tree(spec, question="8*6-7", gold="41").problem,
                "Step 1: 8*6=48, 48-7\nStep 2: 48-7=41\nThe answer is \\boxed{42}",
            )
        ]
    ) == [("42", False)]
