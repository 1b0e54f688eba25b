"""Builders: scored sampling trees -> training records (paper §4.1, §4.3, §5).

Pure functions, one tree at a time, so a stage can stream trees and tests can use hand-made ones.

* ``build_sft``: tau_+ of §4.3, the correct complete path whose minimum step value is highest.
* ``build_dpo``: chosen tau_+, rejected tau_-, the wrong complete path whose minimum step value
  is lowest.
* ``build_step_pairs``: sibling steps under one parent (§4.1), chosen = higher value; kept when
  V(s_w) - V(s_l) > ``step_gap`` (paper App. A: 0.5), or at every branching node (the §5
  every-step variant).

Definitions every builder shares:

* A *complete path* ends at a terminal node that ended on its own: an answer step or EOS. A path
  cut by a budget (finish reason ``length``, ``max_depth``, ``max_total``) is not complete, since
  SFT/DPO train EOS after a trajectory and a cut path would teach stopping mid-solution. For the
  same reason a step at the end of a path cut by ``max_depth``/``max_total`` (a finished step: it
  ended with the delimiter) gets ``*_terminal = False`` in a step pair.
* A step cut by the step token budget (finish reason ``length``) is unfinished and never enters a
  step pair (counted ``cut_step``): as a non-terminal step it would be trained with the delimiter
  appended, teaching the policy to end a step where the budget happened to cut it; with EOS it
  would teach stopping mid-step; with neither, the pair would compare an unfinished step against
  a finished one, under a value the PRM gave to half a step.
* A node is *scored* when its ``value`` is a finite number; a path is scored when all its nodes
  are.
* Records carry the sampled token ids next to the text (training uses them: re-tokenizing the
  stripped step text would give other ids on a BPE tokenizer): the tree's prompt ids, each
  step's ids as sampled (an intermediate step's end with its delimiter), minus the stop token
  of a step the model ended (finish reason ``eos``), since training appends its own end token.
  A tree without prompt ids, or a step without ids (hand-made), gives records without ids.
* Values within ``GAP_EPS`` count as equal: 0.4 - 0.1 is 0.30000000000000004 in floats but is
  "exactly at" a 0.3 threshold to a reader, so it is dropped like 0.75 - 0.25 at 0.5.

Each builder takes an optional ``counts: Counter`` and adds what it kept and why it dropped the
rest; use one Counter per builder (keys repeat between builders):

* sft / dpo, per problem: ``problems``, ``kept``, ``no_correct_path``, ``no_wrong_path`` (dpo;
  ``kept`` + the ``no_*`` keys = ``problems``); per terminal leaf: ``paths``, ``correct_paths``,
  ``wrong_paths`` (usable ones), ``truncated_paths``, ``unjudged_paths``, ``unscored_paths``.
* step pairs: ``problems``, ``problems_with_pairs``; per branching node: ``parents``,
  ``no_siblings`` (fewer than two usable children); per child step: ``unscored``, ``cut_step``,
  ``incomplete_subtree``; per candidate pair: ``kept``, ``tie``, ``gap_too_small``,
  ``same_text``, ``over_cap``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sppd.records import Node, PreferencePair, SFTExample, StepPair, Tree
from sppd.settings import BuildConfig
from sppd.types import StepPairMode

GAP_EPS = 1e-9
# the finish reason that cuts the step itself (before its delimiter), one of records.CUT_REASONS
STEP_CUT_REASON = "length"
# the finish reason of a step the model ended with a stop token (EOS, end of turn): its last id
STOP_REASON = "eos"


@dataclass(frozen=True)
class ScoredPath:
    """A complete, judged, fully scored root-to-leaf path."""

    leaf: int
    steps: tuple[str, ...]
    values: tuple[float, ...]
    correct: bool
    answer: str | None
    token_ids: tuple[int, ...] | None = None  # the sampled ids without the stop token (None: unknown)

    @property
    def min_value(self) -> float:
        return min(self.values)

    @property
    def mean_value(self) -> float:
        return sum(self.values) / len(self.values)


def is_scored(node: Node) -> bool:
    return node.value is not None and math.isfinite(node.value)


def step_ids(node: Node) -> list[int] | None:
    """A step's sampled ids without the stop token that ended it, or None when the node has none."""
    if not node.token_ids:
        return None
    return list(node.token_ids[:-1] if node.finish_reason == STOP_REASON else node.token_ids)


