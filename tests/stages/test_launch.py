"""The pipeline's stage calls: one run layout, launchers, resolved configs, ``--dry-run``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sppd
from sppd import cli, layout
from sppd.config import ConfigError, dump_yaml
from sppd.settings import load_run_config
from sppd.stages import launch, pipeline
from sppd.types import Launcher, Objective

SRC = Path(sppd.__file__).resolve().parent.parent


def _plan(*overrides: str, config: str = "toy-tiny") -> list[launch.StageCall]:
    cfg = load_run_config(config, list(overrides))
    return pipeline.Pipeline(cfg, dry_run=True).run()["plan"]


def test_layout_keeps_the_folder_names(tmp_path):
    """Existing run folders must keep being found: the names are pinned here."""
    run = layout.RunLayout(tmp_path)
    assert run.stage_trees("stage1") == tmp_path / "stage1" / "trees"
    assert run.stage_scored("stage2") == tmp_path / "stage2" / "scored"
    assert run.stage_data("stage1") / "step_pairs" == tmp_path / "stage1" / "data" / "step_pairs"
    assert run.model("stage1/gamma-0.5") == tmp_path / "stage1" / "gamma-0.5"
    assert run.eval_row("ablation/no margin") == tmp_path / "eval" / "ablation_no_margin"
    assert run.val_row("+DPO-PRM") == tmp_path / "eval-val" / "+DPO-PRM"
    assert (run.prm(), run.prm_report(), run.timings()) == (
        tmp_path / "prm",
        tmp_path / "prm_report",
        tmp_path / "timings.json",
    )
    assert run.launch("eval/Control: base + continued") == tmp_path / "launch" / "eval_Control_base_+_continued.yaml"
    cfg = load_run_config("toy-tiny", [f"run_dir={tmp_path}", "train.objective=step_dpo"])
    assert layout.sample_out(cfg) == tmp_path / "trees" and layout.score_out(cfg) == tmp_path / "scored"
    assert layout.train_data(cfg) == tmp_path / "data" / "step_pairs"
    assert layout.train_out(cfg) == tmp_path / "train-step_dpo" and layout.eval_out(cfg) == tmp_path / "eval"
    cfg.sample.out = str(tmp_path / "elsewhere")
    assert layout.sample_out(cfg) == tmp_path / "elsewhere"


def test_layout_data_sets_match_the_objectives():
    from sppd.train.objectives import get_objective

    assert {o: get_objective(o).data_subdir for o in Objective} == layout.DATA_SETS


def test_commands_match_the_command_line():
    for stage, (words, module) in launch.COMMANDS.items():
        table = cli.GROUPS[words[0]][1] if words[0] in cli.GROUPS else cli.STAGES
        assert table[words[-1]][0] == module, stage


def test_every_call_reruns_from_its_resolved_yaml_alone(tmp_path):
    """The YAML a launched stage gets carries every folder and model the pipeline passes."""
    calls = _plan(f"run_dir={tmp_path}", "model.path=/models/policy")
    assert {c.stage for c in calls} == set(launch.COMMANDS)
    for call in calls:
        path = tmp_path / "resolved.yaml"
        path.write_text(dump_yaml(call.cfg))
        again = load_run_config(str(path))
        assert again == call.cfg, call.step
        assert layout.stage_folders(call.stage, again) == layout.stage_folders(call.stage, call.cfg)
    by_step = {c.step: c for c in calls}
    assert by_step["stage1/sample"].cfg.model.path == "/models/policy"
    assert by_step["stage1/sample"].out == tmp_path / "stage1" / "trees"
    assert by_step["stage1/score"].cfg.score.trees == str(tmp_path / "stage1" / "trees")
    assert by_step["stage1/build"].out == tmp_path / "stage1" / "data"
    # toy trains step-DPO on on-policy pairs (pipeline.step_pairs_from: start)
    assert by_step["stage1/sppd/train"].cfg.train.data == str(tmp_path / "stage1-onpolicy" / "data" / "step_pairs")
    assert by_step["stage1-onpolicy/sample"].cfg.model.path == by_step["stage1/dpo/train"].cfg.train.out
    assert by_step["eval/+SPPD"].cfg.eval.model == str(tmp_path / "stage1" / "sppd")
    assert by_step["eval/+SPPD"].out == tmp_path / "eval" / "+SPPD"
    assert by_step["stage1/prm_report"].out == tmp_path / "prm_report"
    assert not tmp_path.joinpath("stage1").exists()  # a dry run writes nothing


def test_launcher_rules():
    def where(stage, *overrides):
        return launch.launcher_for(stage, load_run_config("toy-tiny", list(overrides)))

    assert {where(s) for s in launch.COMMANDS} == {Launcher.INPROCESS}  # the toy default
    acc = ["pipeline.launcher=accelerate"]
    assert where("train", *acc) == where("sample", *acc) == where("score", *acc) == Launcher.ACCELERATE
    assert where("build", *acc) == where("prm_report", *acc) == Launcher.PYTHON  # nothing to share out
    assert where("sample", *acc, "sample.engine=vllm") == Launcher.PYTHON  # vLLM places its own weights
    assert where("eval", *acc, "sample.engine=vllm") == Launcher.PYTHON
    assert where("score", *acc, "sample.engine=vllm", "score.mc_rollouts=0") == Launcher.ACCELERATE
    assert where("score", *acc, "sample.engine=vllm", "score.mc_rollouts=2") == Launcher.PYTHON
    assert where("eval", *acc, "pipeline.launch.eval.launcher=python") == Launcher.PYTHON
    assert where("eval", "pipeline.launch.eval.launcher=accelerate") == Launcher.ACCELERATE
    with pytest.raises(ConfigError, match="pipeline.launch: unknown stage"):
        load_run_config("toy-tiny", ["pipeline.launch.smaple.launcher=python"])
    with pytest.raises(ConfigError, match="pipeline.launcher"):
        load_run_config("toy-tiny", ["pipeline.launcher=torchrun"])


def test_accelerate_command_per_stage(tmp_path):
    calls = _plan(
        f"run_dir={tmp_path}",
        "pipeline.launcher=accelerate",
        "pipeline.accelerate_config=ddp",
        "pipeline.num_processes=4",
        "pipeline.launch.train.accelerate_config=zero2",
        "pipeline.launch.eval.num_processes=1",
    )
    by_step = {c.step: launch.command(c) for c in calls}
    train = by_step["stage1/sppd/train"]
    assert train[1:4] == ["launch", "--config_file", launch.resolve_accelerate_config("zero2")]
    assert train[4:] == [
        "--num_processes",
        "4",
        "-m",
        "sppd",
        "train",
        "-c",
        str(tmp_path / "launch" / "stage1_sppd_train.yaml"),
    ]
    assert by_step["eval/Base"][2:6] == [
        "--config_file",
        launch.resolve_accelerate_config("ddp"),
        "--num_processes",
        "1",
    ]
    assert by_step["stage1/build"] == [
        sys.executable,
        "-m",
        "sppd",
        "build",
        "-c",
        str(tmp_path / "launch" / "stage1_build.yaml"),
    ]
    assert by_step["stage1/prm_train"][-5:-2] == ["sppd", "prm", "train"]
    with pytest.raises(ConfigError, match="pipeline.accelerate_config"):
        launch.resolve_accelerate_config("zero9")


def test_a_free_port_unless_the_config_names_one(tmp_path):
    argv = ["accelerate", "launch", "--config_file", "x.yaml", "-m", "sppd", "train"]
    cpu2 = launch.resolve_accelerate_config("cpu2")
    with_port = launch._with_free_port(argv, cpu2)
    assert with_port[:3] == ["accelerate", "launch", "--main_process_port"] and int(with_port[3]) > 0
    named = tmp_path / "named.yaml"
    named.write_text("num_machines: 1\nmain_process_port: 29600\n")
    assert launch._with_free_port(argv, str(named)) == argv


def test_a_real_recipe_loads_and_asks_for_the_model_only_when_needed(capsys, monkeypatch):
    from sppd.stages import common

    assert cli.main(["show-config", "-c", "qwen2.5-7b-base"]) == 0
    assert "  path: null" in capsys.readouterr().out
    cfg = load_run_config("qwen2.5-7b-base")
    with pytest.raises(ConfigError, match="model.path"):
        common.policy_path(cfg)  # what sample, eval and train call first
    with pytest.raises(ConfigError, match="'model.path'.*score.prm_path"):
        pipeline.check_launch(cfg)  # the pipeline stops before any work
    cfg = load_run_config("qwen2.5-7b-base", ["model.path=/m", "score.prm_path=/p"])
    pipeline.check_launch(cfg)
    monkeypatch.setenv("WORLD_SIZE", "2")  # `accelerate launch -m sppd pipeline`: each rank would launch stages
    with pytest.raises(ConfigError, match="not under accelerate launch"):
        pipeline.check_launch(cfg)


def test_dry_run_of_a_real_recipe_prints_accelerate_commands_and_train_splits(capsys):
    assert cli.main(["pipeline", "-c", "qwen2.5-7b-base", "--dry-run", "model.path=/some/folder"]) == 0
    out = capsys.readouterr().out
    zero2, ddp = launch.resolve_accelerate_config("zero2"), launch.resolve_accelerate_config("ddp")
    assert f"accelerate launch --config_file {zero2} -m sppd train -c " in out
    assert f"accelerate launch --config_file {ddp} -m sppd sample -c " in out
    assert (
        "problems: mix/train: 10000 of 10000 problems = 4000 from gsm8k/train (of 7473) + 6000 from math/train" in out
    )
    assert "problems: math500/test: 500 of 500 problems" in out
    assert "unset, required before a real run: score.prm_path" in out
    assert "stage2/sample" in out and "planned: stage2 resamples with" in out
    cli.main(["pipeline", "-c", "qwen2.5-7b-base", "--dry-run", "model.path=/m", "sample.engine=vllm"])
    sample = next(line for line in capsys.readouterr().out.splitlines() if "sppd sample -c" in line)
    assert "accelerate" not in sample  # vLLM: one plain process


def test_dry_run_plans_the_toy_run_without_torch(tmp_path):
    run = tmp_path / "run"
    code = (
        "import sys\n"
        "from sppd import cli\n"
        f"assert cli.main(['pipeline', '-c', 'toy-tiny', '--dry-run', 'run_dir={run}']) == 0\n"
        "print(sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "[]"
    text = "\n".join(lines)
    for step in ("stage1/sample", "stage1/score", "stage1/build", "stage1/sppd/train", "eval/Base", "stage2/sample"):
        assert f". {step}  [" in text, step
    assert f"out: {run}/stage1/trees" in text and f"out: {run}/eval/Base" in text
    assert f"$ {sys.executable} -m sppd sample -c {run}/launch/stage1_sample.yaml" in text
    assert "problems: toy/train: 6 problems, generated" in text
    assert not run.exists()


@pytest.mark.slow
def test_a_failed_stage_names_the_step_and_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(SRC))
    cfg = load_run_config("toy-tiny", [f"run_dir={tmp_path}", "pipeline.launcher=python"])
    call = launch.StageCall("stage1/build", "build", cfg)
    with pytest.raises(launch.StageFailed) as info:
        launch.run(call)
    log = tmp_path / "launch" / "stage1_build.log"
    assert str(info.value) == f"stage stage1/build (build) failed with exit 2; log: {log}"
    assert "config key 'build.trees'" in log.read_text()  # the stage's own one-line error
    assert (tmp_path / "launch" / "stage1_build.yaml").exists()
