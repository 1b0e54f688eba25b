"""The Acceptance section: each claimed ordering on Greedy and MAJ@N holds or not, from typed rows
(names that would mislead a label parser), on one seed and on the means of several."""

from sppd.report_acceptance import acceptance_section, claims, judge
from sppd.report_rows import ReportRow, RowKind
from sppd.types import MarginMode

K = RowKind
ROWS = [
    ReportRow("base", K.BASE, "m0", None, 8),
    ReportRow("warm", K.SFT, "m1", "base", 8),
    ReportRow("pref", K.DPO, "m2", "warm", 8),
    ReportRow("step", K.SPPD, "m3", "pref", 8),
    ReportRow("again", K.STAGE, "m4", "warm", 8),
    ReportRow("a-dyn", K.ABLATION, "m3", "pref", 4, margin=MarginMode.DYNAMIC),
    ReportRow("a-fix", K.ABLATION, "m5", "pref", 4, margin=MarginMode.FIXED),
    ReportRow("a-none", K.ABLATION, "m6", "pref", 4, margin=MarginMode.NONE),
    ReportRow("more pretraining", K.CONTROL, "m7", "base", 8),
]
# greedy, maj per row (fractions)
ACC = {
    "base": (0.50, 0.55),
    "warm": (0.80, 0.82),
    "pref": (0.82, 0.81),  # greedy up, MAJ down against warm
    "step": (0.84, 0.83),
    "again": (0.84, 0.85),  # equal greedy: <= holds
    "a-dyn": (0.84, 0.80),
    "a-fix": (0.85, 0.79),  # fixed above dynamic on greedy
    "a-none": (0.83, 0.79),
    "more pretraining": (0.52, 0.53),
}


def _run(acc: dict, bench: str = "toy") -> dict:
    return {"evals": {name: {bench: {"greedy": {"acc": g}, "maj": {"acc": m}}} for name, (g, m) in acc.items()}}


def _cells(section: list[str]) -> dict[str, list[str]]:
    """claim -> [Greedy cell, MAJ cell]."""
    out = {}
    for line in section:
        if line.startswith("| ") and not line.startswith("| claim"):
            parts = line.strip("| ").split(" | ")
            out[parts[0]] = parts[1:]
    return out


def test_claims_come_from_the_row_kinds():
    labels = [c.label() for c in claims(ROWS)]
    assert labels == [
        "warm < pref",
        "pref < step",
        "step <= again",
        "a-dyn >= a-fix",
        "a-fix >= a-none",
        "pref > more pretraining",
        "step > more pretraining",
        "again > more pretraining",
        "a-dyn > more pretraining",
        "a-fix > more pretraining",
        "a-none > more pretraining",
    ]


def test_one_seed_states_each_claim_with_its_numbers():
    cells = _cells(acceptance_section([_run(ACC)], ROWS, "toy"))
    assert cells["warm < pref"] == ["holds (80.00 < 82.00)", "**does not hold** (82.00 vs 81.00)"]
    assert cells["step <= again"] == ["holds (84.00 <= 84.00)", "holds (83.00 <= 85.00)"]
    assert cells["a-dyn >= a-fix"] == ["**does not hold** (84.00 vs 85.00)", "holds (80.00 >= 79.00)"]
    assert cells["a-fix >= a-none"][1] == "holds (79.00 >= 79.00)"
    # MAJ@4 of an ablation row is not set against MAJ@8 of the control
    assert cells["a-none > more pretraining"] == ["holds (83.00 > 52.00)", "not comparable (N=4 vs N=8)"]
    section = acceptance_section([_run(ACC)], ROWS, "toy")
    # greedy: all but a-dyn >= a-fix (10 of 11); MAJ: 8 comparable, warm < pref fails (7 of 8)
    assert "Claims judged: Greedy: 10 of 11 hold; MAJ@N: 7 of 8 hold." in section


def test_several_seeds_judge_the_means_and_count_the_seeds():
    # pref < step: seeds 0.82<0.84, 0.86>0.84, 0.80<0.83 -> means 82.67 < 83.67, holds in 2 of 3 seeds
    seeds = [dict(ACC), {**ACC, "pref": (0.86, 0.81)}, {**ACC, "pref": (0.80, 0.81), "step": (0.83, 0.83)}]
    claim = claims(ROWS)[1]
    assert judge([_run(s) for s in seeds], claim, "toy", "greedy") == (
        True,
        "holds (82.67 < 83.67, means; in 2 of 3 seeds)",
    )
    # warm < pref on MAJ: 82 vs 81 in every seed
    assert judge([_run(s) for s in seeds], claims(ROWS)[0], "toy", "maj") == (
        False,
        "**does not hold** (82.00 vs 81.00, means; in 0 of 3 seeds)",
    )
    assert "over 3 seeds (on the means)" in " ".join(acceptance_section([_run(s) for s in seeds], ROWS, "toy"))


def test_a_missing_row_or_benchmark_is_said_not_judged():
    rows = [r for r in ROWS if r.kind not in (K.STAGE, K.ABLATION)]
    cells = _cells(acceptance_section([_run(ACC)], rows, "toy"))
    assert cells["step <= +SPPD-Stage2"] == ["not run", "not run"]
    assert cells["ablation dynamic >= ablation fixed"] == ["not run", "not run"]
    assert judge([_run(ACC, "other")], claims(rows)[0], "toy", "greedy") == (None, "not evaluated")
    assert acceptance_section([_run(ACC)], [ROWS[0]], "toy") == []  # nothing to judge: no section