def path_ids(tree: Tree, node_ids: list[int]) -> list[int] | None:
    """The sampled ids of the steps ``node_ids`` joined (``step_ids`` each), or None when a step has none."""
    pieces = [step_ids(tree.nodes[k]) for k in node_ids]
    return None if any(p is None for p in pieces) else [t for p in pieces for t in p]


def _sampled_ids(tree: Tree, **parts: Sequence[int] | None) -> dict[str, list[int] | None]:
    """The record fields ``prompt_ids`` (the tree's) and ``parts``: all of them when every one is
    known, else all None (a record's ids are used whole or not at all)."""
    known = {"prompt_ids": tree.prompt_ids or None, **parts}
    complete = all(v is not None for v in known.values())
    return {k: list(v) if complete else None for k, v in known.items()}


def scored_paths(tree: Tree, counts: Counter | None = None) -> list[ScoredPath]:
    """The tree's usable complete paths, in leaf order; counts every terminal leaf's fate."""
    counts = counts if counts is not None else Counter()
    paths = []
    for leaf in tree.leaves():
        counts["paths"] += 1
        node = tree.nodes[leaf]
        ids = tree.path_to(leaf)
        if not node.ends_trajectory:
            counts["truncated_paths"] += 1
        elif node.correct is None:
            counts["unjudged_paths"] += 1
        elif not all(is_scored(tree.nodes[k]) for k in ids):
            counts["unscored_paths"] += 1
        else:
            counts["correct_paths" if node.correct else "wrong_paths"] += 1
            steps = tuple(tree.nodes[k].text for k in ids)
            values = tuple(float(tree.nodes[k].value) for k in ids)
            token_ids = path_ids(tree, ids)
            token_ids = tuple(token_ids) if token_ids is not None else None
            paths.append(ScoredPath(leaf, steps, values, bool(node.correct), node.answer, token_ids))
    return paths


def best_correct_path(paths: list[ScoredPath]) -> ScoredPath | None:
    """tau_+: the correct path with the highest minimum value.

    Ties: higher mean value, then fewer steps, then lower leaf id.
    """
    correct = [p for p in paths if p.correct]
    return min(correct, key=lambda p: (-p.min_value, -p.mean_value, len(p.steps), p.leaf), default=None)


def worst_wrong_path(paths: list[ScoredPath]) -> ScoredPath | None:
    """tau_-: the wrong path with the lowest minimum value.

    Ties: lower mean value, then fewer steps, then lower leaf id.
    """
    wrong = [p for p in paths if not p.correct]
    return min(wrong, key=lambda p: (p.min_value, p.mean_value, len(p.steps), p.leaf), default=None)


def _path_meta(path: ScoredPath) -> dict:
    return {"leaf": path.leaf, "values": list(path.values), "mean_value": path.mean_value, "answer": path.answer}


def _below_floor(path: ScoredPath, min_value: float | None, counts: Counter) -> bool:
    """Whether tau_+ has a step valued at or under ``min_value`` (counted as ``chosen_below_min_value``)."""
    if min_value is None or path.min_value > min_value + GAP_EPS:
        return False
    counts["chosen_below_min_value"] += 1
    return True


