"""The report's diagnostics: did training move each model (log-prob drift, reward accuracy), and
what the step pairs hold (value gaps, two right steps, first-differing-character shortcuts).
Every expected number below is worked out by hand from the hand-made inputs."""

import json

import pytest

from sppd.io import StageDir
from sppd.records import StepPair
from sppd.report_diagnostics import (
    DRIFT_KEYS,
    first_difference,
    learned_prm_section,
    pair_diagnostics,
    preference_drift,
    step_pair_sets,
    step_pairs_section,
    task_step_checker,
    training_runs_section,
)
from sppd.report_rows import ReportRow, RowKind
from sppd.settings import load_run_config

Q = "2+3*4"
RIGHT, WRONG_13, WRONG_11 = "Step 1: 3*4=12, 2+12", "Step 1: 3*4=13, 2+13", "Step 1: 3*4=11, 2+11"


def _pair(i: int, chosen: str, rejected: str, values: tuple[float, float], prefix=()) -> StepPair:
    return StepPair(
        id=f"p{i}", problem_id=f"q{i}", prompt=Q, initial_reason_steps="".join(s + "\n" for s in prefix),
        prefix_steps=list(prefix), chosen=chosen, rejected=rejected, chosen_value=values[0], rejected_value=values[1],
    )  # fmt: skip


PAIRS = [
    _pair(0, RIGHT, WRONG_13, (1.0, 0.0)),  # gap 1; '2' vs '3': chosen smaller
    _pair(1, RIGHT, WRONG_11, (0.8, 0.3)),  # gap 0.5; '2' vs '1': chosen larger
    _pair(2, "Step 2: 2+12=14", "Step 2: 2+12=14, 14", (0.9, 0.6), [RIGHT]),  # both right; chosen ends first
    _pair(3, WRONG_13, "Step 1: 2+3=5, 5*4", (0.5, 0.25)),  # chosen wrong; '3' vs '2': chosen larger
    _pair(4, RIGHT, WRONG_13, (1.0, 0.0)),  # the kind '2' vs '3' a second time
]


def test_first_difference_follows_the_balance_tests_definition():
    assert first_difference("Step 1: 3*4=12", "Step 1: 3*4=13") == ("2", "3")
    assert first_difference("ab", "abc") == ("", "c") and first_difference("abc", "ab") == ("c", "")
    assert first_difference("same", "same") is None


def test_pair_diagnostics_by_hand():
    toy = task_step_checker(load_run_config("toy-tiny"))
    d = pair_diagnostics(PAIRS, toy)
    # gaps 1, 0.5, 0.3, 0.25, 1: mean 3.05 / 5 = 0.61; squared deviations sum to 0.542, / 4 -> sd 0.3681
    assert d["pairs"] == 5 and d["gap_mean"] == pytest.approx(0.61) and d["gap_sd"] == pytest.approx(0.36810, abs=1e-5)
    assert d["gap_one_share"] == pytest.approx(0.4)
    assert d["both_right_share"] == pytest.approx(0.2) and d["chosen_wrong_share"] == pytest.approx(0.2)
    assert d["chosen_smaller_share"] == pytest.approx(0.6)  # pairs 0, 2, 4
    assert d["top_kind"] == ("2", "3") and d["top_kind_share"] == pytest.approx(0.4)
    without = pair_diagnostics(PAIRS, None)  # a task with no step checker
    assert without["both_right_share"] is None and without["chosen_wrong_share"] is None
    same = pair_diagnostics([_pair(9, RIGHT, RIGHT, (1.0, 0.5)), PAIRS[1]], None)
    assert same["identical_text"] == 1 and same["chosen_smaller_share"] == 0.0 and same["top_kind_share"] == 1.0


def test_only_the_toy_task_has_a_step_checker_for_the_report():
    assert task_step_checker(load_run_config("toy-tiny")) is not None
    assert task_step_checker(load_run_config("toy-tiny", ["problems.source=gsm8k"])) is None


def _write_pairs(folder, pairs):
    StageDir(folder).write_shard("step_pairs", 0, [p.to_dict() for p in pairs])


def test_the_step_pairs_section_lists_every_stage_in_order(tmp_path):
    for stage, pairs in [("stage10", PAIRS[:1]), ("stage2", PAIRS[1:2]), ("stage1", PAIRS)]:
        _write_pairs(tmp_path / stage / "data" / "step_pairs", pairs)
    (tmp_path / "stage3" / "data" / "step_pairs").mkdir(parents=True)  # no records: not a set
    assert [s for s, _ in step_pair_sets(tmp_path)] == ["stage1", "stage2", "stage10"]
    # the on-policy pairs of pipeline.step_pairs_from=start follow their stage
    _write_pairs(tmp_path / "stage1-onpolicy" / "data" / "step_pairs", PAIRS[:1])
    assert [s for s, _ in step_pair_sets(tmp_path)] == ["stage1", "stage1-onpolicy", "stage2", "stage10"]
    toy = task_step_checker(load_run_config("toy-tiny"))
    lines = [x for x in step_pairs_section([tmp_path], toy) if x.startswith("| stage")]
    assert lines[0] == "| stage1 | 5 | 0.610 ± 0.368 | 40.0% | 20.0% | 20.0% | 60.0% | `2` vs `3`: 40.0% |"
    assert lines[3] == "| stage10 | 1 | 1.000 ± 0.000 | 100.0% | 0.0% | 0.0% | 100.0% | `2` vs `3`: 100.0% |"
    seeds = step_pairs_section([tmp_path, tmp_path / "none"], None)  # several seeds: labelled by folder
    assert any(
        x.startswith(f"| {tmp_path.name}/stage2 | 1 | 0.500 ± 0.000 | 0.0% | n/a | n/a | 0.0% |") for x in seeds
    )
    assert step_pairs_section([tmp_path / "none"]) == []


