"""The pipeline end to end on toy-tiny (tiny random policy), its resume, and the report's verdicts."""

from pathlib import Path

import pytest

from sppd.report_rows import RowKind, load_rows
from sppd.reporting import table, verdict
from sppd.settings import load_run_config
from sppd.stages import pipeline


def _cfg(run_dir, model_dir, *extra):
    return load_run_config(
        "toy-tiny",
        [
            f"run_dir={run_dir}",
            f"model.path={model_dir}",
            "problems.n=4",
            "eval.n_problems=4",
            "eval.n_samples=2",
            "pipeline.gammas=[0.5]",
            "prm.synthetic_solutions=8",
            "sample.K=3",
            "pipeline.val_benchmark=toy-val",
            "pipeline.val_problems=5",
            *extra,
        ],
    )


@pytest.mark.slow
def test_pipeline_runs_resumes_and_reports(tmp_path, tiny_policy_dir):
    run = tmp_path / "run"
    first = pipeline.main(_cfg(run, tiny_policy_dir))
    report = Path(first["report"]).read_text()
    assert "## Table 1 analogue — toy" in report and "## Table 4 analogue" in report
    assert "| Base |" in report and "Wall time per step" in report
    # every ablation row (and the start it is compared with) at one N: pipeline.ablation_eval_samples=4
    assert (
        "evaluated with N=4." in report
        and "| Δ Greedy | Δ MAJ@4 |" in report
        and "| ablation/dynamic margin |" in report
    )
    # Stage 2 starts from the Stage-1 model with the best validation accuracy, and the report says so
    val = first["runs"][0]["val"]
    assert set(val) == {"Base", "SFT-PRM", "+DPO-PRM", "+SPPD"} and all(0 <= a <= 1 for a in val.values())
    best = max(val.values())
    chosen = next(r for r in ["Base", "SFT-PRM", "+DPO-PRM", "+SPPD"] if val[r] == best)
    assert f"Stage 2 starts from {chosen} " in report and "## Model selection on the validation set (toy-val" in report
    s2 = (run / "stage2" / "trees" / "manifest.json").read_text()
    rows = {r.name: r for r in load_rows(run)}  # rows.json: what each evaluated row is, typed
    assert rows[chosen].model in s2 and rows["+SPPD-Stage2"].start == chosen
    assert rows["+SPPD-Stage2"].kind is RowKind.STAGE and rows["gamma/0.5"].gamma == 0.5
    assert rows["ablation/start"].n == 4 and rows["ablation/start"].start == "+DPO-PRM"
    for folder in ["stage1/trees", "stage1/scored", "stage1/data/sft", "prm", "eval/Base", "stage2/trees"]:
        assert (run / folder / "manifest.json").exists(), folder
    # a rerun finds every stage complete: same numbers, nothing recomputed
    shards = {p: p.stat().st_mtime_ns for p in run.rglob("records-*.jsonl")}
    second = pipeline.main(_cfg(run, tiny_policy_dir))
    assert {p: p.stat().st_mtime_ns for p in run.rglob("records-*.jsonl")} == shards
    assert second["runs"][0]["evals"]["Base"] == first["runs"][0]["evals"]["Base"]


def _run(rows):
    evals = {
        name: {
            "toy": {
                "greedy": {"acc": a, "lo": a - 0.05, "hi": a + 0.05},
                "maj": {"acc": a, "lo": a - 0.05, "hi": a + 0.05},
            }
        }
        for name, a in rows.items()
    }
    return {"evals": evals}


def test_verdicts_say_when_a_stage_does_not_help():
    runs = [_run({"+DPO-PRM": 0.70, "+SPPD": 0.68, "Base": 0.50})]
    assert "does NOT improve on" in verdict(runs, "+SPPD", "+DPO-PRM", "toy", "SPPD")
    assert "within noise" in verdict(runs, "+SPPD", "+DPO-PRM", "toy", "SPPD")
    text = verdict(runs, "+DPO-PRM", "Base", "toy", "DPO")
    assert "improves on" in text and "+20.0" in text and "within noise" not in text
    md = table(runs, [("Base", None), ("+DPO-PRM", "Base")], "toy", 8)
    assert "| +DPO-PRM | 70.0 [65.0, 75.0] | 70.0 [65.0, 75.0] | - | - | +20.0 | +20.0 |" in md


def test_seed_runs_show_mean_and_std():
    runs = [_run({"Base": 0.5}), _run({"Base": 0.6})]
    md = table(runs, [("Base", None)], "toy", 8)
    assert "55.0 ± 7.1" in md


def test_stage2_start_is_the_best_on_validation_ties_to_the_earlier(tmp_path, monkeypatch):
    """Selection logic only: the validation accuracies are given (validate is replaced)."""
    from sppd.config import ConfigError
    from sppd.types import Stage2Init

    pl = pipeline.Pipeline(load_run_config("toy-tiny", [f"run_dir={tmp_path}", "pipeline.val_benchmark=toy-val"]))
    accs = {"Base": 0.5, "SFT-PRM": 0.8, "+DPO-PRM": 0.8, "+SPPD": 0.7}
    monkeypatch.setattr(pl, "validate", lambda row, model: accs[row])
    chain = [(row, f"model-{row}") for row in accs]
    assert pl.stage2_start(chain) == "model-SFT-PRM" and pl.stage2_from == "SFT-PRM"
    assert pl.notes[-1].startswith("Stage 2 starts from SFT-PRM (best greedy accuracy on toy-val: 80.0%")
    pl.cfg.pipeline.stage2_init = Stage2Init.SPPD  # the Stage-1 SPPD model
    assert pl.stage2_start(chain) == "model-+SPPD" and pl.stage2_from == "+SPPD"
    with pytest.raises(ConfigError, match="pipeline.stage2_init"):
        load_run_config("toy-tiny", ["pipeline.stage2_init=latest"])
