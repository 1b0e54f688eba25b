"""The pipeline with ``pipeline.launcher=accelerate`` on CPU (2 processes, gloo; the shipped cpu2.yaml):
sample, score, train and eval each run under ``accelerate launch``, and the report is the in-process
run's, timings aside."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import sppd
from sppd.settings import load_run_config
from sppd.stages import pipeline

pytestmark = pytest.mark.slow  # every stage starts its own processes

SRC = Path(sppd.__file__).resolve().parent.parent
# Small, and a step-DPO set that is never empty: the random tiny policy never answers right (no SFT or
# DPO data), but its steps end at spaces and the toy PRM values siblings apart, so step pairs exist.
SMALL = [
    "problems.n=4",
    "sample.K=3",
    "sample.max_depth=3",
    "sample.max_step_tokens=300",
    "sample.max_total_tokens=600",
    "step.delimiter=custom",
    "step.custom=' '",
    "score.scorer=toy",
    "build.step_gap=0.0",
    "prm.synthetic_solutions=8",
    "eval.n_problems=4",
    "eval.problems_per_shard=2",  # two shards: one per process of an accelerate launch
    "eval.n_samples=2",
    "pipeline.stages=1",
    "pipeline.margin_ablation=false",
    "pipeline.gammas=[]",
    "pipeline.control=false",
    "pipeline.val_benchmark=",
    "model.device=cpu",
]


def _report(run: Path) -> str:
    """report.md without its run folder and its wall times."""
    text = (run / "report.md").read_text().replace(str(run), "RUN")
    return re.sub(r"## Wall time per step.*", "", text, flags=re.S)


def test_accelerate_launcher_gives_the_in_process_report(tmp_path, tiny_policy_dir, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(SRC))  # the launched `python -m sppd` finds this checkout
    common = [f"model.path={tiny_policy_dir}", *SMALL]
    inproc = tmp_path / "inprocess"
    pipeline.main(load_run_config("toy-tiny", [f"run_dir={inproc}", "pipeline.step_dpo.batch_size=4", *common]))

    run = tmp_path / "accelerate"
    cfg = load_run_config(
        "toy-tiny",
        [
            f"run_dir={run}",
            "pipeline.step_dpo.batch_size=2",  # x 2 processes: the in-process run's global batch
            "pipeline.launcher=accelerate",
            "pipeline.accelerate_config=cpu2",
            *common,
        ],
    )
    pipeline.main(cfg)

    launched = {p.stem: p.read_text() for p in (run / "launch").glob("*.log")}
    for step in ("stage1_sample", "stage1_score", "stage1_sppd_train", "eval_Base", "eval_+SPPD"):
        assert launched[step].startswith("$ ") and " launch --main_process_port " in launched[step].splitlines()[0]
    # eval splits its shards by rank: both processes of the launch wrote some of eval/Base
    ranks = {
        json.loads(line)["rank"] for shard in (run / "eval" / "Base").glob("records-*.jsonl") for line in shard.open()
    }
    assert ranks == {0, 1}
    assert launched["stage1_build"].startswith(f"$ {sys.executable} -m sppd build -c ")
    trained = (run / "stage1" / "sppd" / "train_summary.json").read_text()
    assert '"processes": 2' in trained and '"global_batch": 4' in trained
    assert _report(run) == _report(inproc)
