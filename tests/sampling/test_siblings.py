"""sample.siblings: identical children of an expansion are merged (default) or re-drawn (resample)."""

import random

import pytest

from sppd.config import ConfigError
from sppd.records import Node, Problem, Tree
from sppd.runtime import derive_seed
from sppd.sampling.engine import FinishReason, StepSample
from sppd.sampling.tree import TreeParams, TreeSampler
from sppd.settings import load_run_config
from sppd.stages.sample import sibling_counts
from sppd.types import SiblingRule


class DupEngine:
    """A scripted policy whose steps are one token of {1, 2, 3} (3 ends the solution), token 1
    four times as likely as each other: two draws of one prefix collide often."""

    def __init__(self):
        self.sequences = 0

    def generate(self, prefixes, n, params, seed):
        self.sequences += n * len(prefixes)
        out = []
        for prefix in prefixes:
            rng = random.Random(derive_seed(seed, *prefix))
            toks = [rng.choice([1, 1, 1, 1, 2, 3]) for _ in range(n)]
            out.append([StepSample([t], [-float(t)], f"s{t}", _reason(t)) for t in toks])
        return out


def _reason(tok):
    return FinishReason.EOS if tok == 3 else FinishReason.DELIMITER


def _judge(items):
    return [(None, False) for _ in items]


def _sample(rule, tries=2, C=2, seed=3, engine=None):
    params = TreeParams(
        K=8, C=C, max_depth=5, max_step_tokens=1, max_total_tokens=50, temperature=1.0, top_p=1.0,
        selection_temperature=1.0, delimiter="\n", answer_pattern="nope", siblings=rule, sibling_tries=tries,
    )  # fmt: skip
    problems = [Problem(id=f"p{i}", question=str(i), gold="0") for i in range(6)]
    sampler = TreeSampler(engine or DupEngine(), params, _judge)
    return sampler.sample(problems, [[100 + i] for i in range(6)], seed=seed)


def _children(tree):
    """The children of every expansion (unvisited nodes were never expanded)."""
    return [tree.root_children] + [n.children for n in tree.nodes if n.children]


@pytest.mark.parametrize("C", [2, 3])
def test_resample_yields_more_distinct_children_never_more_than_C(C):
    merged = sibling_counts(_sample(SiblingRule.MERGE, C=C))
    trees = _sample(SiblingRule.RESAMPLE, C=C)
    resampled = sibling_counts(trees)
    assert resampled["distinct_children_per_expansion"] > merged["distinct_children_per_expansion"]
    assert resampled["sibling_retries"] > 0 and merged["sibling_retries"] == 0
    for tree in trees:
        for kids in _children(tree):
            assert 1 <= len(kids) <= C
            assert len({tuple(tree.nodes[k].token_ids) for k in kids}) == len(kids)


def test_resample_is_deterministic_and_seeded():
    runs = [[t.to_dict() for t in _sample(SiblingRule.RESAMPLE, seed=s)] for s in (4, 4, 5)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_zero_tries_is_merge():
    merge = [t.to_dict() for t in _sample(SiblingRule.MERGE)]
    assert [t.to_dict() for t in _sample(SiblingRule.RESAMPLE, tries=0)] == merge
    assert all("sibling_retries" not in t["stats"] for t in merge)


def test_retries_counted_are_the_extra_sequences_generated():
    engine = DupEngine()
    trees = _sample(SiblingRule.RESAMPLE, C=3, engine=engine)
    counts = sibling_counts(trees)
    # every expansion draws C once; everything else the engine generated was a retry
    assert counts["sibling_retries"] == engine.sequences - 3 * counts["expansions"]
    # what is still a duplicate after the tries is merged and counted as before
    for tree in trees:
        kept = sum(len(k) for k in _children(tree))
        drawn = 3 * len(_children(tree)) + tree.stats.get("sibling_retries", 0)
        assert drawn - kept == tree.stats.get("duplicate_children", 0)


def _node(i, parent, children, terminal):
    return Node(
        id=i, parent=parent, depth=0, text="", token_ids=[i], token_logps=[-1.0], finish_reason="eos",
        terminal=terminal, avg_logp=-1.0, cum_logp=-1.0, children=children,
    )  # fmt: skip


def test_sibling_counts_by_hand():
    # tree a: root -> {0, 1}; 0 -> {2}; 1 and 2 are leaves: expansions of 2 and 1 children
    a = Tree(Problem("a", "q", "0"), [1], [_node(0, -1, [2], False), _node(1, -1, [], True), _node(2, 0, [], True)])
    a.root_children, a.stats = [0, 1], {"sibling_retries": 3}
    # tree b: root -> {0, 1, 2}, all leaves; tree c: nothing sampled
    b = Tree(Problem("b", "q", "0"), [1], [_node(i, -1, [], True) for i in range(3)], root_children=[0, 1, 2])
    c = Tree(Problem("c", "q", "0"), [1])
    assert sibling_counts([a, b, c]) == {
        "expansions": 3,
        "expansions_with_2plus_children": 2,
        "distinct_children_per_expansion": 2.0,  # (2 + 1 + 3) / 3
        "sibling_retries": 3,
    }


def test_config_default_and_checks():
    cfg = load_run_config("toy-tiny", [])
    assert cfg.sample.siblings == SiblingRule.MERGE and cfg.sample.sibling_tries == 2
    assert load_run_config("toy-tiny", ["sample.siblings=resample"]).sample.siblings == SiblingRule.RESAMPLE
    with pytest.raises(ConfigError, match="sample.sibling_tries"):
        load_run_config("toy-tiny", ["sample.sibling_tries=-1"])