def _metrics(folder, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_preference_drift_is_an_example_weighted_mean_of_the_logged_steps(tmp_path):
    keys = ("examples", "logps/chosen_change", "logps/rejected_change", "rewards/accuracy")
    _metrics(tmp_path, [dict(zip(keys, (2, -0.1, -0.3, 1.0))), dict(zip(keys, (6, 0.1, -0.5, 0.5)))])
    # chosen (2·-0.1 + 6·0.1) / 8 = 0.05; rejected (2·-0.3 + 6·-0.5) / 8 = -0.45; accuracy (2 + 3) / 8 = 0.625
    assert preference_drift(tmp_path / "metrics.jsonl") == pytest.approx(dict(zip(DRIFT_KEYS, (0.05, -0.45, 0.625))))
    _metrics(tmp_path / "sft", [{"step": 1, "examples": 4, "loss": 1.0}])
    assert preference_drift(tmp_path / "sft" / "metrics.jsonl") == {}
    assert preference_drift(tmp_path / "missing.jsonl") == {}


def _trained(folder, objective, l2, drift=None, metrics=None):
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"objective": objective, "steps": 4, "final_loss": 0.5, "final_grad_norm": 2.0, "l2_from_start": l2}
    (folder / "train_summary.json").write_text(json.dumps({**summary, **(drift or {})}))
    if metrics:
        _metrics(folder, metrics)


def test_training_runs_show_the_drift_from_the_summary_or_the_metrics_log_and_means_over_seeds(tmp_path):
    K = RowKind
    seeds = []
    for k, (l2, chosen) in enumerate([(0.2, -0.01), (0.4, 0.03)]):
        root = tmp_path / f"seed-{k}"
        _trained(root / "sft", "sft", 1.0)
        _trained(root / "sppd", "step_dpo", l2, dict(zip(DRIFT_KEYS, (chosen, -0.2, 0.75))))
        seeds.append(
            [
                ReportRow("SFT-PRM", K.SFT, str(root / "sft"), "Base", 4),
                ReportRow("+SPPD", K.SPPD, str(root / "sppd"), "SFT-PRM", 4),
            ]
        )
    old = tmp_path / "seed-0" / "dpo"  # trained before the summary held the drift: read from its metrics log
    line = {"examples": 4, "logps/chosen_change": 0.5, "logps/rejected_change": -1.5, "rewards/accuracy": 0.875}
    _trained(old, "dpo", 0.1, metrics=[line])
    seeds[0].append(ReportRow("+DPO-PRM", K.DPO, str(old), "SFT-PRM", 4))
    one = {x.split(" | ")[0][2:]: x for x in training_runs_section(seeds[:1]) if x.startswith("| ")}
    assert one["SFT-PRM"].endswith("| 1 | — | — | — |")  # SFT: no reference, no rejected side
    assert one["+SPPD"].endswith("| 0.2 | -0.0100 | -0.2000 | 0.750 |")
    assert one["+DPO-PRM"].endswith("| 0.1 | +0.5000 | -1.5000 | 0.875 |")
    two = [x for x in training_runs_section(seeds) if x.startswith("| +SPPD")]
    assert two == ["| +SPPD | step_dpo | 4 | 0.5000 | 2 | 0.3 | +0.0100 | -0.2000 | 0.750 |"]  # means of 2 seeds
    assert "means over 2 seeds" in " ".join(training_runs_section(seeds))


def test_learned_prm_section_reads_each_seeds_held_out_agreement(tmp_path):
    agree = {"accuracy": 0.9296, "n": 781, "n_wrong": 557, "wrong_precision": 0.9514, "wrong_recall": 0.9497}
    for name, data in {
        "seed-0": {"head": "token", "metrics": {"seconds": 40.6, "val": {"checker_agreement": agree}}},
        "seed-1": {"metrics": {"seconds": 12, "val": {}}},  # no agreement measured: no line
    }.items():
        (tmp_path / name / "prm").mkdir(parents=True)
        (tmp_path / name / "prm" / "toy_prm.json").write_text(json.dumps(data))
    (tmp_path / "seed-2").mkdir()  # no PRM trained
    lines = learned_prm_section([tmp_path / f"seed-{i}" for i in range(3)])
    rows = [line for line in lines if line.startswith("| seed-")]
    assert rows == ["| seed-0 | token | 781 | 557 | 0.930 | 0.951 | 0.950 | 41 |"]
    assert learned_prm_section([tmp_path / "seed-1", tmp_path / "seed-2"]) == []
