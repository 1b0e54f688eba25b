"""Tree Monte-Carlo values: the fraction of correct complete paths below each node.

Math-Shepherd's soft estimate of V*(s_t) (Wang et al., 2024): roll out from a state and count
how often the rollouts reach the right answer. A sampling tree already holds such rollouts for
free: every terminal node below a node is one complete continuation of its state. So

    mc_value(n) = (# correct terminal nodes in n's subtree) / (# terminal nodes in n's subtree)
    mc_count(n) = # terminal nodes in n's subtree (a terminal node counts itself)

Distinct terminal nodes are counted, not walks: two walks ending at the same leaf are one
trajectory, and counting walk visits would weight a path by how likely the *selection* rule
made it rather than by the policy. Nodes with no complete path below keep ``mc_value=None``.

Optionally, nodes resting on fewer than ``min_paths`` paths get extra whole-completion
rollouts from their prefix (``rollout_counts``); those rollouts only add to the counts and are
not added to the tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sppd.prm.base import PRMInput
from sppd.records import Tree
from sppd.sampling.engine import Engine, GenerationParams
from sppd.sampling.tree import AnswerJudge, path_steps, path_token_ids

# node id -> (extra complete paths, of which correct)
RolloutCounts = dict[int, tuple[int, int]]


def subtree_path_counts(tree: Tree) -> tuple[list[int], list[int]]:
    """``(paths, correct)`` per node: terminal nodes in its subtree and the correct ones."""
    paths = [0] * len(tree.nodes)
    correct = [0] * len(tree.nodes)
    # Children are created after their parents, so a reverse sweep sees every child first.
    for node in reversed(tree.nodes):
        if node.parent >= node.id:
            raise ValueError(f"problem {tree.problem.id}: node {node.id} has parent {node.parent} "
                             "created after it; trees must list parents before children")
        if node.terminal:
            paths[node.id] += 1
            correct[node.id] += int(bool(node.correct))
        if node.parent >= 0:
            paths[node.parent] += paths[node.id]
            correct[node.parent] += correct[node.id]
    return paths, correct


def attach_mc_values(tree: Tree, rollouts: RolloutCounts | None = None) -> None:
    """Set ``mc_value`` and ``mc_count`` of every node (in place); see the module docstring.

    ``rollouts`` adds extra complete paths per node (from ``rollout_counts``); a rollout from
    node n is also a continuation of every ancestor of n, so it counts there too.
    """
    paths, correct = subtree_path_counts(tree)
    for node_id, (n_extra, n_correct) in (rollouts or {}).items():
        for k in tree.path_to(node_id):
            paths[k] += n_extra
            correct[k] += n_correct
    for node in tree.nodes:
        node.mc_count = paths[node.id]
        node.mc_value = correct[node.id] / paths[node.id] if paths[node.id] else None


def rollout_counts(
    tree: Tree,
    engine: Engine,
    judge: AnswerJudge,
    min_paths: int,
    params: GenerationParams,
    seed: int,
    delimiter: str = "\n",
) -> RolloutCounts:
    """Whole completions from every non-terminal node resting on fewer than ``min_paths`` paths.

    Node n gets ``min_paths - paths(n)`` rollouts (``params.stop`` must be None: a rollout runs
    to EOS or the token limit). Each is judged as the node's steps, the delimiter, then the
    completion. Nodes needing the same number of rollouts share one engine call.
    """
    if params.stop is not None:
        raise ValueError("MC rollouts generate whole completions: GenerationParams.stop must be None")
    paths, _ = subtree_path_counts(tree)
    need: dict[int, list[int]] = {}
    for node in tree.nodes:
        if not node.terminal and paths[node.id] < min_paths:
            need.setdefault(min_paths - paths[node.id], []).append(node.id)
    counts: RolloutCounts = {}
    for n, node_ids in sorted(need.items()):
        prefixes = [tree.prompt_ids + path_token_ids(tree, k) for k in node_ids]
        samples = engine.generate(prefixes, n, params, seed=seed + n)
        texts = [(k, delimiter.join(path_steps(tree, k)) + delimiter + s.text)
                 for k, group in zip(node_ids, samples) for s in group]
        verdicts = judge([(tree.problem, text) for _, text in texts])
        for (k, _), (_, ok) in zip(texts, verdicts):
            total, good = counts.get(k, (0, 0))
            counts[k] = (total + 1, good + int(bool(ok)))
    return counts


@dataclass
class MCScorer:
    """The MC value as a scorer: values come from the tree, so it scores trees, not inputs.

    ``min_paths > 0`` needs an ``engine`` and a ``judge`` for the extra rollouts.
    """

    min_paths: int = 0
    engine: Engine | None = None
    judge: AnswerJudge | None = None
    params: GenerationParams | None = None
    delimiter: str = "\n"
    seed: int = 0
    name: str = field(default="mc", init=False)

    def score(self, items: Sequence[PRMInput]) -> list[list[float]]:
        raise TypeError(
            "the 'mc' scorer derives values from the complete paths of a sampling tree and cannot "
            "score trajectories outside a tree; use a learned PRM (e.g. 'toy') for those"
        )

    def score_tree(self, tree: Tree) -> list[float | None]:
        """Attach MC values (with rollouts if configured) and return them per node."""
        rollouts = None
        if self.min_paths > 0:
            if self.engine is None or self.judge is None or self.params is None:
                raise ValueError("mc scorer with min_paths > 0 needs an engine, a judge and params")
            rollouts = rollout_counts(tree, self.engine, self.judge, self.min_paths, self.params,
                                      self.seed, self.delimiter)
        attach_mc_values(tree, rollouts)
        return [node.mc_value for node in tree.nodes]


def build_mc_prm(**kwargs) -> MCScorer:
    """Registry factory for ``mc``: keyword arguments are ``MCScorer`` fields."""
    return MCScorer(**kwargs)
