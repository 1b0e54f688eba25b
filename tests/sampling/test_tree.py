"""Tree self-sampling invariants on a real (tiny, random) Llama with the toy tokenizer."""

import math

import pytest
import torch

from sppd.judging import toy_judge
from sppd.records import Problem
from sppd.sampling.hf_engine import HFEngine
from sppd.sampling.tree import TreeParams, TreeSampler, selection_probs


def _params(**kw):
    base = dict(
        K=12,
        C=2,
        max_depth=4,
        max_step_tokens=6,
        max_total_tokens=40,
        temperature=1.0,
        top_p=1.0,
        selection_temperature=1.0,
        delimiter="\n",
        answer_pattern=r"\\boxed|The answer is",
    )
    base.update(kw)
    return TreeParams(**base)


def _problems(tok, n=3):
    probs = [Problem(id=f"p{i}", question=f"{i + 1}+{i + 2}*3", gold=str(i + 1 + (i + 2) * 3)) for i in range(n)]
    return probs, [tok(f"Q: {p.question}\n")["input_ids"] for p in probs]


@pytest.fixture
def newline_bias(tiny_policy):
    """Make the random model end steps at newlines often, so trees have depth."""
    model, tok = tiny_policy
    nl = tok.convert_tokens_to_ids("\n")
    with torch.no_grad():
        model.lm_head.bias = None
        model.lm_head.weight[nl] += 0.8
    yield
    with torch.no_grad():
        model.lm_head.weight[nl] -= 0.8


def test_selection_probs_is_softmax():
    p = selection_probs([-1.0, -2.0, -0.5])
    z = [math.exp(-1.0), math.exp(-2.0), math.exp(-0.5)]
    assert p == pytest.approx([x / sum(z) for x in z])
    assert selection_probs([-1.0, -3.0], temperature=2.0) == pytest.approx(selection_probs([-0.5, -1.5]))


def test_tree_invariants(tiny_policy, newline_bias):
    model, tok = tiny_policy
    params = _params()
    sampler = TreeSampler(HFEngine(model, tok, batch_size=64), params, toy_judge)
    problems, prompts = _problems(tok)
    trees = sampler.sample(problems, prompts, seed=5)
    assert len(trees) == 3
    for tree in trees:
        assert len(tree.root_children) <= params.C
        assert tree.root_visits == params.K
        walked_leaves = 0
        for node in tree.nodes:
            assert len(node.children) <= params.C
            assert node.depth < params.max_depth
            if node.terminal:
                assert not node.children and node.correct is not None
                walked_leaves += node.visits
            elif node.visits:
                assert node.children, "a walk passed a non-terminal node without expanding it"
            # a node's visits flow on to its children (a walk never stops at an inner node)
            if node.children:
                assert sum(tree.nodes[c].visits for c in node.children) == node.visits
        assert walked_leaves == params.K, "every walk must end at exactly one terminal node"
        # children of one parent are distinct continuations of exactly the same token prefix
        for node in tree.nodes:
            kids = [tuple(tree.nodes[c].token_ids) for c in node.children]
            assert len(set(kids)) == len(kids)
            for c in node.children:
                assert tree.path_token_ids(c) == tree.path_token_ids(node.id) + tree.nodes[c].token_ids


def test_stored_logps_match_a_forward_over_the_shared_prefix(tiny_policy, newline_bias):
    model, tok = tiny_policy
    sampler = TreeSampler(HFEngine(model, tok, batch_size=64), _params(K=6), toy_judge)
    problems, prompts = _problems(tok, n=1)
    (tree,) = sampler.sample(problems, prompts, seed=2)
    for node in tree.nodes:
        seq = tree.prompt_ids + tree.path_token_ids(node.id)
        with torch.no_grad():
            logps = torch.log_softmax(model(torch.tensor([seq])).logits[0], -1)
        start = len(seq) - node.n_tokens
        want = [logps[start - 1 + i, t].item() for i, t in enumerate(node.token_ids)]
        assert node.token_logps == pytest.approx(want, abs=1e-4)
        assert node.avg_logp == pytest.approx(sum(want) / len(want), abs=1e-4)
        parent_cum = tree.nodes[node.parent].cum_logp if node.parent >= 0 else 0.0
        assert node.cum_logp == pytest.approx(parent_cum + sum(want), abs=1e-3)


def test_selection_follows_normalized_scores(tiny_policy):
    """With depth 1 every root child is a leaf, so visits are a multinomial over softmax(avg_logp)."""
    model, tok = tiny_policy
    K = 4000
    sampler = TreeSampler(HFEngine(model, tok), _params(K=K, C=3, max_depth=1, max_step_tokens=3), toy_judge)
    problems, prompts = _problems(tok, n=1)
    (tree,) = sampler.sample(problems, prompts, seed=0)
    kids = tree.root_children
    assert len(kids) >= 2
    probs = selection_probs([tree.nodes[k].avg_logp for k in kids])
    for k, p in zip(kids, probs):
        sd = math.sqrt(K * p * (1 - p))
        assert abs(tree.nodes[k].visits - K * p) < 4 * sd + 1


def test_same_seed_same_trees(tiny_policy, newline_bias):
    model, tok = tiny_policy
    problems, prompts = _problems(tok)
    runs = [
        TreeSampler(HFEngine(model, tok, batch_size=bs), _params(), toy_judge).sample(problems, prompts, seed=s)
        for bs, s in [(64, 9), (64, 9), (64, 10)]
    ]
    dump = [[t.to_dict() for t in r] for r in runs]
    assert dump[0] == dump[1]
    assert dump[0] != dump[2]
