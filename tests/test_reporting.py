"""report.md is laid out from typed rows (rows.json): a row's kind and start, never its label."""

import json

import pytest

from sppd.io import DataFileError, StageDir
from sppd.records import StepPair
from sppd.report_rows import ReportRow, RowKind, load_rows, save_rows
from sppd.reporting import write_report
from sppd.settings import load_run_config
from sppd.types import MarginMode

K = RowKind
# Every name below would have put its row in the wrong table had the report parsed labels.
ROWS = [
    (ReportRow("Pretrained", K.BASE, "m0", None, 3), 0.40),
    (ReportRow("warm-up", K.SFT, "m1", "Pretrained", 3), 0.50),
    (ReportRow("pref", K.DPO, "m2", "warm-up", 3), 0.55),
    (ReportRow("gamma/7", K.SPPD, "m3", "pref", 3), 0.60),
    (ReportRow("common start", K.ABLATION_START, "m2", "pref", 4), 0.52),
    (ReportRow("+SPPD-Stage9", K.ABLATION, "m3", "common start", 4, margin=MarginMode.DYNAMIC), 0.58),
    (ReportRow("Control: x", K.ABLATION, "m4", "common start", 4, margin=MarginMode.FIXED), 0.54),
    (ReportRow("Base", K.GAMMA, "m5", "common start", 4, gamma=0.5), 0.61),
    (ReportRow("ablation/no margin", K.CONTROL, "m6", "Pretrained", 3), 0.45),
]


def _section(report: str, title: str) -> str:
    """The text of the ``## title...`` section, up to the next section."""
    return report.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _table_rows(section: str) -> dict[str, str]:
    """Row name -> the table line, for the lines of a markdown table in ``section``."""
    return {line.split(" | ")[0][2:]: line for line in section.splitlines() if line.startswith("| ")}


def test_rows_reach_the_report_by_kind_and_start_not_by_label(tmp_path):
    cfg = load_run_config("toy-tiny", [f"run_dir={tmp_path}", "pipeline.ablation_eval_samples=4"])
    save_rows(tmp_path, [row for row, _ in ROWS])
    evals = {
        row.name: {cfg.eval.benchmarks[0]: {m: {"acc": a, "lo": a - 0.05, "hi": a + 0.05} for m in ("greedy", "maj")}}
        for row, a in ROWS
    }
    run = {"run_dir": str(tmp_path), "evals": evals, "timings": {}, "skipped": [], "val": {}, "notes": []}
    report = write_report(cfg, [run]).read_text()

    table1 = _table_rows(_section(report, "Table 1 analogue"))
    assert list(table1)[1:] == ["Pretrained", "warm-up", "pref", "gamma/7", "ablation/no margin"]
    assert table1["warm-up"].endswith("| +10.0 | +10.0 |") and table1["gamma/7"].endswith("| +5.0 | +5.0 |")
    assert table1["ablation/no margin"].endswith("| +5.0 | +5.0 |")  # a control: Δ against the base it continued
    assert "- SPPD step-DPO: gamma/7 improves on pref by +5.0 points greedy" in report
    assert (
        "- self-training vs the same compute of pretraining: gamma/7 improves on ablation/no margin by +15.0" in report
    )

    table4 = _section(report, "Table 4 analogue")
    assert list(_table_rows(table4))[1:] == ["+SPPD-Stage9", "Control: x"]
    assert _table_rows(table4)["+SPPD-Stage9"].endswith("| +6.0 | +6.0 |")  # against the common start
    assert "Δ is against pref, the common starting point" in table4 and "| MAJ@4 |" in table4
    assert "- dynamic vs fixed margin: +SPPD-Stage9 improves on Control: x by +4.0" in table4

    gammas = _table_rows(_section(report, "Figure 2 analogue"))
    assert list(gammas)[1:] == ["Base"] and gammas["Base"].endswith("| +9.0 | +9.0 |")


def test_rows_round_trip_and_a_bad_file_is_named(tmp_path):
    rows = [row for row, _ in ROWS]
    path = save_rows(tmp_path, rows)
    assert load_rows(tmp_path) == rows
    assert load_rows(tmp_path)[5].margin is MarginMode.DYNAMIC and load_rows(tmp_path)[0].kind is K.BASE
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "schema": 99}))
    with pytest.raises(DataFileError, match="rows.json: field 'schema' is 99"):
        load_rows(tmp_path)
    data["rows"][1]["kind"] = "stage-7"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFileError, match=r"rows.json: rows\[1\]: 'stage-7' is not a valid RowKind"):
        load_rows(tmp_path)


