"""Builders on hand-made scored trees; every expected record is worked out in the comments.

Tree pictures: ``nK "text" value``, children indented; ids are depth-first pre-order.
"""

from collections import Counter

import pytest
from handmade_trees import S, make_tree, tree_a, tree_no_correct, tree_ties

from sppd.data.builders import build_dpo, build_sft, build_step_pairs
from sppd.records import StepPair
from sppd.settings import BuildConfig
from sppd.types import StepPairMode

EVERY = StepPairMode.EVERY_STEP


def pairs_of(tree, **cfg):
    counts = Counter()
    pairs = build_step_pairs(tree, BuildConfig(**cfg), counts)
    return pairs, counts


def ids(pairs):
    return [p.id for p in pairs]


# ---------------------------------------------------------------- SFT (tau_+)


def test_sft_picks_correct_path_with_highest_min_value():
    # tree_a correct paths: n2 (.875, .75, .9375) min .75; n7 (.375, .5) min .375 -> n2
    counts = Counter()
    ex = build_sft(tree_a(), counts)
    assert ex.id == "p0/sft/2" and ex.problem_id == "p0" and ex.prompt == "What is 1+2*3?"
    assert ex.steps == ["A1", "A1B1", "A1B1C1 \\boxed{7}"]
    assert ex.completion == "A1\nA1B1\nA1B1C1 \\boxed{7}"
    assert ex.min_value == 0.75
    assert ex.meta["values"] == [0.875, 0.75, 0.9375]
    assert counts == Counter(problems=1, kept=1, paths=4, correct_paths=2, wrong_paths=2)


def test_chosen_min_value_rejects_tau_plus_with_a_low_step():
    # tree_a's tau_+ has min value .75: kept above a .7 floor, dropped at .75 (not strictly above)
    assert build_sft(tree_a(), min_value=0.7).id == "p0/sft/2"
    counts = Counter()
    assert build_sft(tree_a(), counts, min_value=0.75) is None
    assert counts["chosen_below_min_value"] == 1 and counts["kept"] == 0
    dpo_counts = Counter()
    assert build_dpo(tree_a(), dpo_counts, min_value=0.75) is None and dpo_counts["chosen_below_min_value"] == 1
    assert build_dpo(tree_a(), min_value=0.0) is not None


def test_sft_joins_with_the_given_delimiter():
    assert build_sft(tree_a(), delimiter="\n\n").completion == "A1\n\nA1B1\n\nA1B1C1 \\boxed{7}"


def test_sft_no_correct_path_is_skipped_and_counted():
    counts = Counter()
    assert build_sft(tree_no_correct(), counts) is None
    assert counts == Counter(problems=1, no_correct_path=1, paths=2, wrong_paths=2)


def test_sft_tie_on_min_broken_by_mean_then_length_then_id():
    # all three correct paths have min .5. n1 (.5, .75) has mean .625 > .5 -> n1
    assert build_sft(tree_ties(v1=0.75)).id == "p2/sft/1"
    # v1=.5: n1 and n2 are (.5, .5), n3 is (.5): equal mean .5 -> shorter n3
    assert build_sft(tree_ties(v1=0.5)).id == "p2/sft/3"
    # v1=.5 without n3: n1 and n2 tie on everything -> lower leaf id n1
    assert build_sft(tree_ties(v1=0.5, with_q=False)).id == "p2/sft/1"


def test_sft_counter_aggregates_over_trees():
    counts = Counter()
    for tree in (tree_a(), tree_no_correct(), tree_ties()):
        build_sft(tree, counts)
    # kept: p0, p2; dropped: p1. paths: 4 + 2 + 3; correct 2 + 0 + 3; wrong 2 + 2 + 0
    assert counts == Counter(problems=3, kept=2, no_correct_path=1, paths=9, correct_paths=5, wrong_paths=4)


def test_unscored_and_truncated_and_unjudged_paths_are_not_used():
    #   n0 "A" .9 -> n1 "A-ans" None, correct      (unscored path)
    #   n2 "B" .5, correct, finish=max_depth        (cut path: not complete)
    #   n3 "C" .5, terminal, correct=None           (unjudged)
    #   n4 "D" .25, correct                         (usable, min .25)
    tree = make_tree(
        S("A", 0.9, S("A-ans", None, correct=True)),
        S("B", 0.5, correct=True, finish="max_depth"),
        S("C", 0.5, terminal=True, finish="eos"),
        S("D", 0.25, correct=True),
    )
    counts = Counter()
    assert build_sft(tree, counts).id == "p0/sft/4"
    assert counts == Counter(
        problems=1, kept=1, paths=4, unscored_paths=1, truncated_paths=1, unjudged_paths=1, correct_paths=1
    )


