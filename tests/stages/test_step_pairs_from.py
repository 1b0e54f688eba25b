"""``pipeline.step_pairs_from``: Stage 1's step-DPO runs on the base model's pairs (default) or on
on-policy pairs their start model samples anew (``start``): the plan, the unchanged default, a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_accelerate_pipeline import SMALL as ACCELERATE_SMALL

from sppd import cli, layout
from sppd.config import to_dict
from sppd.digest import select
from sppd.settings import RunConfig, load_run_config
from sppd.stages import pipeline
from sppd.stages.ablations import mean_value_gap

ONPOLICY = ["stage1-onpolicy/sample", "stage1-onpolicy/score", "stage1-onpolicy/build"]
STEP_DPO_RUNS = ["stage1/sppd", "stage1/ablate-fixed", "stage1/ablate-none", "stage1/gamma-2"]  # toy-tiny's gammas


def _plan(*overrides: str):
    pipe = pipeline.Pipeline(load_run_config("toy-tiny", ["model.path=/models/policy", *overrides]), dry_run=True)
    return pipe.run()["plan"], pipe


def test_start_plans_on_policy_trees_sampled_by_the_dpo_model_before_the_step_dpo_runs(tmp_path):
    calls, pipe = _plan(f"run_dir={tmp_path}", "pipeline.step_pairs_from=start")
    steps = [c.step for c in calls]
    by_step = {c.step: c for c in calls}
    first, dpo_eval, sppd = (steps.index(s) for s in ("stage1-onpolicy/sample", "eval/+DPO-PRM", "stage1/sppd/train"))
    assert steps[first : first + 3] == ONPOLICY and dpo_eval < first and first + 3 == sppd
    sample, stage1 = by_step["stage1-onpolicy/sample"], by_step["stage1/sample"]
    assert sample.cfg.model.path == str(tmp_path / "stage1" / "dpo")  # the +DPO-PRM model samples
    assert "sampled by +DPO-PRM" in sample.when
    # the Stage-1 seed: the same generated problems (the trees differ by their model)
    assert (sample.cfg.seed, sample.cfg.problems) == (stage1.cfg.seed, stage1.cfg.problems)
    onpolicy = tmp_path / layout.STAGE1_ONPOLICY
    assert sample.out == onpolicy / "trees"
    assert by_step["stage1-onpolicy/score"].cfg.score.trees == str(onpolicy / "trees")
    assert by_step["stage1-onpolicy/build"].cfg.build.trees == str(onpolicy / "scored")
    for run in STEP_DPO_RUNS:
        assert by_step[f"{run}/train"].cfg.train.data == str(onpolicy / "data" / "step_pairs"), run
        assert by_step[f"{run}/train"].cfg.train.init == str(tmp_path / "stage1" / "dpo"), run
    # the sentence-level sets and Stage 2 keep their own data
    assert by_step["stage1/dpo/train"].cfg.train.data == str(tmp_path / "stage1" / "data" / "dpo")
    assert by_step["stage2/sppd/train"].cfg.train.data == str(tmp_path / "stage2" / "data" / "step_pairs")
    assert any("stage1-onpolicy/" in note for note in pipe.notes)


def test_the_dry_run_shows_the_on_policy_stages_and_their_sampler(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["pipeline", "-c", "toy-tiny", "--dry-run", f"run_dir={run}", "pipeline.step_pairs_from=start"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    for step in ONPOLICY:
        assert f". {step}  [" in out, step
    assert f"in:  model={run}/stage1/dpo\n      out: {run}/stage1-onpolicy/trees" in out
    assert (
        f"planned: on-policy step pairs (pipeline.step_pairs_from=start): sampled by +DPO-PRM, {run}/stage1/dpo\n"
        in out
    )
    assert f"in:  data={run}/stage1-onpolicy/data/step_pairs, init={run}/stage1/dpo" in out
    assert not run.exists()


def test_without_the_sentence_level_warm_up_base_is_the_start_and_its_stage1_pairs_serve(tmp_path):
    calls, pipe = _plan(f"run_dir={tmp_path}", "pipeline.step_pairs_from=start", "pipeline.sentence_level=false")
    assert not [c.step for c in calls if c.step.startswith("stage1-onpolicy")]
    sppd = next(c for c in calls if c.step == "stage1/sppd/train")
    assert sppd.cfg.train.data == str(tmp_path / "stage1" / "data" / "step_pairs")
    assert any("Base is the step-DPO start model" in note for note in pipe.notes)


def _fingerprint(call) -> str:
    """The fingerprint digest the call's stage would record (input folders by path: none exist)."""
    from sppd.io import StageDir
    from sppd.stages import sample, train
    from sppd.train.objectives import get_objective

    if call.stage == "sample":
        return sample.fingerprint(call.cfg, call.cfg.model.path).digest
    t = call.cfg.train
    paths = train.TrainPaths(Path(t.data), Path(t.init), Path(t.ref), StageDir(t.out))
    return train.fingerprint(call.cfg, get_objective(t.objective), paths).digest


