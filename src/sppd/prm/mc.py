"""Tree Monte-Carlo values: the fraction of correct complete paths below each node.

Math-Shepherd's soft estimate of V*(s_t) (Wang et al., 2024): roll out from a state and count
how often the rollouts reach the right answer. A sampling tree already holds such rollouts for
free: every terminal node below a node is one complete continuation of its state. So

    mc_value(n) = (# correct terminal nodes in n's subtree) / (# terminal nodes in n's subtree)
    mc_count(n) = # terminal nodes in n's subtree (a terminal node counts itself)

Distinct terminal nodes are counted, not walks: two walks ending at the same leaf are one
trajectory, and counting walk visits would weight a path by how likely the *selection* rule
made it rather than by the policy. Nodes with no complete path below keep ``mc_value=None``.

Optionally, nodes get extra whole-completion rollouts from their prefix (``rollout_plan``:
top-ups to ``min_paths`` paths, and/or ``per_node`` rollouts from every sibling step that a step
pair could compare); those rollouts only add to the counts and are not added to the tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sppd.prm.base import PRMInput
from sppd.records import Tree
from sppd.sampling.engine import Engine, GenerationParams
from sppd.sampling.tree import AnswerJudge
from sppd.types import RolloutNodes

# node id -> (extra complete paths, of which correct)
RolloutCounts = dict[int, tuple[int, int]]


def subtree_path_counts(tree: Tree, leaf_correct: dict[int, bool] | None = None) -> tuple[list[int], list[int]]:
    """``(paths, correct)`` per node: terminal nodes in its subtree and the correct ones.

    ``leaf_correct`` overrides a terminal node's ``correct`` (e.g. a process judge's verdict).
    """
    paths = [0] * len(tree.nodes)
    correct = [0] * len(tree.nodes)
    # Children are created after their parents, so a reverse sweep sees every child first.
    for node in reversed(tree.nodes):
        if node.parent >= node.id:
            raise ValueError(
                f"problem {tree.problem.id}: node {node.id} has parent {node.parent} "
                "created after it; trees must list parents before children"
            )
        if node.terminal:
            paths[node.id] += 1
            ok = node.correct if leaf_correct is None else leaf_correct.get(node.id, node.correct)
            correct[node.id] += int(bool(ok))
        if node.parent >= 0:
            paths[node.parent] += paths[node.id]
            correct[node.parent] += correct[node.id]
    return paths, correct


def attach_mc_values(
    tree: Tree, rollouts: RolloutCounts | None = None, leaf_correct: dict[int, bool] | None = None
) -> None:
    """Set ``mc_value`` and ``mc_count`` of every node (in place); see the module docstring.

    ``rollouts`` adds extra complete paths per node (from ``rollout_counts``); a rollout from
    node n is also a continuation of every ancestor of n, so it counts there too.
    """
    paths, correct = subtree_path_counts(tree, leaf_correct)
    for node_id, (n_extra, n_correct) in (rollouts or {}).items():
        for k in tree.path_to(node_id):
            paths[k] += n_extra
            correct[k] += n_correct
    for node in tree.nodes:
        node.mc_count = paths[node.id]
        node.mc_value = correct[node.id] / paths[node.id] if paths[node.id] else None


def rollout_plan(
    tree: Tree,
    min_paths: int = 0,
    per_node: int = 0,
    nodes: RolloutNodes | str = RolloutNodes.BRANCHING,
    leaf_correct: dict[int, bool] | None = None,
) -> dict[int, int]:
    """How many extra rollouts each non-terminal node needs: node id -> count (0s left out).

    A node gets ``max(per_node if selected, min_paths - paths(node))``. ``per_node`` exists because
    a deep node usually rests on a single complete path, so its tree MC value is 0 or 1 and every
    value gap between siblings is 1.0: a few rollouts give the graded values the dynamic margin
    (Eq. 5) is about. Only ``branching`` children are compared by step pairs, so by default only
    they pay for it; ``contested`` narrows that to siblings whose tree values (``leaf_correct``
    overriding leaf verdicts, as in ``attach_mc_values``) are not all equal. Terminal nodes are
    exact (their answer was judged) and never rolled out.
    """
    paths, correct = subtree_path_counts(tree, leaf_correct)
    selected: set[int] = set()
    if per_node > 0:
        mode = RolloutNodes(nodes)
        if mode == RolloutNodes.ALL:
            selected = {n.id for n in tree.nodes}
        else:
            parents = [-1] + [n.id for n in tree.nodes]
            for p in parents:
                kids = tree.children_of(p)
                values = {correct[k] / paths[k] if paths[k] else None for k in kids}
                if len(kids) >= 2 and (mode == RolloutNodes.BRANCHING or len(values) > 1):
                    selected.update(kids)
    plan = {}
    for node in tree.nodes:
        if node.terminal:
            continue
        n = max(per_node if node.id in selected else 0, min_paths - paths[node.id])
        if n > 0:
            plan[node.id] = n
    return plan


def rollout_counts_batch(
    trees: Sequence[Tree],
    plans: Sequence[dict[int, int]],
    engine: Engine,
    judge: AnswerJudge,
    params: GenerationParams,
    seed: int,
    delimiter: str = "\n",
) -> list[RolloutCounts]:
    """Run every tree's rollout plan; returns per tree node id -> (rollouts, correct ones).

    All nodes of all trees needing the same number of rollouts share one engine call, so a shard
    of trees costs a handful of large batched calls instead of one small call per tree (the
    engine splits them by its batch size). Each rollout is a whole completion (``params.stop``
    must be None), judged as the node's steps, the delimiter, then the completion.
    """
    if params.stop is not None:
        raise ValueError("MC rollouts generate whole completions: GenerationParams.stop must be None")
    if len(trees) != len(plans):
        raise ValueError(f"{len(trees)} trees but {len(plans)} rollout plans")
    groups: dict[int, list[tuple[int, int]]] = {}
    for t, plan in enumerate(plans):
        for node_id, n in sorted(plan.items()):
            groups.setdefault(n, []).append((t, node_id))
    counts: list[RolloutCounts] = [{} for _ in trees]
    for n, members in sorted(groups.items()):
        prefixes = [trees[t].prompt_ids + trees[t].path_token_ids(k) for t, k in members]
        samples = engine.generate(prefixes, n, params, seed=seed + n)
        items, owners = [], []
        for (t, k), group in zip(members, samples):
            head = delimiter.join(trees[t].path_steps(k)) + delimiter
            items += [(trees[t].problem, head + s.text) for s in group]
            owners += [(t, k)] * len(group)
        for (t, k), (_, ok) in zip(owners, judge(items)):
            total, good = counts[t].get(k, (0, 0))
            counts[t][k] = (total + 1, good + int(bool(ok)))
    return counts


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

    Node n gets ``min_paths - paths(n)`` rollouts; one tree's case of ``rollout_counts_batch``.
    """
    return rollout_counts_batch([tree], [rollout_plan(tree, min_paths)], engine, judge, params, seed, delimiter)[0]