def test_nan_value_counts_as_unscored():
    tree = make_tree(S("A", float("nan"), correct=True), S("B", 0.25, correct=True))
    assert build_sft(tree).id == "p0/sft/1"


# ---------------------------------------------------------------- DPO (tau_+ vs tau_-)


def test_dpo_rejects_wrong_path_with_lowest_min_value():
    # wrong paths: n3 min .125, n5 (.875, .1875, .0625) min .0625 -> rejected n5; chosen n2 (min .75)
    counts = Counter()
    pair = build_dpo(tree_a(), counts)
    assert pair.id == "p0/dpo/2-5" and pair.prompt == "What is 1+2*3?"
    assert pair.chosen == "A1\nA1B1\nA1B1C1 \\boxed{7}"
    assert pair.rejected == "A1\nA1B2\nA1B2C1 \\boxed{8}"
    assert pair.chosen_steps == ["A1", "A1B1", "A1B1C1 \\boxed{7}"]
    assert pair.rejected_steps == ["A1", "A1B2", "A1B2C1 \\boxed{8}"]
    assert (pair.chosen_value, pair.rejected_value) == (0.75, 0.0625)
    assert counts == Counter(problems=1, kept=1, paths=4, correct_paths=2, wrong_paths=2)


def test_dpo_missing_sides_are_counted():
    counts = Counter()
    assert build_dpo(tree_no_correct(), counts) is None
    assert build_dpo(tree_ties(), counts) is None
    assert counts["no_correct_path"] == 1 and counts["no_wrong_path"] == 1
    assert counts["problems"] == 2 and counts["kept"] == 0


def test_dpo_truncated_wrong_path_is_not_a_rejected_trajectory():
    #   n0 "ok" .75 correct; n1 "ramble" .0625 cut at max_depth (judged wrong) -> no usable wrong path
    tree = make_tree(S("ok \\boxed{7}", 0.75, correct=True), S("ramble", 0.0625, correct=False, finish="max_depth"))
    counts = Counter()
    assert build_dpo(tree, counts) is None
    assert counts["no_wrong_path"] == 1 and counts["truncated_paths"] == 1


def test_dpo_tie_on_min_broken_by_lower_mean_then_shorter():
    #   n0 "W" .5 -> n1 "W-x" .25 wrong        path (.5, .25)  min .25 mean .375
    #   n2 "V" .25 -> n3 "V-x" .25 wrong       path (.25, .25) min .25 mean .25
    #   n4 "U" .25 wrong                       path (.25)      min .25 mean .25, 1 step
    #   n5 "C" .5 correct
    tree = make_tree(
        S("W", 0.5, S("W-x", 0.25, correct=False)),
        S("V", 0.25, S("V-x", 0.25, correct=False)),
        S("U", 0.25, correct=False),
        S("C", 0.5, correct=True),
    )
    assert build_dpo(tree).id == "p0/dpo/5-4"  # lowest mean .25 shared by n3 and n4; n4 is shorter
    tree.nodes[2].value = 0.125  # now path V: (.125, .25) min .125 -> strictly lowest
    assert build_dpo(tree).id == "p0/dpo/5-3"


# ---------------------------------------------------------------- step pairs (§4.1)


def test_step_pairs_threshold_on_tree_a():
    # root: n0 .875 vs n6 .375 gap .5 (not > .5) -> gap_too_small
    # n0:   n1 .75 vs n4 .1875 gap .5625 -> kept;  n1: n2 .9375 vs n3 .125 gap .8125 -> kept
    # n4, n6: one child each -> no_siblings
    pairs, counts = pairs_of(tree_a())
    assert ids(pairs) == ["p0/step/1-4", "p0/step/2-3"]
    assert counts == Counter(problems=1, problems_with_pairs=1, parents=5, no_siblings=2, gap_too_small=1, kept=2)
    first, second = pairs
    assert (first.chosen, first.rejected, first.chosen_value, first.rejected_value) == ("A1B1", "A1B2", 0.75, 0.1875)
    assert first.prefix_steps == ["A1"] and first.initial_reason_steps == "A1\n" and first.depth == 1
    assert (first.chosen_terminal, first.rejected_terminal) == (False, False)
    assert second.prefix_steps == ["A1", "A1B1"] and second.initial_reason_steps == "A1\nA1B1\n"
    assert second.depth == 2 and (second.chosen_terminal, second.rejected_terminal) == (True, True)
    assert second.meta["value_gap"] == 0.8125 and second.meta["parent"] == 1
    assert StepPair.from_dict(second.to_dict()) == second


