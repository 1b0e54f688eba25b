"""PRM diagnostics on hand-made scored trees, with every number derived by hand."""

from __future__ import annotations

import pytest
from test_mc import hand_tree

from sppd.prm.report import (
    build_report,
    checker_agreement,
    format_table5,
    judgment_accuracy,
    oracle_node_labels,
    plot_figure3,
    segment_distributions,
    segment_means,
    step_agreement,
    trajectories,
)


def scored(spec_with_values, pid):
    tree = hand_tree([s[:4] for s in spec_with_values], pid=pid)
    for node, s in zip(tree.nodes, spec_with_values):
        node.value, node.value_source = s[4], "hand"
    return tree


# tree a: 0(.9) -> 1(.8) -> 2(.7, right) ; 1 -> 3(.2, wrong) ; 0 -> 4(.4) -> 5(.6, right)
TREE_A = [
    (-1, "s", False, None, 0.9),
    (0, "s", False, None, 0.8),
    (1, "s", True, True, 0.7),
    (1, "s", True, False, 0.2),
    (0, "s", False, None, 0.4),
    (4, "s", True, True, 0.6),
]
# tree b: 0(.6) -> 1(.6, wrong) ; 2(.5, wrong: exactly 0.5 does not exceed the threshold)
TREE_B = [(-1, "s", False, None, 0.6), (0, "s", True, False, 0.6), (-1, "s", True, False, 0.5)]
# tree c: a node without a value -> its trajectory is left out
TREE_C = [(-1, "s", False, None, None), (0, "s", True, True, 0.9)]


def test_table5_by_hand():
    trajs = trajectories([scored(TREE_A, "a"), scored(TREE_B, "b"), scored(TREE_C, "c")])
    assert [(t.problem_id, t.scores, t.correct) for t in trajs] == [
        ("a", [0.9, 0.8, 0.7], True),
        ("a", [0.9, 0.8, 0.2], False),
        ("a", [0.9, 0.4, 0.6], True),
        ("b", [0.6, 0.6], False),
        ("b", [0.5], False),
    ]
    table = judgment_accuracy(trajs)
    # correct: final .7 .6 both > .5; mean .8 .633 both; min .7 yes, .4 no
    assert table["correct"] == {"count": 2, "final": 1.0, "mean": 1.0, "min": 0.5}
    # incorrect [.9 .8 .2], [.6 .6], [.5]: final right on .2 and .5; mean right on .5 only; min on .2 and .5
    assert table["incorrect"] == pytest.approx({"count": 3, "final": 2 / 3, "mean": 1 / 3, "min": 2 / 3})
    md = format_table5(table, "hand")
    assert "| correct | 2 | 1.000 | 1.000 | 0.500 |" in md
    assert "| incorrect | 3 | 0.667 | 0.333 | 0.667 |" in md
    assert judgment_accuracy([])["correct"] == {"count": 0, "final": None, "mean": None, "min": None}


def test_segment_means_by_hand():
    assert segment_means([1.0, 0.0]) == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])
    assert segment_means([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert segment_means([0.0, 1.0] * 5) == pytest.approx([0.5] * 5)
    # 3 steps: segment 2 is 2/3 step a and 1/3 step b; segment 4 is 1/3 b and 2/3 c
    assert segment_means([0.9, 0.6, 0.3]) == pytest.approx([0.9, 0.8, 0.6, 0.4, 0.3])
    with pytest.raises(ValueError):
        segment_means([])


def test_step_agreement_by_hand():
    # called wrong (<= .5): F T T F T ; truly wrong: F T F T T
    result = step_agreement([0.9, 0.2, 0.4, 0.7, 0.5], [1.0, 0.0, 1.0, 0.0, 0.0])
    assert result == pytest.approx(
        {"n": 5, "n_wrong": 3, "accuracy": 3 / 5, "wrong_precision": 2 / 3, "wrong_recall": 2 / 3}
    )
    assert step_agreement([], [])["accuracy"] is None


RIGHT = ["Step 1: 3*4=12, 2+12", "Step 2: 2+12=14", "The answer is \\boxed{14}"]


def test_checker_agreement_on_a_toy_tree(tmp_path):
    # right path 0-1-2 scored .9 .8 .3 ; path wrong from step 2 (node 3) scored .7 .2
    tree = scored(
        [
            (-1, RIGHT[0], False, None, 0.9),
            (0, RIGHT[1], False, None, 0.8),
            (1, RIGHT[2], True, True, 0.3),
            (0, "Step 2: 2+12=15", False, None, 0.7),
            (3, "The answer is \\boxed{15}", True, False, 0.2),
        ],
        "t",
    )
    assert oracle_node_labels(tree) == [1.0, 1.0, 1.0, 0.0, 0.0]
    # called wrong: F F T F T vs truly wrong F F F T T -> 3/5 right; precision 1/2, recall 1/2
    assert checker_agreement([tree]) == pytest.approx(
        {"n": 5, "n_wrong": 2, "accuracy": 0.6, "wrong_precision": 0.5, "wrong_recall": 0.5}
    )
    report = build_report([tree], toy=True)
    assert report["trajectories"] == 2 and report["scorers"] == ["hand"]
    assert report["table5"]["correct"]["final"] == 0.0  # the right path ends at .3
    assert report["mc_checker_agreement"]["n"] == 0  # no MC values attached
    # one incorrect trajectory [.9, .7, .2]: segments a, (2a+b)/3, b, (b+2c)/3, c
    assert report["figure3_medians"]["incorrect"] == pytest.approx([0.9, 2.5 / 3, 0.7, 1.1 / 3, 0.2])
    plot_figure3(segment_distributions(trajectories([tree])), tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
