"""The toy PRM on local step labels (``prm.label: local``): labels, the token head, its format."""

from __future__ import annotations

import json
import random

import pytest
import torch
from test_mc import hand_tree
from test_toy_prm import RIGHT, TINY, toy_trees

from sppd.judging import toy_step_checker
from sppd.prm.base import PRMInput, build_prm
from sppd.prm.packing import score_trees
from sppd.prm.toy import build_toy_prm, new_toy_prm, random_backbone, train_toy_prm
from sppd.prm.toy_labels import labelled_paths, local_labelled_solutions, slipped_lines
from sppd.settings import PRMTrainConfig
from sppd.toy.config import ToyWorldConfig
from sppd.types import PRMLabel, ToyErrorModel


def token_prm():
    torch.manual_seed(0)
    (backbone, lm_head), tokenizer = random_backbone(TINY, with_lm_head=True)
    prm = new_toy_prm(backbone, tokenizer, lm_head)
    prm.model.eval()
    return prm


WRONG = ["Step 1: 3*4=13, 2+13", "Step 2: 2+13=15", "The answer is \\boxed{15}"]


def test_local_labels_judge_each_step_and_each_character_on_its_own():
    #   0 right ── 1 wrong (2+12=15) ── 2 answer 15: right from the state step 1 wrote
    #          └── 3 right ── 4 answer 14
    spec = [
        (-1, RIGHT[0], False, None),
        (0, "Step 2: 2+12=15", False, None),
        (1, "The answer is \\boxed{15}", True, False),
        (0, RIGHT[1], False, None),
        (3, RIGHT[2], True, True),
    ]
    prm = token_prm()
    local = labelled_paths(prm, [hand_tree(spec)], 1, step_judge=toy_step_checker, local=True)
    process = labelled_paths(prm, [hand_tree(spec)], 1, step_judge=toy_step_checker)
    assert [ys for _, _, ys in process] == [[1.0, 0.0, 0.0], [1.0, 1.0]]
    (ids, positions, targets), (_, positions2, targets2) = local
    text = "".join(prm.tokenizer.convert_ids_to_tokens([ids[p] for p in positions]))
    # node 0 and its newline; node 1 up to its first wrong character ("5" of 15), no newline; node 2 whole
    assert text == RIGHT[0] + "\n" + "Step 2: 2+12=15" + WRONG[2] + "\n"
    assert [k for k, y in enumerate(targets) if y == 0.0] == [len(RIGHT[0]) + 1 + len("Step 2: 2+12=1")]
    assert len(positions2) == len(RIGHT[1]) + len(RIGHT[2]) + 2 and set(targets2) == {1.0}  # node 0 only once


def test_token_head_scores_the_min_over_step_tokens_and_packs_like_paths():
    from sppd.types import PackingMode

    prm = token_prm()
    items = [PRMInput("2+3*4", RIGHT), PRMInput("2+3*4", WRONG)]
    scores = prm.score(items)
    enc = prm.encode(items[1])
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        per_token = torch.sigmoid(prm.model(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None]))[0]
    first = enc.score_positions[0] - len(WRONG[0])  # the first step token: the question's tokens never count
    assert scores[1] == pytest.approx([per_token[first : p + 1].min().item() for p in enc.score_positions], abs=1e-6)
    assert all(a >= b for s in scores for a, b in zip(s, s[1:]))  # a prefix is worth at most its parent
    trees = toy_trees(2)
    by_mode = {mode: [v for s in score_trees(prm, trees, mode)[0] for v in s] for mode in PackingMode}
    for mode in PackingMode:
        assert by_mode[mode] == pytest.approx(by_mode[PackingMode.PATH], abs=1e-5)


def test_head_kind_is_saved_and_old_folders_still_load(tmp_path):
    from safetensors.torch import load_file, save_file

    prm = token_prm()
    folder = prm.save(tmp_path / "prm")
    meta_file = folder / "toy_prm.json"
    meta = json.loads(meta_file.read_text())
    assert meta["format"] == 2 and meta["head"] == "token"
    loaded = build_prm("toy", path=str(folder))
    assert loaded.head == "token"
    item = PRMInput("2+3*4", WRONG)
    assert loaded.score([item])[0] == pytest.approx(prm.score([item])[0], abs=1e-6)
    # a format-1 folder (a value head, its file keyed without the "value_head." prefix) still loads
    old = new_toy_prm(*random_backbone(TINY)).save(tmp_path / "old")
    head = {k.removeprefix("value_head."): v for k, v in load_file(str(old / "value_head.safetensors")).items()}
    save_file(head, str(old / "value_head.safetensors"))
    old_meta = json.loads((old / "toy_prm.json").read_text())
    (old / "toy_prm.json").write_text(json.dumps({k: v for k, v in old_meta.items() if k != "head"} | {"format": 1}))
    assert build_toy_prm(old).head == "value"
    meta_file.write_text(json.dumps(meta | {"head": "value"}))
    with pytest.raises(ValueError, match="not a value head"):
        build_toy_prm(folder)
    meta_file.write_text(json.dumps(meta | {"head": "mean"}))
    with pytest.raises(ValueError, match="head 'mean'"):
        build_toy_prm(folder)
    meta_file.write_text(json.dumps(meta | {"format": 3}))
    with pytest.raises(ValueError, match="format 3, this sppd reads 1 and 2"):
        build_toy_prm(folder)