@dataclass
class MCScorer:
    """The MC value as a scorer: values come from the tree, so it scores trees, not inputs.

    ``min_paths > 0`` or ``per_node > 0`` needs an ``engine``, a ``judge`` and ``params`` for the
    extra rollouts (see ``rollout_plan``).
    """

    min_paths: int = 0
    per_node: int = 0
    nodes: RolloutNodes = RolloutNodes.BRANCHING
    engine: Engine | None = None
    judge: AnswerJudge | None = None
    params: GenerationParams | None = None
    delimiter: str = "\n"
    seed: int = 0
    leaf_judge: AnswerJudge | None = None  # re-judges complete paths (e.g. toy_process_judge); None = node.correct
    name: str = field(default="mc", init=False)

    def score(self, items: Sequence[PRMInput]) -> list[list[float]]:
        raise TypeError(
            "the 'mc' scorer derives values from the complete paths of a sampling tree and cannot "
            "score trajectories outside a tree; use a learned PRM (e.g. 'toy') for those"
        )

    def score_trees(self, trees: Sequence[Tree]) -> list[list[float | None]]:
        """Attach MC values (with rollouts, batched over ``trees``, if configured); per node values."""
        rollouts: list[RolloutCounts | None] = [None] * len(trees)
        verdicts = [self.rejudge_leaves(t) for t in trees]  # once per tree: the plan and the values use them
        if self.min_paths > 0 or self.per_node > 0:
            if self.engine is None or self.judge is None or self.params is None:
                raise ValueError(
                    "mc scorer with rollouts (min_paths/per_node > 0) needs an engine, a judge and params"
                )
            plans = [rollout_plan(t, self.min_paths, self.per_node, self.nodes, v) for t, v in zip(trees, verdicts)]
            rollouts = rollout_counts_batch(
                trees, plans, self.engine, self.judge, self.params, self.seed, self.delimiter
            )
        for tree, counts, leaf_correct in zip(trees, rollouts, verdicts):
            attach_mc_values(tree, counts, leaf_correct)
        return [[node.mc_value for node in tree.nodes] for tree in trees]

    def rejudge_leaves(self, tree: Tree) -> dict[int, bool] | None:
        """Terminal node id -> the ``leaf_judge``'s verdict on its whole path (None without one)."""
        if self.leaf_judge is None:
            return None
        leaves = [k for k in tree.leaves() if tree.nodes[k].correct is not None]
        verdicts = self.leaf_judge([(tree.problem, self.delimiter.join(tree.path_steps(k))) for k in leaves])
        return {k: bool(ok) for k, (_, ok) in zip(leaves, verdicts)}

    def score_tree(self, tree: Tree) -> list[float | None]:
        """One tree's ``score_trees``."""
        return self.score_trees([tree])[0]


def build_mc_prm(**kwargs) -> MCScorer:
    """Registry factory for ``mc``: keyword arguments are ``MCScorer`` fields."""
    return MCScorer(**kwargs)
