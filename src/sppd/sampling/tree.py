"""Tree-based self-sampling (paper §4.2): selection, expansion, collection.

For each problem, K walks start at the root. At a node, a child is chosen by sampling from the
softmax over the children's average token log-probabilities under the sampling policy
(pi_infer = pi_ref). A non-terminal node without children is first expanded into C candidate
next steps sampled from the policy. A walk ends at a terminal node (an answer step, EOS, or the
depth/length limit). After the K walks, every root-to-terminal path is a complete trajectory.

Walks run in lockstep, depth by depth, for all problems of a chunk: walkers that reach the same
unexpanded node share one expansion, and all expansions of a depth go to the engine as one
batched call. Because selection depends only on the children's fixed scores and each node is
expanded once, this is the same distribution as running the K walks one after another.

Identical children of one expansion (same tokens) are merged by default (``SiblingRule.MERGE``);
``RESAMPLE`` re-draws the duplicates, batched across the chunk, before merging what is left.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sppd.records import Node, Problem, Tree
from sppd.runtime import derive_seed
from sppd.sampling.engine import Engine, FinishReason, GenerationParams, StepSample
from sppd.types import SiblingRule

# (problem, full solution text of a complete path) -> (extracted answer, correct)
AnswerJudge = Callable[[Sequence[tuple[Problem, str]]], list[tuple[str | None, bool]]]


@dataclass(frozen=True)
class TreeParams:
    """The knobs of one tree search (taken from ``SampleConfig`` and ``StepConfig``)."""

    K: int
    C: int
    max_depth: int
    max_step_tokens: int
    max_total_tokens: int
    temperature: float
    top_p: float
    selection_temperature: float
    delimiter: str
    answer_pattern: str
    siblings: SiblingRule = SiblingRule.MERGE
    sibling_tries: int = 2


def selection_probs(avg_logps: Sequence[float], temperature: float = 1.0) -> list[float]:
    """Softmax over children's average log-probs: the paper's normalized selection scores."""
    scaled = [a / max(temperature, 1e-8) for a in avg_logps]
    top = max(scaled)
    weights = [math.exp(s - top) for s in scaled]
    total = sum(weights)
    return [w / total for w in weights]


class TreeSampler:
    """Grows one tree per problem with a policy behind the ``Engine`` protocol."""

    def __init__(self, engine: Engine, params: TreeParams, judge: AnswerJudge):
        self.engine = engine
        self.params = params
        self.judge = judge
        self._answer_re = re.compile(params.answer_pattern)

    def sample(self, problems: Sequence[Problem], prompt_ids: Sequence[list[int]], seed: int) -> list[Tree]:
        """Trees for ``problems`` (reproducible for the same inputs and seed)."""
        p = self.params
        rng = random.Random(seed)
        trees = [Tree(problem=prob, prompt_ids=list(ids)) for prob, ids in zip(problems, prompt_ids)]
        walkers = [(t, -1) for t in range(len(trees)) for _ in range(p.K)]
        for tree in trees:
            tree.root_visits = p.K
        depth = 0
        gen = GenerationParams(
            max_new_tokens=p.max_step_tokens, temperature=p.temperature, top_p=p.top_p, stop=p.delimiter
        )
        while walkers:
            self._expand(trees, {w for w in walkers if not trees[w[0]].children_of(w[1])}, depth, gen, seed)
            walkers = self._select(trees, walkers, rng)
            depth += 1
        self._judge_leaves(trees)
        for tree in trees:
            tree.stats.update(tree_stats(tree))
        return trees

    def _expand(self, trees: list[Tree], todo: set[tuple[int, int]], depth: int, gen, seed: int) -> None:
        """Expand every node in ``todo`` into up to C children with one batched engine call."""
        if not todo:
            return
        todo_list = sorted(todo)
        prefixes = [trees[t].prompt_ids + trees[t].path_token_ids(n) for t, n in todo_list]
        base_seed = seed * 1_000_003 + depth
        samples = self.engine.generate(prefixes, self.params.C, gen, seed=base_seed)
        kept = [_distinct(group, []) for group in samples]
        drawn = [len(group) for group in samples]
        if self.params.siblings == SiblingRule.RESAMPLE:
            self._resample(prefixes, kept, drawn, gen, base_seed)
        for (t, n), children, n_drawn in zip(todo_list, kept, drawn):
            stats = trees[t].stats
            # identical siblings add nothing but duplicate paths: counted, then merged
            if n_drawn > len(children):
                stats["duplicate_children"] = stats.get("duplicate_children", 0) + n_drawn - len(children)
            if n_drawn > self.params.C:
                stats["sibling_retries"] = stats.get("sibling_retries", 0) + n_drawn - self.params.C
            for sample in children:
                self._add_child(trees[t], n, sample, depth)

    def _resample(self, prefixes, kept: list[list[StepSample]], drawn: list[int], gen, base_seed: int) -> None:
        """Re-draw the missing children of expansions short of C distinct ones, in place.

        Each round is one engine call per missing count (all expansions of the chunk together, as
        in the first draw), seeded from the expansion call's seed, the round and that count."""
        C = self.params.C
        for round_ in range(1, self.params.sibling_tries + 1):
            by_missing: dict[int, list[int]] = {}
            for i, children in enumerate(kept):
                if len(children) < C:
                    by_missing.setdefault(C - len(children), []).append(i)
            if not by_missing:
                return
            for missing, idx in sorted(by_missing.items()):
                retry_seed = derive_seed(base_seed, "siblings", round_, missing)
                groups = self.engine.generate([prefixes[i] for i in idx], missing, gen, seed=retry_seed)
                for i, group in zip(idx, groups):
                    drawn[i] += len(group)
                    kept[i] = _distinct(group, kept[i])

    def _add_child(self, tree: Tree, parent: int, sample: StepSample, depth: int) -> None:
        p = self.params
        parent_node = tree.nodes[parent] if parent >= 0 else None
        cum = (parent_node.cum_logp if parent_node else 0.0) + sum(sample.token_logps)
        total_tokens = len(tree.path_token_ids(parent)) + len(sample.token_ids)
        reason = str(sample.finish_reason)
        terminal = sample.finish_reason != FinishReason.DELIMITER or bool(self._answer_re.search(sample.text))
        if not terminal and depth + 1 >= p.max_depth:
            terminal, reason = True, "max_depth"
        elif not terminal and total_tokens >= p.max_total_tokens:
            terminal, reason = True, "max_total"
        node = Node(
            id=len(tree.nodes),
            parent=parent,
            depth=depth,
            text=sample.text,
            token_ids=list(sample.token_ids),
            token_logps=[float(x) for x in sample.token_logps],
            finish_reason=reason,
            terminal=terminal,
            avg_logp=sample.avg_logp,
            cum_logp=cum,
        )
        tree.nodes.append(node)
        tree.children_of(parent).append(node.id)

    def _select(self, trees: list[Tree], walkers, rng: random.Random):
        """Move each walker to a child sampled by normalized score; retire walkers at terminals."""
        moved = []
        for t, n in walkers:
            kids = trees[t].children_of(n)
            if not kids:  # every expansion sample was empty/duplicate: the walk cannot go on
                continue
            probs = selection_probs([trees[t].nodes[k].avg_logp for k in kids], self.params.selection_temperature)
            child = rng.choices(kids, weights=probs, k=1)[0]
            node = trees[t].nodes[child]
            node.visits += 1
            if not node.terminal:
                moved.append((t, child))
        return moved

    def _judge_leaves(self, trees: list[Tree]) -> None:
        items = [(tree, leaf) for tree in trees for leaf in tree.leaves()]
        verdicts = self.judge([(tree.problem, tree.path_text(leaf)) for tree, leaf in items])
        for (tree, leaf), (answer, correct) in zip(items, verdicts):
            tree.nodes[leaf].answer = answer
            tree.nodes[leaf].correct = bool(correct)


def _distinct(samples: Sequence[StepSample], kept: list[StepSample]) -> list[StepSample]:
    """``kept`` followed by the samples whose tokens are new, in draw order (first copy wins)."""
    out = list(kept)
    seen = {tuple(s.token_ids) for s in out}
    for sample in samples:
        key = tuple(sample.token_ids)
        if key not in seen:
            seen.add(key)
            out.append(sample)
    return out


def tree_stats(tree: Tree) -> dict:
    """Counts a user wants per tree: nodes, complete paths, correct leaves, generated tokens."""
    leaves = tree.leaves()
    return {
        "nodes": len(tree.nodes),
        "leaves": len(leaves),
        "correct_leaves": sum(1 for k in leaves if tree.nodes[k].correct),
        "generated_tokens": sum(n.n_tokens for n in tree.nodes),
        "max_depth": max((n.depth for n in tree.nodes), default=-1) + 1,
    }