def build_sft(
    tree: Tree, counts: Counter | None = None, delimiter: str = "\n", min_value: float | None = None
) -> SFTExample | None:
    """SFT-PRM example (tau_+ of §4.3), or None when the tree has no usable correct path.

    ``min_value``: keep tau_+ only when its lowest step value exceeds it (PRM rejection: a right
    answer reached through a step the PRM calls wrong is not a solution to imitate).
    """
    counts = counts if counts is not None else Counter()
    counts["problems"] += 1
    best = best_correct_path(scored_paths(tree, counts))
    if best is None:
        counts["no_correct_path"] += 1
        return None
    if _below_floor(best, min_value, counts):
        return None
    counts["kept"] += 1
    pid = tree.problem.id
    return SFTExample(
        id=f"{pid}/sft/{best.leaf}",
        problem_id=pid,
        prompt=tree.problem.question,
        completion=delimiter.join(best.steps),
        steps=list(best.steps),
        min_value=best.min_value,
        meta=_path_meta(best),
        **_sampled_ids(tree, completion_ids=best.token_ids),
    )


def build_dpo(
    tree: Tree, counts: Counter | None = None, delimiter: str = "\n", min_value: float | None = None
) -> PreferencePair | None:
    """DPO-PRM pair (chosen tau_+, rejected tau_- of §4.3), or None when a side is missing.

    ``chosen_value``/``rejected_value`` are the two paths' minimum step values; ``min_value`` as
    in :func:`build_sft` applies to the chosen side.
    """
    counts = counts if counts is not None else Counter()
    counts["problems"] += 1
    paths = scored_paths(tree, counts)
    chosen, rejected = best_correct_path(paths), worst_wrong_path(paths)
    if chosen is None:
        counts["no_correct_path"] += 1
        return None
    if _below_floor(chosen, min_value, counts):
        return None
    if rejected is None:
        counts["no_wrong_path"] += 1
        return None
    counts["kept"] += 1
    pid = tree.problem.id
    return PreferencePair(
        id=f"{pid}/dpo/{chosen.leaf}-{rejected.leaf}",
        problem_id=pid,
        prompt=tree.problem.question,
        chosen=delimiter.join(chosen.steps),
        rejected=delimiter.join(rejected.steps),
        chosen_steps=list(chosen.steps),
        rejected_steps=list(rejected.steps),
        chosen_value=chosen.min_value,
        rejected_value=rejected.min_value,
        meta={"chosen": _path_meta(chosen), "rejected": _path_meta(rejected), "gold": tree.problem.gold},
        **_sampled_ids(tree, chosen_ids=chosen.token_ids, rejected_ids=rejected.token_ids),
    )


@dataclass(frozen=True)
class _Candidate:
    parent: int
    chosen: int
    rejected: int
    gap: float
    depth: int


def build_step_pairs(
    tree: Tree, cfg: BuildConfig, counts: Counter | None = None, delimiter: str = "\n"
) -> list[StepPair]:
    """Step-level preference pairs of one tree (§4.1), in parent order (root first, then by id).

    At each node with children (the root included: its children share the empty prefix), the
    usable children (scored, not cut by the step token budget, and with a complete path below them when
    ``cfg.require_complete_subtree``) are ranked by value, ties by lower node id. Pair i is the
    i-th best against the i-th worst, for i < ``cfg.pairs_per_parent`` while they are distinct
    steps (C=3 gives at most one pair: the middle step cannot pair with itself). A pair is kept
    when its gap exceeds ``cfg.step_gap`` (threshold mode) or always (every_step mode); ties are
    never kept. ``cfg.max_step_pairs_per_problem`` (>0) keeps the largest gaps (ties: shallower,
    then earlier).
    """
    if cfg.pairs_per_parent < 1:
        raise ValueError(f"build.pairs_per_parent must be >= 1, got {cfg.pairs_per_parent}")
    if cfg.max_step_pairs_per_problem < 0:
        raise ValueError(f"build.max_step_pairs_per_problem must be >= 0, got {cfg.max_step_pairs_per_problem}")
    counts = counts if counts is not None else Counter()
    counts["problems"] += 1
    complete = _complete_below(tree) if cfg.require_complete_subtree else None
    candidates: list[_Candidate] = []
    for parent in [-1] + [n.id for n in tree.nodes]:
        kids = tree.children_of(parent)
        if not kids:
            continue
        counts["parents"] += 1
        usable = _usable_children(tree, kids, complete, counts)
        if len(usable) < 2:
            counts["no_siblings"] += 1
            continue
        candidates.extend(_parent_pairs(tree, parent, usable, cfg, counts))
    kept = _cap(candidates, cfg.max_step_pairs_per_problem, counts)
    counts["kept"] += len(kept)
    counts["problems_with_pairs"] += int(bool(kept))
    return [_step_pair(tree, c, delimiter) for c in kept]


