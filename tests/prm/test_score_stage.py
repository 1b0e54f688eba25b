"""``sppd score`` (and the PRM train/report stages) on tmp folders of hand-made toy trees."""

from __future__ import annotations

import json
import math

import pytest
from test_mc import hand_tree

from sppd.config import ConfigError
from sppd.io import StageDir, iter_trees
from sppd.prm.base import PRMScoreError
from sppd.prm.mc import subtree_path_counts as mc_paths
from sppd.prm.registry import register_prm
from sppd.settings import RunConfig
from sppd.stages import prm_report, prm_train, score
from sppd.toy.config import ToyModelConfig
from sppd.types import PackingMode, RolloutNodes

RIGHT = ["Step 1: 3*4=12, 2+12", "Step 2: 2+12=14", "The answer is \\boxed{14}"]
SPEC = [
    (-1, RIGHT[0], False, None),
    (0, RIGHT[1], False, None),
    (1, RIGHT[2], True, True),
    (1, "The answer is \\boxed{15}", True, False),
    (-1, "Step 1: 3*4=13, 2+13", False, None),
    (4, "Step 2: 2+13=15", False, None),
    (5, "The answer is \\boxed{15}", True, False),
    (-1, "Step 1: 2+3=5, 5*4", False, None),
]  # node 7: a dead end (wrong order, no leaf below)


def write_trees(run_dir, n_shards=2, per_shard=2):
    folder = StageDir(run_dir / "trees")
    for s in range(n_shards):
        folder.write_shard("trees", s, [hand_tree(SPEC, pid=f"p{s}-{i}").to_dict() for i in range(per_shard)])
    return folder


def config(tmp_path, scorer="oracle", **score_kw) -> RunConfig:
    cfg = RunConfig(run_dir=str(tmp_path), threads=2)
    cfg.score.scorer = scorer
    for key, value in score_kw.items():
        setattr(cfg.score, key, value)
    return cfg


def load_scored(folder):
    return list(iter_trees(StageDir(folder)))


def test_oracle_values_on_every_node_and_mc_values(tmp_path):
    write_trees(tmp_path)
    summary = score.main(config(tmp_path))
    trees = load_scored(tmp_path / "scored")
    assert len(trees) == 4 and summary["nodes"] == 4 * len(SPEC) and summary["unvalued_nodes"] == 0
    for tree in trees:
        assert [n.value for n in tree.nodes] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        assert {n.value_source for n in tree.nodes} == {"oracle"}
        # node 0 has leaves 2 (right) and 3 (wrong); node 7 has none
        assert [n.mc_value for n in tree.nodes] == [0.5, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0, None]
        assert [n.mc_count for n in tree.nodes] == [2, 2, 1, 1, 1, 1, 1, 0]
    manifest = StageDir(tmp_path / "scored").read_manifest()
    assert manifest["complete"] and manifest["inputs"]["scorer"] == "oracle"
    assert manifest["shards"] == ["records-scored-00000.jsonl", "records-scored-00001.jsonl"]


def test_rerun_skips_finished_shards(tmp_path, capsys):
    write_trees(tmp_path)
    cfg = config(tmp_path)
    score.main(cfg)
    out = StageDir(tmp_path / "scored")
    kept = out.shard_path("scored", 0)
    stamp = kept.stat().st_mtime_ns
    score.main(cfg)
    assert "nothing to do" in capsys.readouterr().out
    out.invalidate()
    out.shard_path("scored", 1).unlink()  # as if killed after the first shard
    summary = score.main(cfg)
    assert summary["new_shards"] == 1 and summary["problems"] == 4
    assert kept.stat().st_mtime_ns == stamp and out.is_complete()
    cfg.score.scorer = "mc"
    out.invalidate()
    with pytest.raises(ConfigError, match="score.scorer: 'oracle' -> 'mc'"):  # the stale-folder check
        score.main(cfg)


def test_mc_scorer_leaves_dead_ends_unvalued(tmp_path):
    write_trees(tmp_path, n_shards=1, per_shard=1)
    summary = score.main(config(tmp_path, scorer="mc"))
    (tree,) = load_scored(tmp_path / "scored")
    assert [n.value for n in tree.nodes] == [0.5, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0, None]
    assert summary["unvalued_nodes"] == 1 and tree.nodes[0].value_source == "mc"


@pytest.mark.slow
def test_toy_prm_flow_train_score_report(tmp_path):
    """prm train (random init) -> score with every packing mode -> report files."""
    write_trees(tmp_path, n_shards=2, per_shard=4)
    cfg = config(tmp_path, scorer="toy")
    cfg.prm.init_from_policy = False
    cfg.prm.epochs, cfg.prm.batch_size, cfg.prm.val_fraction = 2, 4, 0.25
    cfg.toy.model = ToyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    metrics = prm_train.main(cfg)
    assert math.isfinite(metrics["train_loss"]) and (tmp_path / "prm" / "toy_prm.json").is_file()
    assert prm_train.main(cfg) == metrics  # complete for the same inputs: not retrained
    values = {}
    for mode in PackingMode:
        cfg.score.packing = mode
        summary = score.main(cfg, out_dir=str(tmp_path / f"scored-{mode}"))
        assert summary["unvalued_nodes"] == 0
        values[mode] = [n.value for t in load_scored(tmp_path / f"scored-{mode}") for n in t.nodes]
        assert all(0.0 <= v <= 1.0 for v in values[mode])
    assert values[PackingMode.TREE] == pytest.approx(values[PackingMode.PATH], abs=1e-4)
    assert values[PackingMode.NODE] == pytest.approx(values[PackingMode.PATH], abs=1e-4)
    report = prm_report.main(cfg, trees_dir=str(tmp_path / "scored-tree"))
    out = tmp_path / "prm_report"
    assert {p.name for p in out.iterdir()} >= {"table5.md", "figure3.png", "report.json"}
    assert json.loads((out / "report.json").read_text())["trajectories"] == 8 * 3 == report["trajectories"]
    assert report["table5"]["correct"]["count"] == 8
    assert report["mc_checker_agreement"]["n"] == 8 * 7  # the dead end has no MC value
    assert "wrong-step recall" in (out / "table5.md").read_text()


