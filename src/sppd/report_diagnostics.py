"""Diagnostics for ``report.md``: did training move each model, and could the step pairs teach anything?

* :func:`preference_drift`: over a preference run's ``metrics.jsonl``, the mean change of the chosen
  and of the rejected log-probs against the reference (the start model) and the reward accuracy
  (a tie counts half). The train stage writes it into ``train_summary.json``; the report reads it
  from there, or from ``metrics.jsonl`` for runs trained before it was written.
* :func:`training_runs_section`: one line per trained model (loss, gradient norm, L2 distance from
  the start model and the drift above; with several seeds, means over the seeds).
* :func:`step_pairs_section`: per step-pair set of each stage, what the pairs hold: how many, the
  value gap V(s_w)-V(s_l), how many compare two right steps (tasks with a step checker), and
  whether the first character where chosen and rejected differ gives the chosen step away.
* :func:`learned_prm_section`: how well the PRM the run trained (the ORM methods' scorer) agrees
  with the task's step checker on held-out problems, per seed, from its ``toy_prm.json``.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from sppd.io import StageDir
from sppd.layout import DATA_SETS, RunLayout
from sppd.records import StepPair
from sppd.report_rows import ReportRow
from sppd.types import Objective

METRICS = "metrics.jsonl"  # the train loop's per-step log (sppd.train.loop.METRICS)
SUMMARY = "train_summary.json"
# train_summary.json keys of preference_drift (absent for SFT: no reference, no rejected side)
DRIFT_KEYS = ("logps_chosen_change_mean", "logps_rejected_change_mean", "reward_accuracy_mean")
_DRIFT_SOURCES = ("logps/chosen_change", "logps/rejected_change", "rewards/accuracy")
NOT_APPLICABLE = "—"


def preference_drift(metrics_path: Path) -> dict[str, float]:
    """``DRIFT_KEYS`` -> example-weighted means over the logged steps of ``metrics_path``; {} when it
    has no preference lines (SFT) or does not exist. With ``train.log_every`` > 1 the logged steps
    are a sample of the run's steps."""
    path = Path(metrics_path)
    if not path.exists():
        return {}
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    lines = [m for m in lines if all(k in m for k in _DRIFT_SOURCES)]
    total = sum(m.get("examples", 1) for m in lines)
    if not lines or total <= 0:
        return {}
    return {
        key: sum(m[source] * m.get("examples", 1) for m in lines) / total
        for key, source in zip(DRIFT_KEYS, _DRIFT_SOURCES)
    }


def _summary(folder: Path) -> dict | None:
    """A trained model's ``train_summary.json`` with the drift keys filled from its metrics if missing."""
    path = Path(folder) / SUMMARY
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if summary.get("objective") != Objective.SFT and not all(k in summary for k in DRIFT_KEYS):
        summary.update(preference_drift(Path(folder) / METRICS))
    return summary


def _mean_cell(summaries: list[dict], key: str, spec: str) -> str:
    values = [s[key] for s in summaries if s.get(key) is not None]
    return format(statistics.mean(values), spec) if values else "-"