def _complete_below(tree: Tree) -> dict[int, bool]:
    """node id -> whether a complete path passes through it."""
    below = {n.id: n.ends_trajectory for n in tree.nodes}
    # deepest first, so every child is settled before its parent
    for node in sorted(tree.nodes, key=lambda n: -n.depth):
        if below[node.id] and node.parent >= 0:
            below[node.parent] = True
    return below


def _usable_children(tree: Tree, kids: list[int], complete: dict[int, bool] | None, counts: Counter) -> list[int]:
    usable = []
    for k in kids:
        if not is_scored(tree.nodes[k]):
            counts["unscored"] += 1
        elif tree.nodes[k].finish_reason == STEP_CUT_REASON:
            counts["cut_step"] += 1
        elif complete is not None and not complete[k]:
            counts["incomplete_subtree"] += 1
        else:
            usable.append(k)
    return usable


def _parent_pairs(tree: Tree, parent: int, usable: list[int], cfg: BuildConfig, counts: Counter) -> list[_Candidate]:
    """Best vs worst, next best vs next worst, ... under one parent, filtered by the mode's rule."""
    ranked = sorted(usable, key=lambda k: (-tree.nodes[k].value, k))
    out = []
    for i in range(min(cfg.pairs_per_parent, len(ranked) // 2)):
        w, r = tree.nodes[ranked[i]], tree.nodes[ranked[-1 - i]]
        gap = float(w.value) - float(r.value)
        if gap <= GAP_EPS:
            counts["tie"] += 1
        elif cfg.step_pair_mode == StepPairMode.THRESHOLD and gap <= cfg.step_gap + GAP_EPS:
            counts["gap_too_small"] += 1
        elif w.text == r.text:  # different tokens, same text: nothing to prefer
            counts["same_text"] += 1
        else:
            out.append(_Candidate(parent, w.id, r.id, gap, w.depth))
    return out


def _cap(candidates: list[_Candidate], cap: int, counts: Counter) -> list[_Candidate]:
    if cap <= 0 or len(candidates) <= cap:
        return candidates
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].gap, candidates[i].depth, i))
    counts["over_cap"] += len(candidates) - cap
    return [candidates[i] for i in sorted(order[:cap])]


def _step_pair(tree: Tree, c: _Candidate, delimiter: str) -> StepPair:
    w, r = tree.nodes[c.chosen], tree.nodes[c.rejected]
    prefix = tree.path_steps(c.parent) if c.parent >= 0 else []
    prefix_ids = path_ids(tree, tree.path_to(c.parent))  # [] at the root; the parent never ended its path
    parent_value = tree.nodes[c.parent].value if c.parent >= 0 else None
    pid = tree.problem.id
    return StepPair(
        id=f"{pid}/step/{w.id}-{r.id}",
        problem_id=pid,
        prompt=tree.problem.question,
        initial_reason_steps="".join(s + delimiter for s in prefix),
        prefix_steps=prefix,
        chosen=w.text,
        rejected=r.text,
        chosen_value=float(w.value),
        rejected_value=float(r.value),
        chosen_terminal=w.ends_trajectory,
        rejected_terminal=r.ends_trajectory,
        depth=len(prefix),
        meta={
            "parent": c.parent,
            "chosen_node": w.id,
            "rejected_node": r.id,
            "value_gap": c.gap,
            "parent_value": parent_value,
            "chosen_finish": w.finish_reason,
            "rejected_finish": r.finish_reason,
            "chosen_correct": w.correct,
            "rejected_correct": r.correct,
        },
        **_sampled_ids(tree, prefix_ids=prefix_ids, chosen_ids=step_ids(w), rejected_ids=step_ids(r)),
    )