# --- deliberate fault injectors: PRMs that break the score contract on purpose ---------------


class FaultyPRM:
    """Deliberate fault injector (test only): returns NaN, a value above 1, or one score too few."""

    def __init__(self, fault: str):
        self.fault, self.name = fault, f"fault-{fault}"

    def score(self, items):
        out = []
        for item in items:
            values = [0.5] * len(item.steps)
            if self.fault == "nan" and len(values) >= 2:
                values[1] = float("nan")
            if self.fault == "range" and len(values) >= 3:
                values[2] = 1.5
            out.append(values[:-1] if self.fault == "count" else values)
        return out


def build_faulty(path: str) -> FaultyPRM:
    """Registry factory: ``score.prm_path`` names the fault."""
    return FaultyPRM(path)


@pytest.mark.parametrize(
    "fault, message",
    [
        ("nan", r"problem p0-0, node 1: score is NaN"),
        ("range", r"problem p0-0, node 2: score 1.5 is outside \[0, 1\]"),
        ("count", r"problem p0-0, node 2: the PRM returned 2 scores for a path of 3 steps"),
    ],
)
def test_malformed_scores_name_problem_and_node(tmp_path, fault, message):
    register_prm(f"fault-{fault}", f"{__name__}:build_faulty", replace=True)
    write_trees(tmp_path, n_shards=1, per_shard=1)
    cfg = config(tmp_path, scorer=f"fault-{fault}", prm_path=fault)  # prm_path reaches the factory
    cfg.score.packing = PackingMode.PATH
    with pytest.raises(PRMScoreError, match=message):
        score.main(cfg)
    assert not StageDir(tmp_path / "scored").shards(), "a failed shard must not be written"


def test_missing_trees_and_missing_prm_path(tmp_path):
    with pytest.raises(ConfigError, match="score.trees"):
        score.main(config(tmp_path))
    write_trees(tmp_path, n_shards=1, per_shard=1)
    with pytest.raises(ConfigError, match="score.prm_path"):
        score.main(config(tmp_path, scorer="skywork"))


def test_mc_rollouts_from_the_sampling_policy_give_graded_values(tmp_path, tiny_policy_dir):
    """Real tiny policy: sample trees, then score with 3 rollouts per sibling step (batched)."""
    from sppd.config import load
    from sppd.stages import sample

    cfg = load(RunConfig, "toy-tiny", [f"run_dir={tmp_path}", f"model.path={tiny_policy_dir}"])
    sample.main(cfg)
    # the rollouts must come from the model recorded in the trees' manifest, not model.path
    cfg.model.path = str(tmp_path / "no-such-model")
    cfg.score.scorer, cfg.score.mc_rollouts = "mc", 3
    cfg.score.mc_rollout_nodes = RolloutNodes.BRANCHING  # the arithmetic below (toy's default is contested)
    score.main(cfg)
    trees = load_scored(tmp_path / "scored")
    plain = list(iter_trees(StageDir(tmp_path / "trees")))
    rolled = 0
    for tree, before in zip(trees, plain):
        paths, _ = mc_paths(before)
        for node in tree.nodes:
            parent_children = tree.children_of(node.parent)
            extra = 3 if (not node.terminal and len(parent_children) >= 2) else 0
            below = sum(
                3
                for k in range(len(tree.nodes))
                if k != node.id
                and node.id in tree.path_to(k)
                and not tree.nodes[k].terminal
                and len(tree.children_of(tree.nodes[k].parent)) >= 2
            )
            assert node.mc_count == paths[node.id] + extra + below
            if node.mc_count:
                assert node.value == pytest.approx(node.mc_value)
                assert 0.0 <= node.value <= 1.0
                assert (node.value * node.mc_count) == pytest.approx(round(node.value * node.mc_count))
            rolled += extra > 0
    assert rolled > 0
    assert StageDir(tmp_path / "scored").read_manifest()["inputs"]["mc_rollouts"] == 3


def test_process_judge_needs_the_toy_world(tmp_path):
    write_trees(tmp_path)
    cfg = config(tmp_path, scorer="mc")
    cfg.score.mc_judge = "process"
    cfg.problems.source = "gsm8k"
    with pytest.raises(ConfigError, match="score.mc_judge"):
        score.main(cfg)
    cfg.problems.source = "toy"
    score.main(cfg)
    trees = load_scored(tmp_path / "scored")
    # node 4 "Step 1: 3*4=13" is a wrong step: every path below it is wrong either way
    assert all(t.nodes[4].value == 0.0 and t.nodes[0].value == 0.5 for t in trees)
    assert StageDir(tmp_path / "scored").read_manifest()["inputs"]["mc_judge"] == "process"