def training_runs_section(seed_rows: Sequence[list[ReportRow]]) -> list[str]:
    """One line per trained model of the first seed's rows (each model once), from the
    ``train_summary.json`` of the same-named row in every seed. Equal distances from the same start
    are a sign that variants (margins, gammas) trained the same model; a chosen log-prob change
    below 0 means step-DPO made even the preferred steps less likely."""
    by_seed = [{r.name: r for r in rows} for rows in seed_rows]
    lines, seen = [], set()
    for row in seed_rows[0] if seed_rows else []:
        if row.model in seen:
            continue
        seen.add(row.model)
        summaries = [s for rows in by_seed if row.name in rows and (s := _summary(Path(rows[row.name].model)))]
        if not summaries:
            continue
        first = summaries[0]
        cells = [_mean_cell(summaries, "final_loss", ".4f"), _mean_cell(summaries, "final_grad_norm", ".3g")]
        cells.append(_mean_cell(summaries, "l2_from_start", ".4g"))
        if first.get("objective") == Objective.SFT:
            cells += [NOT_APPLICABLE] * len(DRIFT_KEYS)
        else:
            specs = ("+.4f", "+.4f", ".3f")
            cells += [_mean_cell(summaries, key, spec) for key, spec in zip(DRIFT_KEYS, specs)]
        lines.append(
            f"| {row.name} | {first.get('objective', '-')} | {first.get('steps', '-')} | {' | '.join(cells)} |"
        )
    if not lines:
        return []
    seeds = f" Numbers are means over {len(seed_rows)} seeds." if len(seed_rows) > 1 else ""
    head = (
        "| model | objective | steps | final loss | final grad norm (before clipping) | L2 from start "
        "| Δ log p chosen | Δ log p rejected | reward accuracy |"
    )
    return [
        "## Training runs",
        "",
        "Δ log p: the mean change of the chosen / rejected step's summed log-prob against the start "
        "model (the reference), over the training steps; reward accuracy: the share of pairs whose chosen "
        f"reward is higher (a tie counts half). SFT has no rejected side ({NOT_APPLICABLE}).{seeds}",
        "",
        head,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *lines,
        "",
    ]


# -- step pairs ---------------------------------------------------------------------------------------


def step_pair_sets(run_dir: Path) -> list[tuple[str, Path]]:
    """``(stage, folder)`` of every stage's step-pair set with records, in stage order (a stage's
    variant such as ``stage1-onpolicy``, from ``pipeline.step_pairs_from: start``, after it)."""
    root = Path(run_dir)
    if not root.is_dir():
        return []
    found = [(p.name, re.fullmatch(r"stage(\d+)(-[a-z]+)?", p.name)) for p in root.iterdir()]
    stages = [name for name, m in sorted((x for x in found if x[1]), key=lambda x: (int(x[1][1]), x[1][2] or ""))]
    layout = RunLayout(root)
    sets = [(s, layout.stage_data(s) / DATA_SETS[Objective.STEP_DPO]) for s in stages]
    return [(s, folder) for s, folder in sets if StageDir(folder).shards()]


def read_step_pairs(folder: Path) -> list[StepPair]:
    return [StepPair.from_dict(obj, where) for where, obj in StageDir(folder).iter_records()]


def first_difference(chosen: str, rejected: str) -> tuple[str, str] | None:
    """The two texts' characters where they first differ ("" for a text that ends first); None when equal.
    The definition of tests/toy/test_toy_error_balance.py."""
    k = next((j for j in range(max(len(chosen), len(rejected))) if chosen[j : j + 1] != rejected[j : j + 1]), None)
    return None if k is None else (chosen[k : k + 1], rejected[k : k + 1])


def pair_diagnostics(
    pairs: Sequence[StepPair], step_checker: Callable[[str, Sequence[str]], list[bool]] | None = None
) -> dict:
    """The numbers of one step-pair set (see the module docstring); ``step_checker``: the task's
    (None: the both-right and chosen-wrong shares are None)."""
    gaps = [p.chosen_value - p.rejected_value for p in pairs]
    firsts = [d for p in pairs if (d := first_difference(p.chosen, p.rejected)) is not None]
    out = {
        "pairs": len(pairs),
        "gap_mean": statistics.mean(gaps) if gaps else None,
        "gap_sd": statistics.stdev(gaps) if len(gaps) > 1 else None,
        "gap_one_share": sum(math.isclose(g, 1.0, abs_tol=1e-9) for g in gaps) / len(gaps) if gaps else None,
        "both_right_share": None,
        "chosen_wrong_share": None,
        "identical_text": len(pairs) - len(firsts),
        "chosen_smaller_share": sum(c < r for c, r in firsts) / len(firsts) if firsts else None,
        "top_kind": None,
        "top_kind_share": None,
    }
    if firsts:
        kind, count = Counter(firsts).most_common(1)[0]
        out.update(top_kind=kind, top_kind_share=count / len(firsts))
    if step_checker is not None and pairs:
        verdicts = [
            (
                step_checker(p.prompt, [*p.prefix_steps, p.chosen])[-1],
                step_checker(p.prompt, [*p.prefix_steps, p.rejected])[-1],
            )
            for p in pairs
        ]
        out["both_right_share"] = sum(c and r for c, r in verdicts) / len(pairs)
        out["chosen_wrong_share"] = sum(not c for c, _ in verdicts) / len(pairs)
    return out


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _char(c: str) -> str:
    return "end" if c == "" else f"`{c}`"


