"""The learned toy PRM (layout, save/load, batching, training) and the oracle PRM."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_mc import hand_tree

from sppd.prm.base import PRMInput, ProcessRewardModel, TokenLevelPRM, build_prm
from sppd.prm.mc import attach_mc_values
from sppd.prm.oracle import oracle_values
from sppd.prm.toy import ToyPRM, build_toy_prm, new_toy_prm, random_backbone, train_toy_prm
from sppd.prm.toy_labels import labelled_paths, process_labels
from sppd.settings import PRMTrainConfig
from sppd.toy.config import ToyModelConfig
from sppd.types import PRMLabel

RIGHT = ["Step 1: 3*4=12, 2+12", "Step 2: 2+12=14", "The answer is \\boxed{14}"]
TINY = ToyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, seed=3)


def toy_trees(n: int):
    """``n`` copies of: a right path (3 steps, correct) and a path wrong from step 1 (incorrect)."""
    spec = [
        (-1, RIGHT[0], False, None),
        (0, RIGHT[1], False, None),
        (1, RIGHT[2], True, True),
        (-1, "Step 1: 3*4=13, 2+13", False, None),
        (3, "Step 2: 2+13=15", False, None),
        (4, "The answer is \\boxed{15}", True, False),
    ]
    trees = [hand_tree(spec, pid=f"p{i}") for i in range(n)]
    for tree in trees:
        attach_mc_values(tree)
    return trees


@pytest.fixture()
def tiny_prm() -> ToyPRM:
    prm = new_toy_prm(*random_backbone(TINY))
    with torch.no_grad():  # a random head, so that scores differ between tokens
        torch.nn.init.normal_(prm.model.value_head.weight, std=0.1)
    prm.model.eval()
    return prm


def test_oracle_on_right_and_wrong_steps():
    assert oracle_values("2+3*4", RIGHT) == [1.0, 1.0, 1.0]
    assert (
        oracle_values("2+3*4", ["Step 1: 3*4=13, 2+13", "Step 2: 2+13=15", "The answer is \\boxed{15}"]) == [0.0] * 3
    )
    assert oracle_values("2+3*4", RIGHT[:2] + ["The answer is \\boxed{15}"]) == [1.0, 1.0, 0.0]
    assert oracle_values("2+3*4", [RIGHT[0], "Step 2: 2+12=15", "The answer is \\boxed{15}"]) == [1.0, 0.0, 0.0]
    assert oracle_values("2+3*4", ["hello", RIGHT[0]]) == [0.0, 0.0]
    prm = build_prm("oracle")
    assert isinstance(prm, ProcessRewardModel)
    assert prm.score([PRMInput("2+3*4", RIGHT[:1]), PRMInput("2+3*4", [])]) == [[1.0], []]
    with pytest.raises(ValueError, match="not a toy-world question"):
        oracle_values("What is 2+2?", ["4"])


def test_layout_is_prompt_then_each_step_and_a_newline(tiny_prm):
    assert isinstance(tiny_prm, TokenLevelPRM)
    tok = tiny_prm.tokenizer
    enc = tiny_prm.encode(PRMInput("2+3*4", ["ab", "c\n"]))
    chars = [tok.convert_tokens_to_ids(c) for c in "Q: 2+3*4\nab\nc\n"]
    assert enc.input_ids == [tok.bos_token_id] + chars
    # <bos> + "Q: 2+3*4\n" is 10 tokens; "ab" then its newline at 12; "c" then newline at 14
    assert enc.score_positions == [12, 14]


def test_scores_in_unit_interval_batched_equals_single_and_round_trip(tiny_prm, tmp_path):
    items = [PRMInput("2+3*4", RIGHT), PRMInput("7-9", ["Step 1: 7-9=-2"]), PRMInput("1+1", RIGHT[:2])]
    batched = tiny_prm.score(items)
    assert [len(s) for s in batched] == [3, 1, 2]
    assert all(0.0 <= v <= 1.0 for s in batched for v in s)
    assert len({round(v, 6) for s in batched for v in s}) > 3  # not a constant
    for item, scores in zip(items, batched):
        assert tiny_prm.score([item])[0] == pytest.approx(scores, abs=1e-6)
    folder = tiny_prm.save(tmp_path / "prm", metrics={"note": 1})
    for name in ("config.json", "model.safetensors", "tokenizer.json", "value_head.safetensors", "toy_prm.json"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "toy_prm.json").read_text())["metrics"] == {"note": 1}
    loaded = build_prm("toy", path=str(folder))
    reloaded = loaded.score(items)
    assert [v for s in reloaded for v in s] == pytest.approx([v for s in batched for v in s], abs=1e-6)
    with pytest.raises(FileNotFoundError, match="train a toy PRM first"):
        build_toy_prm(tmp_path / "missing")


def test_each_distinct_node_is_labelled_once():
    trees = toy_trees(1)
    # right path 0-1-2 and wrong path 3-4-5: nothing shared, 6 labels
    assert sum(len(pos) for _, pos, _ in labelled_paths(new_toy_prm(*random_backbone(TINY)), trees, 1)) == 6
    # add a second leaf under node 1: nodes 0 and 1 must not be labelled again
    spec_leaf = trees[0]
    from sppd.records import Node

    spec_leaf.nodes.append(
        Node(
            id=6,
            parent=1,
            depth=2,
            text="The answer is \\boxed{13}",
            token_ids=[1],
            token_logps=[0.0],
            finish_reason="eos",
            terminal=True,
            correct=False,
        )
    )
    spec_leaf.nodes[1].children.append(6)
    attach_mc_values(spec_leaf)
    examples = labelled_paths(new_toy_prm(*random_backbone(TINY)), trees, 1)
    assert [len(pos) for _, pos, _ in examples] == [3, 3, 1]  # leaves in id order: 2, 5, 6
    assert examples[0][2] == [0.5, 0.5, 1.0]  # nodes 0 and 1 now rest on 2 paths, 1 right
    assert examples[2][2] == [0.0]


def test_process_labels_follow_the_task_step_judge_not_the_mc_values():
    from sppd.tasks import resolve

    #   0 right ── 1 wrong (2+12=15) ── 2 answer 15 (outcome wrong)
    #          └── 3 right ── 4 answer 14 (right)
    #   5 right, a second root step with a dead end below: no complete path, so never labelled
    spec = [
        (-1, RIGHT[0], False, None),
        (0, "Step 2: 2+12=15", False, None),
        (1, "The answer is \\boxed{15}", True, False),
        (0, RIGHT[1], False, None),
        (3, RIGHT[2], True, True),
        (-1, RIGHT[0], False, None),
    ]
    tree = hand_tree(spec)
    prm = new_toy_prm(*random_backbone(TINY))
    step_judge = resolve("toy")[0].step_checker
    # no MC values attached: process labels need none
    examples = labelled_paths(prm, [tree], 1, step_judge=step_judge)
    assert [ys for _, _, ys in examples] == [[1.0, 0.0, 0.0], [1.0, 1.0]]  # leaves 2, 4; node 0 once
    assert [len(pos) for _, pos, _ in examples] == [3, 2]
    attach_mc_values(tree)
    soft = labelled_paths(prm, [tree], 1)
    assert soft[0][2] == [0.5, 0.0, 0.0]  # the right first step: MC says 0.5, the checker says right
    # a step after a wrong one stays 0 even when it is right from the state the wrong one wrote
    assert process_labels([True, False, True, True]) == [1.0, 0.0, 0.0, 0.0]


def test_process_label_needs_a_step_judge(tmp_path):
    from sppd.config import ConfigError
    from sppd.settings import load_run_config
    from sppd.stages.prm_train import step_judge

    with pytest.raises(ValueError, match="prm.label=process needs the task's step judge"):
        train_toy_prm(toy_trees(2), PRMTrainConfig(label=PRMLabel.PROCESS), progress=False)
    assert step_judge(load_run_config("toy-tiny", ["prm.label=soft"])) is None  # no judge asked for
    assert step_judge(load_run_config("toy-tiny", ["prm.label=process"])) is not None
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    cfg = load_run_config("toy-tiny", ["prm.label=process", f"problems.source={questions}"])
    with pytest.raises(ConfigError, match="config key 'prm.label': 'process' needs a step checker"):
        step_judge(cfg)


@pytest.mark.slow
def test_training_changes_parameters_and_loss_is_finite(tiny_policy_dir):
    trees = toy_trees(8)
    cfg = PRMTrainConfig(epochs=3, lr=3e-3, batch_size=4, val_fraction=0.3, init_from_policy=True)
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(str(tiny_policy_dir)).model.state_dict()
    prm, metrics = train_toy_prm(trees, cfg, policy_path=tiny_policy_dir, seed=0, progress=False)
    after = prm.model.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "backbone did not move"
    assert prm.model.value_head.weight.abs().sum() > 0, "value head did not move from its zero init"
    assert all(math.isfinite(c["train_loss"]) for c in metrics["curve"])
    assert metrics["curve"][-1]["train_loss"] < metrics["curve"][0]["train_loss"]
    assert metrics["train_problems"] + metrics["val_problems"] == 8 and metrics["val_problems"] > 0
    val = metrics["val"]
    assert val["nodes"] == 6 * metrics["val_problems"]
    assert 0.0 <= val["checker_agreement"]["accuracy"] <= 1.0
    # MC labels of these trees equal the oracle's exactly (each path is all right or all wrong)
    assert val["mc_checker_agreement"]["accuracy"] == 1.0
    with pytest.raises(ValueError, match="no policy folder"):
        train_toy_prm(trees, cfg, policy_path=None, progress=False)
