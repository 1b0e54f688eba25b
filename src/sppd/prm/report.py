"""PRM diagnostics (paper Appendix B) as pure functions over scored trees, plus the plot.

* Table 5: for complete trajectories with correct and with incorrect final answers, how often
  three judgments are right: the final-step score (ORM-like), the mean step score and the
  minimum step score, each read as "correct" when it exceeds 0.5 (the paper's rule).
* Figure 3: each trajectory cut into five equal segments, the mean score of each segment,
  box plots for correct versus incorrect trajectories.
* Toy world: agreement of node values with the exact checker's oracle values.
* ``held_out_metrics``: a trained PRM scored on held-out trees (the PRM trainers' ``val`` numbers).

A trajectory is a distinct terminal node of a tree (two walks ending at the same leaf are one
trajectory). Only trajectories whose every node has a value are used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sppd.records import Tree

THRESHOLD = 0.5
N_SEGMENTS = 5
JUDGMENTS = ("final", "mean", "min")


@dataclass(frozen=True)
class Trajectory:
    """A complete path's step values (in order) and whether its final answer is right."""

    problem_id: str
    leaf_id: int
    scores: list[float]
    correct: bool


def trajectories(trees: Sequence[Tree], field: str = "value") -> list[Trajectory]:
    """Complete paths of ``trees`` with the node attribute ``field`` (``value`` or ``mc_value``)."""
    out = []
    for tree in trees:
        for leaf in tree.leaves():
            scores = [getattr(tree.nodes[k], field) for k in tree.path_to(leaf)]
            if all(s is not None for s in scores):
                out.append(Trajectory(tree.problem.id, leaf, scores, bool(tree.nodes[leaf].correct)))
    return out


def judge(scores: Sequence[float], how: str) -> float:
    """The trajectory-level score of one judgment: final, mean or min step score."""
    if how == "final":
        return scores[-1]
    if how == "mean":
        return sum(scores) / len(scores)
    if how == "min":
        return min(scores)
    raise ValueError(f"unknown judgment {how!r}; choose from {JUDGMENTS}")


def judgment_accuracy(trajs: Sequence[Trajectory], threshold: float = THRESHOLD) -> dict:
    """Table 5: ``{"correct"|"incorrect": {"count": n, "final"|"mean"|"min": accuracy}}``.

    A judgment is right on a correct trajectory when its score exceeds ``threshold`` and on an
    incorrect one when it does not. Accuracies of an empty group are ``None``.
    """
    table = {}
    for group, is_correct in (("correct", True), ("incorrect", False)):
        members = [t for t in trajs if t.correct == is_correct]
        row: dict = {"count": len(members)}
        for how in JUDGMENTS:
            hits = sum((judge(t.scores, how) > threshold) == is_correct for t in members)
            row[how] = hits / len(members) if members else None
        table[group] = row
    return table


def segment_means(scores: Sequence[float], n_segments: int = N_SEGMENTS) -> list[float]:
    """Mean score over each of ``n_segments`` equal parts of the trajectory.

    Step t covers ``[t/T, (t+1)/T)`` of the unit interval; a segment's mean weights each step by
    its overlap with the segment, so trajectories shorter than ``n_segments`` steps still get a
    value per segment (and it is the plain mean when T is a multiple of ``n_segments``).
    """
    n = len(scores)
    if n == 0:
        raise ValueError("a trajectory needs at least one step")
    means = []
    for k in range(n_segments):
        lo, hi = k / n_segments, (k + 1) / n_segments
        total = 0.0
        for t, score in enumerate(scores):
            overlap = min(hi, (t + 1) / n) - max(lo, t / n)
            if overlap > 0:
                total += overlap * score
        means.append(total / (hi - lo))
    return means


def segment_distributions(trajs: Sequence[Trajectory]) -> dict[str, list[list[float]]]:
    """Figure 3's data: per group, ``N_SEGMENTS`` lists of segment means (one per trajectory)."""
    out = {}
    for group, is_correct in (("correct", True), ("incorrect", False)):
        per_traj = [segment_means(t.scores) for t in trajs if t.correct == is_correct]
        out[group] = [[m[k] for m in per_traj] for k in range(N_SEGMENTS)]
    return out


def step_agreement(values: Sequence[float], labels: Sequence[float], threshold: float = THRESHOLD) -> dict:
    """Agreement of values with 0/1 oracle labels, wrong steps being the positive class.

    ``accuracy``: (value > threshold) == (label == 1); ``wrong_precision``: of the steps called
    wrong (value <= threshold), the share truly wrong; ``wrong_recall``: of the truly wrong
    steps, the share called wrong. Undefined ratios are ``None``.
    """
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} values for {len(labels)} labels")
    called_wrong = [v <= threshold for v in values]
    truly_wrong = [lab < 0.5 for lab in labels]
    both = sum(c and w for c, w in zip(called_wrong, truly_wrong))
    n, n_called, n_wrong = len(values), sum(called_wrong), sum(truly_wrong)
    return {
        "n": n,
        "n_wrong": n_wrong,
        "accuracy": sum(c == w for c, w in zip(called_wrong, truly_wrong)) / n if n else None,
        "wrong_precision": both / n_called if n_called else None,
        "wrong_recall": both / n_wrong if n_wrong else None,
    }