def _root_pair(v0, v1, **cfg):
    return pairs_of(make_tree(S("X", v0, correct=True), S("Y", v1, correct=False)), **cfg)


def test_gap_exactly_at_threshold_is_dropped():
    assert 0.75 - 0.25 == 0.5  # exact in binary
    pairs, counts = _root_pair(0.75, 0.25)
    assert pairs == [] and counts["gap_too_small"] == 1 and counts["kept"] == 0
    # 0.4 - 0.1 is 0.30000000000000004 in floats, but "exactly at" 0.3 in decimal: dropped too
    assert 0.4 - 0.1 > 0.3
    pairs, counts = _root_pair(0.4, 0.1, step_gap=0.3)
    assert pairs == [] and counts["gap_too_small"] == 1


def test_gap_just_above_threshold_is_kept():
    pairs, counts = _root_pair(0.75 + 2**-20, 0.25)  # gap 0.50000095
    assert ids(pairs) == ["p0/step/0-1"] and counts["kept"] == 1
    # custom gap: .5 - .4375 = .0625 > .0 -> kept with step_gap 0
    pairs, _ = _root_pair(0.5, 0.4375, step_gap=0.0)
    assert len(pairs) == 1 and pairs[0].meta["value_gap"] == 0.0625


def test_root_level_pair_has_empty_prefix():
    # root: n0 .9375 (correct) vs n1 .0625 (wrong) gap .875
    pairs, _ = _root_pair(0.9375, 0.0625)
    (p,) = pairs
    assert p.prefix_steps == [] and p.initial_reason_steps == "" and p.depth == 0
    assert (p.chosen, p.rejected, p.chosen_value, p.rejected_value) == ("X", "Y", 0.9375, 0.0625)
    assert p.meta["parent"] == -1 and p.meta["parent_value"] is None


def test_chosen_is_the_higher_value_whatever_the_order():
    # root: n0 .0625, n1 .9375 -> chosen n1
    pairs, _ = _root_pair(0.0625, 0.9375)
    assert ids(pairs) == ["p0/step/1-0"] and pairs[0].chosen == "Y"


def test_single_child_gives_no_pair():
    # n0 "A" .9 -> n1 "B" .1 (correct): root and n0 have one child each
    pairs, counts = pairs_of(make_tree(S("A", 0.875, S("B", 0.125, correct=True))))
    assert pairs == [] and counts == Counter(problems=1, parents=2, no_siblings=2)


def _four_kids():
    # root children: n0 .9375, n1 .1875, n2 .75, n3 .0625 -> ranked n0, n2, n1, n3
    return make_tree(*(S(f"K{i}", v, correct=i % 2 == 0) for i, v in enumerate([0.9375, 0.1875, 0.75, 0.0625])))


def test_three_children_pairs_per_parent():
    # root children: n0 .5, n1 .9375, n2 .0625 -> ranked n1, n0, n2: best vs worst = (n1, n2) gap .875;
    # the next pair would be n0 vs n0 (no step reused) -> one pair even with pairs_per_parent=2
    tree = make_tree(S("M", 0.5, correct=True), S("B", 0.9375, correct=True), S("W", 0.0625, correct=False))
    for ppp in (1, 2):
        pairs, counts = pairs_of(tree, pairs_per_parent=ppp)
        assert ids(pairs) == ["p0/step/1-2"] and counts["kept"] == 1


def test_four_children_pairs_per_parent():
    assert ids(pairs_of(_four_kids(), pairs_per_parent=1)[0]) == ["p0/step/0-3"]  # gap .875
    # second pair: n2 .75 vs n1 .1875 gap .5625
    assert ids(pairs_of(_four_kids(), pairs_per_parent=2)[0]) == ["p0/step/0-3", "p0/step/2-1"]
    assert ids(pairs_of(_four_kids(), pairs_per_parent=3)[0]) == ["p0/step/0-3", "p0/step/2-1"]
    # step_gap .6: the second gap .5625 is too small
    pairs, counts = pairs_of(_four_kids(), pairs_per_parent=2, step_gap=0.6)
    assert ids(pairs) == ["p0/step/0-3"] and counts["gap_too_small"] == 1