def test_the_default_plan_and_fingerprints_are_unchanged(tmp_path):
    # the dataclass default is base (the shipped toy configs choose start)
    from sppd.settings import PipelineConfig

    assert PipelineConfig().step_pairs_from == "base"
    default, pipe = _plan(f"run_dir={tmp_path}", "pipeline.step_pairs_from=base")
    assert not pipe.notes and not [c for c in default if c.step.startswith("stage1-onpolicy")]
    by_step = {c.step: c for c in default}
    for run in STEP_DPO_RUNS:
        assert by_step[f"{run}/train"].cfg.train.data == str(tmp_path / "stage1" / "data" / "step_pairs")
    # a value equal to its default is left out of every digest: no stage's fingerprint changes
    for call in default:
        assert "pipeline.step_pairs_from" not in select(RunConfig, to_dict(call.cfg), ["pipeline"]), call.step
    # ... and turning the option on later reuses every stage before the on-policy trees
    start = {c.step: c for c in _plan(f"run_dir={tmp_path}", "pipeline.step_pairs_from=start")[0]}
    for step in ("stage1/sample", "stage1/sft/train", "stage1/dpo/train"):
        assert _fingerprint(start[step]) == _fingerprint(by_step[step]), step
    assert _fingerprint(start["stage1/sppd/train"]) != _fingerprint(by_step["stage1/sppd/train"])


@pytest.fixture
def other_policy_dir(tmp_path, toy_tokenizer):
    """Another random tiny policy (seed 2): the DPO-PRM model's stand-in."""
    from sppd.toy.config import ToyModelConfig
    from sppd.toy.model import build_toy_model

    cfg = ToyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, seed=2)
    path = tmp_path / "dpo-stand-in"
    build_toy_model(cfg, toy_tokenizer).save_pretrained(path)
    toy_tokenizer.save_pretrained(path)
    return path


# The random tiny policy never answers right, so SFT and DPO have no data and would keep Base (whose
# Stage-1 pairs then serve); another random model stands in for the trained DPO-PRM model. The small
# settings whose steps end at spaces so that step pairs exist are test_accelerate_pipeline's, with
# the margin ablation on (its runs train on the on-policy pairs too) and eval left in one shard.
SMALL = [o for o in ACCELERATE_SMALL if not o.startswith(("eval.problems_per_shard=", "pipeline.margin_ablation="))]


@pytest.mark.slow
def test_toy_tiny_pipeline_trains_sppd_on_the_dpo_models_own_trees(
    tmp_path, tiny_policy_dir, other_policy_dir, monkeypatch
):
    real_train = pipeline.Pipeline.train

    def train(self, name, *args, **changes):
        return str(other_policy_dir) if name == "stage1/dpo" else real_train(self, name, *args, **changes)

    monkeypatch.setattr(pipeline.Pipeline, "train", train)
    run = tmp_path / "run"
    overrides = [f"run_dir={run}", f"model.path={tiny_policy_dir}", "pipeline.step_pairs_from=start", *SMALL]
    pipeline.main(load_run_config("toy-tiny", overrides))
    onpolicy = run / layout.STAGE1_ONPOLICY
    trees = json.loads((onpolicy / "trees" / "manifest.json").read_text())
    assert trees["inputs"]["model"] == str(other_policy_dir)  # the DPO-PRM model sampled them
    pairs = onpolicy / "data" / "step_pairs"
    pairs_fp = json.loads((pairs / "manifest.json").read_text())["fingerprint"]
    base_pairs = run / "stage1" / "data" / "step_pairs"
    assert pairs_fp != json.loads((base_pairs / "manifest.json").read_text())["fingerprint"]
    for model in ("stage1/sppd", "stage1/ablate-fixed", "stage1/ablate-none"):
        manifest = json.loads((run / model / "manifest.json").read_text())
        assert manifest["fingerprint_inputs"]["data"] == pairs_fp, model
        assert yaml.safe_load((run / model / "config.yaml").read_text())["train"]["data"] == str(pairs), model
    fixed = yaml.safe_load((run / "stage1/ablate-fixed/config.yaml").read_text())["train"]["fixed_margin"]
    gamma = load_run_config("toy-tiny").pipeline.step_dpo.gamma
    assert fixed == pytest.approx(round(gamma * mean_value_gap(pairs), 6))
    assert fixed != pytest.approx(round(gamma * mean_value_gap(base_pairs), 6))
