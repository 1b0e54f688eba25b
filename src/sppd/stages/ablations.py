"""Stage 1's ablations of the pipeline: Table 4 (dynamic vs fixed vs no margin) and Figure 2 (a
gamma sweep), each a step-DPO run from the same start model (+DPO-PRM) on the same step pairs as
+SPPD, so a row differs from +SPPD in its margin alone. The pairs are the base model's Stage-1
pairs, or on-policy ones with ``pipeline.step_pairs_from=start`` (``Pipeline.step_pairs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sppd.io import StageDir
from sppd.records import StepPair
from sppd.report_rows import RowKind
from sppd.types import MarginMode

if TYPE_CHECKING:
    from sppd.stages.pipeline import Pipeline


def run_ablations(pipe: Pipeline, pairs: Path, dpo: str, sppd: str, dpo_row: str) -> None:
    """Train and evaluate the ablation and sweep rows of ``pipe`` from ``dpo`` on ``pairs``.

    Every row of both is evaluated with the same N (``ablation_eval_samples``): the SPPD model
    is evaluated again as ``ablation/dynamic margin`` when that N differs from the main table's,
    so no MAJ@N column mixes two N.
    """
    p = pipe.cfg.pipeline
    n = p.ablation_eval_samples or None
    step = p.step_dpo
    if not (p.margin_ablation or p.gammas):
        return
    start = "ablation/start"  # the common start, at the same N (the deltas' base)
    pipe.evaluate(start, RowKind.ABLATION_START, dpo, dpo_row, n)
    pipe.evaluate("ablation/dynamic margin", RowKind.ABLATION, sppd, start, n, margin=MarginMode.DYNAMIC)
    if p.margin_ablation:
        mean_margin = step.gamma * (mean_value_gap(pairs) if pipe.plan is None else 0.0)  # dry run: unknown
        fixed = pipe.train(
            "stage1/ablate-fixed", step, pairs, dpo, margin=MarginMode.FIXED, fixed_margin=round(mean_margin, 6)
        )
        pipe.evaluate("ablation/fixed margin", RowKind.ABLATION, fixed, start, n, margin=MarginMode.FIXED)
        none = pipe.train("stage1/ablate-none", step, pairs, dpo, margin=MarginMode.NONE)
        pipe.evaluate("ablation/no margin", RowKind.ABLATION, none, start, n, margin=MarginMode.NONE)
    for gamma in p.gammas:
        if gamma == step.gamma and step.margin == MarginMode.DYNAMIC:
            model = sppd  # the SPPD run itself: evaluate() reuses its evaluation at this N
        else:
            model = pipe.train(f"stage1/gamma-{gamma:g}", step, pairs, dpo, margin=MarginMode.DYNAMIC, gamma=gamma)
        pipe.evaluate(f"gamma/{gamma:g}", RowKind.GAMMA, model, start, n, gamma=gamma)


def mean_value_gap(pairs: Path) -> float:
    """Mean V(s_w) - V(s_l) over a step-pair folder: the fixed margin that matches the dynamic one on average."""
    records = (StepPair.from_dict(obj, where) for where, obj in StageDir(pairs).iter_records())
    gaps = [r.chosen_value - r.rejected_value for r in records]
    return sum(gaps) / max(len(gaps), 1)