def test_every_step_mode_ignores_gap_but_skips_ties():
    # tree_a every_step: root (n0 .875, n6 .375) now kept too, root first
    pairs, counts = pairs_of(tree_a(), step_pair_mode=EVERY)
    assert ids(pairs) == ["p0/step/0-6", "p0/step/1-4", "p0/step/2-3"] and counts["kept"] == 3
    # a gap of .0625 is kept in every_step mode, dropped in threshold mode
    assert len(_root_pair(0.5, 0.4375, step_pair_mode=EVERY)[0]) == 1
    assert len(_root_pair(0.5, 0.4375)[0]) == 0
    # exact tie: no pair in either mode
    for mode in (EVERY, StepPairMode.THRESHOLD):
        pairs, counts = _root_pair(0.5, 0.5, step_pair_mode=mode, step_gap=0.0)
        assert pairs == [] and counts["tie"] == 1


def test_unscored_children_are_skipped_and_counted():
    # root: n0 .9375, n1 None, n2 .0625 -> n1 skipped, pair (n0, n2)
    tree = make_tree(S("A", 0.9375, correct=True), S("B", None, correct=True), S("C", 0.0625, correct=False))
    pairs, counts = pairs_of(tree)
    assert ids(pairs) == ["p0/step/0-2"] and counts["unscored"] == 1
    # root: n0 .9375, n1 None -> one usable child -> no pair
    pairs, counts = pairs_of(make_tree(S("A", 0.9375, correct=True), S("B", None, correct=True)))
    assert pairs == [] and counts == Counter(problems=1, parents=1, unscored=1, no_siblings=1)


def test_deep_pair_prefix_is_the_ancestor_steps():
    # n0 "S1" .5 -> n1 "S2" .5 -> n2 "S3" .5 -> {n3 "X" .9375 correct, n4 "Y" .0625 wrong}
    tree = make_tree(
        S("S1", 0.5, S("S2", 0.5, S("S3", 0.5, S("X", 0.9375, correct=True), S("Y", 0.0625, correct=False))))
    )
    counts = Counter()
    (p,) = build_step_pairs(tree, BuildConfig(), counts, delimiter="\n\n")
    assert p.prefix_steps == ["S1", "S2", "S3"] == tree.path_steps(2)
    assert p.initial_reason_steps == "S1\n\nS2\n\nS3\n\n" and p.depth == 3
    assert (p.chosen, p.rejected) == ("X", "Y")


def test_require_complete_subtree_drops_dead_ends():
    # n0 "dead" .9375 (never expanded, not terminal); n1 "live" .0625 -> n2 "end" .5 correct
    # n3 "cut" .875 -> n4 "more" .75 cut at max_depth (its path is not complete)
    tree = make_tree(
        S("dead", 0.9375),
        S("live", 0.0625, S("end", 0.5, correct=True)),
        S("cut", 0.875, S("more", 0.75, finish="max_depth", correct=False)),
    )
    pairs, counts = pairs_of(tree)
    assert ids(pairs) == ["p0/step/0-1"]  # n0 .9375 vs n1 .0625
    pairs, counts = pairs_of(tree, require_complete_subtree=True)
    # dropped: n0, n3 (root) and n4 (under n3); root keeps only n1, n1 has one child, n3 none
    assert pairs == [] and counts["incomplete_subtree"] == 3 and counts["no_siblings"] == 3


def test_step_cut_by_the_token_budget_is_never_paired_as_a_finished_step():
    # root: n0 "long..." .9375 cut by the step budget; n1 "stop" .0625 ended by EOS; n2 "mid" .5 ->
    # n3 "deep" .875 finished with its delimiter but cut at max_depth; n4 "half" .125 cut by length
    tree = make_tree(
        S("long", 0.9375, finish="length", correct=False),
        S("stop", 0.0625, finish="eos", correct=False),
        S("mid", 0.5, S("deep", 0.875, finish="max_depth", correct=False), S("half", 0.125, finish="length")),
    )
    pairs, counts = pairs_of(tree, step_gap=0.1)
    # root: n2 .5 vs n1 .0625 (n0 dropped); under n2 only n3 is usable: no pair
    assert ids(pairs) == ["p0/step/2-1"] and counts["cut_step"] == 2 and counts["no_siblings"] == 1
    assert (pairs[0].chosen_terminal, pairs[0].rejected_terminal) == (False, True)
    # a max_depth/max_total step is finished (the model wrote its delimiter): paired, not terminal
    tree = make_tree(S("mid", 0.5, S("deep", 0.875, finish="max_depth", correct=False), S("x", 0.125)))
    (pair,) = pairs_of(tree, step_gap=0.1)[0]
    assert (pair.chosen, pair.chosen_terminal) == ("deep", False)


