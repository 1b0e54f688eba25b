"""Training a Skywork-format PRM from an HF causal LM (``sppd.prm.value_head``) on the tiny Qwen2."""

from __future__ import annotations

import dataclasses
import random
import warnings

import pytest
import torch
from safetensors.torch import load_file

from fixtures_qwen2 import save_qwen2
from sppd.prm.base import PRMInput, build_prm
from sppd.prm.value_head import load_value_model, save_skywork_folder, train_value_head_prm
from sppd.records import Node, Problem, Tree
from sppd.settings import PRMTrainConfig, RunConfig
from sppd.types import PRMLabel

MARKER = "Divide"
PLAIN = ["Add the numbers.", "Multiply.", "She sold 48 clips.", "So 48 / 2 = 24.", "She has 50 + 15 = 65."]
MARKED = ["Divide.", "Divide 48 by 2.", "Divide the clips.", "So Divide 100 / 2 = 50."]

pytestmark = pytest.mark.filterwarnings("ignore:.*no bos_token")


def chain_tree(index: int, steps: list[str]) -> Tree:
    """One problem whose tree is a single path; a step's hard label says whether it has the marker."""
    nodes = []
    for depth, text in enumerate(steps):
        last = depth == len(steps) - 1
        nodes.append(
            Node(
                id=depth,
                parent=depth - 1,
                depth=depth,
                text=text,
                token_ids=[],
                token_logps=[],
                finish_reason="stop" if last else "step",
                terminal=last,
                children=[] if last else [depth + 1],
                mc_value=1.0 if MARKER in text else 0.0,
                mc_count=1,
            )
        )
    problem = Problem(id=f"p{index}", question=f"Question {index}: how many clips?", gold="1")
    return Tree(problem=problem, prompt_ids=[], nodes=nodes, root_children=[0])


def marker_trees(n: int, seed: int = 0) -> list[Tree]:
    rng = random.Random(seed)
    return [chain_tree(i, [rng.choice(rng.choice([PLAIN, MARKED])) for _ in range(3)]) for i in range(n)]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return save_qwen2(tmp_path_factory.mktemp("qwen2") / "policy")


def test_inputs_are_the_skywork_adapters(policy, tmp_path):
    """The trainer encodes with the adapter's own function: the same ids as ``sppd score`` scores."""
    trainable = load_value_model(policy, device="cpu")
    folder = save_skywork_folder(trainable, tmp_path / "prm")
    scorer = build_prm("skywork", path=folder, device="cpu")
    item = PRMInput("Question 1: how many clips?", ["Divide 48 by 2.", "So 48 / 2 = 24.\n"])
    assert trainable.encode(item) == scorer.encode(item)
    assert scorer.encode(item).input_ids[-1] == scorer.newline_id


def test_a_few_steps_move_head_and_backbone_and_the_folder_scores(policy, tmp_path):
    trees = marker_trees(6)
    cfg = PRMTrainConfig(epochs=1, lr=1e-2, batch_size=2, label=PRMLabel.HARD, val_fraction=0.0, warmup_ratio=0.0)
    before = load_value_model(policy, device="cpu").model.state_dict()
    prm, metrics = train_value_head_prm(trees, cfg, policy)
    after = prm.model.state_dict()
    assert metrics["train_paths"] == 6 and metrics["train_labels"] == 18
    assert len(metrics["curve"]) == 1 and torch.isfinite(torch.tensor(metrics["train_loss"]))
    assert not torch.equal(before["v_head.summary.weight"], after["v_head.summary.weight"])
    moved = [k for k in before if k.startswith("model.") and not torch.equal(before[k], after[k])]
    assert "model.layers.0.self_attn.q_proj.weight" in moved and "model.embed_tokens.weight" in moved

    folder = save_skywork_folder(prm, tmp_path / "prm", metrics)
    names = set(load_file(str(folder / "model.safetensors")))
    assert {"v_head.summary.weight", "v_head.summary.bias", "model.embed_tokens.weight"} <= names
    loaded = build_prm("skywork", path=folder, device="cpu", dtype="fp32")
    items = [PRMInput(t.problem.question, t.path_steps(t.leaves()[0])) for t in trees]
    scores = loaded.score(items)
    with torch.no_grad():
        for item, got in zip(items, scores):
            enc = prm.encode(item)
            ids = torch.tensor([enc.input_ids])
            logits = prm.model(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None])[0]
            assert got == pytest.approx(torch.sigmoid(logits[enc.score_positions]).tolist(), abs=1e-5)


def test_an_existing_skywork_prm_keeps_its_head(policy, tmp_path):
    """Retraining starts from the folder's value head, not a fresh one (updating a PRM)."""
    prm = load_value_model(policy, device="cpu")
    with torch.no_grad():
        prm.model.v_head.summary.weight.fill_(0.25)
    folder = save_skywork_folder(prm, tmp_path / "prm")
    again = load_value_model(folder, device="cpu")
    assert torch.all(again.model.v_head.summary.weight == 0.25)
    assert torch.all(load_value_model(policy, device="cpu").model.v_head.summary.weight == 0)


def test_separable_labels_are_learned_on_held_out_problems(policy):
    """Steps with the marker are labelled 1, others 0; held-out agreement must exceed 0.9."""
    trees = marker_trees(48)
    cfg = PRMTrainConfig(epochs=8, lr=3e-3, batch_size=8, label=PRMLabel.HARD, val_fraction=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, metrics = train_value_head_prm(trees, cfg, policy, seed=0)
    print("marker task:", metrics["val"], [round(c["train_loss"], 4) for c in metrics["curve"]], metrics["seconds"])
    assert metrics["val"]["labels"] >= 20
    assert metrics["val"]["agreement"] > 0.9


def test_prm_train_stage_hf_backbone_then_skywork_scoring(policy, tmp_path):
    """``sppd prm train`` with prm.backbone=hf writes a folder ``sppd score`` scores as skywork."""
    from sppd.config import ConfigError
    from sppd.io import StageDir, iter_trees
    from sppd.stages import prm_train, score
    from sppd.types import PRMBackbone

    StageDir(tmp_path / "trees").write_shard("trees", 0, [t.to_dict() for t in marker_trees(6)])
    cfg = RunConfig(run_dir=str(tmp_path), threads=2)
    cfg.prm.backbone = PRMBackbone.HF
    with pytest.raises(ConfigError, match="'prm.init'"):
        prm_train.main(cfg)
    cfg.prm.init, cfg.prm.epochs, cfg.prm.batch_size, cfg.prm.val_fraction = str(policy), 1, 4, 0.0
    metrics = prm_train.main(cfg)
    assert metrics["train_labels"] == 18 and (tmp_path / "prm" / "sppd_prm.json").is_file()
    assert prm_train.main(cfg) == metrics  # complete for the same inputs: not retrained
    other = save_qwen2(tmp_path / "other", seed=1)
    assert (
        prm_train.fingerprint(cfg, [tmp_path / "trees"], None).digest
        != prm_train.fingerprint(
            dataclasses.replace(cfg, prm=dataclasses.replace(cfg.prm, init=str(other))), [tmp_path / "trees"], None
        ).digest
    )
    cfg.score.scorer, cfg.score.prm_path = "skywork", str(tmp_path / "prm")
    summary = score.main(cfg)
    assert summary["unvalued_nodes"] == 0
    values = [n.value for t in iter_trees(StageDir(tmp_path / "scored")) for n in t.nodes]
    assert len(values) == 18 and all(0.0 < v < 1.0 for v in values)