def test_slipped_solutions_are_labelled_exactly_and_hold_both_labels():
    world = ToyWorldConfig(error_model=ToyErrorModel.V2, terse_rate=0.3)
    sols = local_labelled_solutions(world, 60, seed=0, step_judge=toy_step_checker)
    assert sols == local_labelled_solutions(world, 60, seed=0, step_judge=toy_step_checker)  # deterministic
    labels = [y for _, _, ys in sols for y in ys]
    assert 0.05 < 1 - sum(labels) / len(labels) < 0.4  # wrong lines, but most lines right
    for question, lines, ys in sols:
        assert ys == [float(ok) for ok in toy_step_checker(question, lines)]
        assert lines[-1].startswith("The answer is ")
    # without slips every line is right, whatever order or layout
    clean = slipped_lines("7-3*4+9", world, random.Random(1), slip_rate=0.0)
    assert all(toy_step_checker("7-3*4+9", clean)) and clean[-1] == "The answer is \\boxed{4}"


def test_local_label_needs_a_judge_and_a_toy_backbone(tmp_path):
    from sppd.config import ConfigError
    from sppd.prm.value_head import train_value_head_prm
    from sppd.settings import load_run_config
    from sppd.stages.prm_train import step_judge

    with pytest.raises(ValueError, match="prm.label=local needs the task's step judge"):
        train_toy_prm(toy_trees(2), PRMTrainConfig(label=PRMLabel.LOCAL), progress=False)
    assert step_judge(load_run_config("toy-tiny", ["prm.label=local"])) is toy_step_checker
    with pytest.raises(ConfigError, match="config key 'prm.label': 'local' .* only the toy PRM"):
        step_judge(load_run_config("toy-tiny", ["prm.label=local", "prm.backbone=hf"]))
    with pytest.raises(ValueError, match="prm.label=local is for the toy PRM only"):
        train_value_head_prm(toy_trees(2), PRMTrainConfig(label=PRMLabel.LOCAL), tmp_path, step_judge=toy_step_checker)


def test_training_on_local_labels_trains_the_token_head_from_the_policy(tiny_policy_dir):
    from transformers import AutoModelForCausalLM

    cfg = PRMTrainConfig(
        epochs=2, batch_size=4, val_fraction=0.3, label=PRMLabel.LOCAL, synthetic_solutions=4, init_from_policy=True
    )
    prm, metrics = train_toy_prm(
        toy_trees(6), cfg, tiny_policy_dir, seed=0, progress=False, step_judge=toy_step_checker
    )
    assert prm.head == "token"
    before = AutoModelForCausalLM.from_pretrained(str(tiny_policy_dir)).lm_head.weight
    assert not torch.equal(before, prm.model.lm_head.weight)  # started from the policy's head and moved
    assert metrics["train_paths"] == metrics["tree_paths"] + 4
    assert metrics["train_labels"] > 6 * metrics["train_paths"]  # characters, not only newlines
    assert 0.0 <= metrics["val"]["checker_agreement"]["accuracy"] <= 1.0


def test_char_labels_mark_the_first_character_off_every_right_line():
    from sppd.prm.toy_lines import char_labels

    def bits(steps):
        return ["".join(str(int(y)) for y in ys) for ys in char_labels("2+3*4", steps)]

    # "3*4=13": the "1" could still start 12, the "3" cannot; a later line is judged from what was written
    wrong = ["Step 1: 3*4=13, 2+13", "Step 2: 2+13=15", "The answer is \\boxed{15}", "Step 4: 1+1=2"]
    assert bits(wrong) == ["1" * 13 + "0" * 7, "1" * 15, "1" * 24, "0" * 13]
    # any valid order and either layout of a line is right; the step number is not checked
    assert bits(["Step 7: 2+3=5"]) == ["1" * 8 + "0" * 5]  # 2+3 first breaks precedence: only 3*4 is next
    assert bits(["Step 9: 3*4=12", "Step 2: 2+12=14, 14"]) == ["1" * 14, "1" * 19]
    assert char_labels("hello", ["Step 1: 1+1=2"]) is None