def test_same_text_is_dropped():
    pairs, counts = pairs_of(make_tree(S("same", 0.9375), S("same", 0.0625)))
    assert pairs == [] and counts["same_text"] == 1


def test_cap_keeps_the_largest_gaps():
    # tree_a every_step gaps: root .5, n0 .5625, n1 .8125 -> cap 1 keeps n1's pair, cap 2 the last two
    pairs, counts = pairs_of(tree_a(), step_pair_mode=EVERY, max_step_pairs_per_problem=1)
    assert ids(pairs) == ["p0/step/2-3"] and counts["over_cap"] == 2 and counts["kept"] == 1
    pairs, _ = pairs_of(tree_a(), step_pair_mode=EVERY, max_step_pairs_per_problem=2)
    assert ids(pairs) == ["p0/step/1-4", "p0/step/2-3"]


def test_bad_pairs_per_parent_is_an_error():
    with pytest.raises(ValueError, match="pairs_per_parent"):
        pairs_of(tree_a(), pairs_per_parent=0)


# ---------------------------------------------------------------- sampled token ids


def test_records_carry_the_sampled_ids():
    # make_tree: prompt ids [1, 2, 3]; node k's ids are [k] (finish "delimiter": kept whole)
    tree = tree_a()
    sft = build_sft(tree)
    assert (sft.prompt_ids, sft.completion_ids) == ([1, 2, 3], [0, 1, 2])  # path n0 n1 n2
    dpo = build_dpo(tree)
    assert (dpo.prompt_ids, dpo.chosen_ids, dpo.rejected_ids) == ([1, 2, 3], [0, 1, 2], [0, 4, 5])
    first, second = pairs_of(tree)[0]
    # n1 vs n4 after prefix n0; n2 vs n3 after prefix n0 n1: the sides share exactly the prefix ids
    assert (first.prompt_ids, first.prefix_ids, first.chosen_ids, first.rejected_ids) == ([1, 2, 3], [0], [1], [4])
    assert (second.prefix_ids, second.chosen_ids, second.rejected_ids) == ([0, 1], [2], [3])
    root = _root_pair(0.9375, 0.0625)[0][0]
    assert (root.prefix_ids, root.chosen_ids, root.rejected_ids) == ([], [0], [1])


def test_the_stop_token_of_a_step_the_model_ended_is_left_to_training():
    # n0 "A" .75 (ids 10 11, then "\n" 12), n1 "B" ended by EOS (ids 20, stop 2), n2 "C" by EOS
    tree = make_tree(S("A", 0.75, S("B", 0.9, correct=True, finish="eos"), S("C", 0.1, correct=False, finish="eos")))
    for node, ids in zip(tree.nodes, ([10, 11, 12], [20, 2], [30, 2])):
        node.token_ids = ids
    assert build_sft(tree).completion_ids == [10, 11, 12, 20]
    dpo = build_dpo(tree)
    assert (dpo.chosen_ids, dpo.rejected_ids) == ([10, 11, 12, 20], [10, 11, 12, 30])
    (pair,) = pairs_of(tree, step_gap=0.5)[0]
    assert (pair.prefix_ids, pair.chosen_ids, pair.rejected_ids) == ([10, 11, 12], [20], [30])


def test_trees_without_ids_give_records_without_ids():
    no_prompt = tree_a()
    no_prompt.prompt_ids = []
    no_step_ids = tree_a()
    no_step_ids.nodes[2].token_ids = []  # the SFT path's last step
    for tree in (no_prompt, no_step_ids):
        sft = build_sft(tree)
        assert sft.prompt_ids is None and sft.completion_ids is None
    pairs = pairs_of(no_step_ids)[0]
    assert pairs[0].chosen_ids == [1] and pairs[1].chosen_ids is None and pairs[1].prefix_ids is None