def test_the_training_runs_table_shows_each_trained_models_distance_from_its_start(tmp_path):
    cfg = load_run_config("toy-tiny", [f"run_dir={tmp_path}"])
    rows = []
    for i, (name, l2) in enumerate([("SFT-PRM", 0.25), ("gamma/0.5", 1.5), ("gamma/2", 1.5)]):
        folder = tmp_path / f"model-{i}"
        folder.mkdir()
        summary = {"objective": "sft", "steps": 3, "final_loss": 0.5, "final_grad_norm": 2.0, "l2_from_start": l2}
        (folder / "train_summary.json").write_text(json.dumps(summary))
        rows.append(
            ReportRow(name, K.SFT if i == 0 else K.GAMMA, str(folder), "Base", 3, gamma=None if i == 0 else 1.0)
        )
    rows.append(ReportRow("Base", K.BASE, str(tmp_path / "base"), None, 3))  # no summary: not trained here
    rows.append(ReportRow("again", K.ABLATION_START, str(tmp_path / "model-0"), "Base", 4))  # same model once
    save_rows(tmp_path, rows)
    run = {"run_dir": str(tmp_path), "evals": {}, "timings": {}, "skipped": [], "val": {}, "notes": []}
    table = _table_rows(_section(write_report(cfg, [run]).read_text(), "Training runs"))
    assert list(table)[1:] == ["SFT-PRM", "gamma/0.5", "gamma/2"]
    assert table["SFT-PRM"].endswith("| 3 | 0.5000 | 2 | 0.25 | — | — | — |")  # SFT: no rejected side
    assert table["gamma/2"].endswith("| 1.5 | — | — | — |")


def test_several_seeds_show_mean_sd_and_a_student_t_interval_and_the_report_has_the_new_sections(tmp_path):
    cfg = load_run_config("toy-tiny", [f"run_dir={tmp_path}", "pipeline.seeds=3"])
    bench = cfg.eval.benchmarks[0]
    rows = [ReportRow("Base", K.BASE, "m0", None, 3), ReportRow("SFT-PRM", K.SFT, "m1", "Base", 3)]
    rows.append(ReportRow("+DPO-PRM", K.DPO, "m2", "SFT-PRM", 3))
    runs = []
    for k, acc in enumerate([0.84, 0.86, 0.88]):
        seed_dir = tmp_path / f"seed-{k}"
        save_rows(seed_dir, rows)
        evals = {
            name: {bench: {"greedy": {"acc": a}}} for name, a in [("Base", 0.5), ("SFT-PRM", acc), ("+DPO-PRM", 0.85)]
        }
        note = [f"Stage 2 starts from SFT-PRM (seed {k})"]
        runs.append({"run_dir": str(seed_dir), "evals": evals, "timings": {}, "skipped": [], "val": {}, "notes": note})
    pair = StepPair("p", "q", "2+3", "", [], "Step 1: 2+3=5", "Step 1: 2+3=6", 1.0, 0.0)
    StageDir(tmp_path / "seed-1" / "stage1" / "data" / "step_pairs").write_shard("step_pairs", 0, [pair.to_dict()])
    report = write_report(cfg, runs).read_text()
    assert "- seed-2: Stage 2 starts from SFT-PRM (seed 2)" in _section(report, "Choices the pipeline made")
    # the toy task's step checker: the chosen step is right, the rejected wrong; '5' < '6'
    assert "| seed-1/stage1 | 1 | 1.000 ± 0.000 | 100.0% | 0.0% | 0.0% | 100.0% |" in _section(report, "Step pairs")
    table1 = _table_rows(_section(report, "Table 1 analogue"))
    # 86 ± 2, t_{0.975,2} = 4.303: 86 ± 4.97 -> [81.0, 91.0]; Δ against the base's mean 50
    assert table1["SFT-PRM"].startswith("| SFT-PRM | 86.0 ± 2.0 [81.0, 91.0] |")
    assert table1["SFT-PRM"].endswith("| +36.0 |  |") and table1["Base"].startswith(
        "| Base | 50.0 ± 0.0 [50.0, 50.0] |"
    )
    acceptance = _section(report, "Acceptance")
    # 86 vs 85 on the means; 84 < 85 in the first seed only; no MAJ numbers
    assert (
        "| SFT-PRM < +DPO-PRM | **does not hold** (86.00 vs 85.00, means; in 1 of 3 seeds) | not evaluated |"
        in acceptance
    )
    assert "| +DPO-PRM < +SPPD | not run | not run |" in acceptance