def _pairs_line(name: str, d: dict) -> str:
    gap = "-" if d["gap_mean"] is None else f"{d['gap_mean']:.3f} ± {d['gap_sd'] or 0.0:.3f}"
    kind = "-" if d["top_kind"] is None else f"{_char(d['top_kind'][0])} vs {_char(d['top_kind'][1])}"
    cells = [str(d["pairs"]), gap, _share(d["gap_one_share"]), _share(d["both_right_share"])]
    cells += [
        _share(d["chosen_wrong_share"]),
        _share(d["chosen_smaller_share"]),
        f"{kind}: {_share(d['top_kind_share'])}",
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def step_pairs_section(run_dirs: Sequence[Path], step_checker=None) -> list[str]:
    """Step-pair diagnostics of every stage (of every seed folder in ``run_dirs``, labelled by it)."""
    lines = []
    for run_dir in run_dirs:
        for stage, folder in step_pair_sets(run_dir):
            name = stage if len(run_dirs) == 1 else f"{Path(run_dir).name}/{stage}"
            lines.append(_pairs_line(name, pair_diagnostics(read_step_pairs(folder), step_checker)))
    if not lines:
        return []
    return [
        "## Step pairs",
        "",
        "What each stage's step-DPO pairs hold. Gap: V(s_w)−V(s_l), the dynamic margin's input (a gap "
        "of exactly 1.0 is a right step against a dead end). Both right / chosen wrong: by the task's "
        "step checker (n/a: the task has none); a pair of two right steps teaches a preference between "
        "right steps. First differing character of the chosen vs the rejected step text (a text that "
        "ends first has the smaller one): a share far from 50% of chosen-smaller, or one (chosen, "
        "rejected) kind above ~15%, is a shortcut that gives the chosen step away.",
        "",
        "| set | pairs | gap mean ± std | gap = 1.0 | both right | chosen wrong | chosen char smaller "
        "| most common (chosen, rejected) kind |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *lines,
        "",
    ]


def task_step_checker(cfg) -> Callable | None:
    """The step checker of the run's training task (``problems.source``), None when it has none."""
    from sppd.config import ConfigError
    from sppd.tasks import resolve

    try:
        return resolve(cfg.problems.source, cfg)[0].step_checker
    except ConfigError:
        return None


def learned_prm_section(run_dirs: Sequence[Path]) -> list[str]:
    """One line per seed: the trained PRM's held-out step agreement with the checker (none: [])."""
    lines = []
    for run_dir in run_dirs:
        path = RunLayout(run_dir).prm() / "toy_prm.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        metrics = data.get("metrics", {})
        agree = metrics.get("val", {}).get("checker_agreement")
        if not agree:
            continue
        lines.append(
            f"| {run_dir.name} | {data.get('head', 'value')} | {agree['n']} | {agree['n_wrong']} | "
            f"{agree['accuracy']:.3f} | {agree['wrong_precision']:.3f} | {agree['wrong_recall']:.3f} | "
            f"{metrics.get('seconds', float('nan')):.0f} |"
        )
    if not lines:
        return []
    return [
        "## Learned PRM (ORM_VOTE / ORM_MAX scorer)",
        "",
        "Agreement with the exact step checker on the steps of held-out problems' trees (a step is called "
        "wrong when its score is at most 0.5; the checker says wrong when any step so far is wrong).",
        "",
        "| run | head | steps | wrong steps | accuracy | wrong-step precision | wrong-step recall | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *lines,
        "",
    ]