def oracle_node_labels(tree: Tree) -> list[float]:
    """The oracle PRM's value of every node (toy trees only): 1.0 iff its path is all right."""
    from sppd.prm.oracle import oracle_values

    labels: list[float] = [0.0] * len(tree.nodes)
    for node in tree.nodes:
        if not node.children:  # a path's values are prefix values: one call per childless node
            for k, v in zip(tree.path_to(node.id), oracle_values(tree.problem.question, tree.path_steps(node.id))):
                labels[k] = v
    return labels


def checker_agreement(trees: Sequence[Tree], field: str = "value") -> dict:
    """``step_agreement`` of node attribute ``field`` against the oracle, over valued nodes."""
    values, labels = [], []
    for tree in trees:
        oracle = oracle_node_labels(tree)
        for node in tree.nodes:
            value = getattr(node, field)
            if value is not None:
                values.append(value)
                labels.append(oracle[node.id])
    return step_agreement(values, labels)


def trajectory_accuracy(trajs: Sequence[Trajectory], how: str = "final") -> float | None:
    """Share of trajectories whose judgment (> 0.5) matches the answer's correctness."""
    if not trajs:
        return None
    return sum((judge(t.scores, how) > THRESHOLD) == t.correct for t in trajs) / len(trajs)


def build_report(trees: Sequence[Tree], toy: bool) -> dict:
    """Every number of the report: Table 5, Figure 3 medians, and toy checker agreement."""
    trajs = trajectories(trees)
    segments = segment_distributions(trajs)
    sources = sorted({n.value_source for t in trees for n in t.nodes if n.value_source})
    report = {
        "scorers": sources,
        "trees": len(trees),
        "nodes": sum(len(t.nodes) for t in trees),
        "valued_nodes": sum(n.value is not None for t in trees for n in t.nodes),
        "trajectories": len(trajs),
        "table5": judgment_accuracy(trajs),
        "figure3_medians": {g: [_median(s) for s in segs] for g, segs in segments.items()},
    }
    if toy:
        report["checker_agreement"] = checker_agreement(trees, "value")
        report["mc_checker_agreement"] = checker_agreement(trees, "mc_value")
    return report


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def format_table5(table: dict, scorer: str = "") -> str:
    """Table 5 as Markdown."""

    def cell(x):
        return "n/a" if x is None else f"{x:.3f}"

    title = (
        f"PRM judgment accuracy{f' ({scorer})' if scorer else ''}: "
        f"a judgment says 'correct' when its score exceeds {THRESHOLD}"
    )
    lines = [
        title,
        "",
        "| trajectories | # | final-step score | mean step score | min step score |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for group in ("correct", "incorrect"):
        row = table[group]
        lines.append(f"| {group} | {row['count']} | " + " | ".join(cell(row[h]) for h in JUDGMENTS) + " |")
    return "\n".join(lines) + "\n"


def plot_figure3(segments: dict[str, list[list[float]]], path: str | Path, title: str = "") -> None:
    """Box plots of segment means, correct (left box) vs incorrect (right box) per segment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"correct": "tab:green", "incorrect": "tab:red"}
    for offset, group in ((-0.18, "correct"), (0.18, "incorrect")):
        data = [s if s else [float("nan")] for s in segments[group]]
        positions = [k + 1 + offset for k in range(N_SEGMENTS)]
        box = ax.boxplot(data, positions=positions, widths=0.3, patch_artist=True, showfliers=False)
        for patch in box["boxes"]:
            patch.set_facecolor(colors[group])
            patch.set_alpha(0.5)
        ax.plot([], [], color=colors[group], linewidth=6, alpha=0.5, label=group)
    ax.set_xticks(range(1, N_SEGMENTS + 1), [f"segment {k}" for k in range(1, N_SEGMENTS + 1)])
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("mean step score in segment")
    ax.set_title(title or "PRM score by trajectory segment")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def held_out_metrics(prm, trees: Sequence[Tree], min_paths: int = 1) -> dict[str, Any]:
    """Held-out numbers: BCE/MAE against MC labels, step agreement with the exact checker
    (the oracle's prefix-correctness), the MC labels' own agreement, trajectory accuracy."""
    from sppd.prm.packing import score_trees  # torch: imported only when a PRM is evaluated

    scores, _ = score_trees(prm, trees)
    labelled = [
        (s, t.nodes[k].mc_value)
        for t, ss in zip(trees, scores)
        for k, s in enumerate(ss)
        if t.nodes[k].mc_value is not None and t.nodes[k].mc_count >= min_paths
    ]
    eps = 1e-6
    bce = -sum(y * math.log(max(s, eps)) + (1 - y) * math.log(max(1 - s, eps)) for s, y in labelled)
    oracle = [v for t in trees for v in oracle_node_labels(t)]
    trajs = trajectories([_with_values(t, ss) for t, ss in zip(trees, scores)])
    return {
        "nodes": len(oracle),
        "mc_bce": bce / len(labelled) if labelled else None,
        "mc_mae": sum(abs(s - y) for s, y in labelled) / len(labelled) if labelled else None,
        "checker_agreement": step_agreement([s for ss in scores for s in ss], oracle),
        "mc_checker_agreement": checker_agreement(trees, "mc_value"),
        "trajectory_accuracy": trajectory_accuracy(trajs, "final"),
        "trajectories": len(trajs),
    }


def _with_values(tree: Tree, scores: Sequence[float]) -> Tree:
    """A copy of ``tree`` whose node values are ``scores`` (for the report's functions)."""
    copy = Tree.from_dict(tree.to_dict())
    for node, value in zip(copy.nodes, scores):
        node.value = value
    return copy
