"""The "Acceptance" section of ``report.md``: the orderings SPPD claims, each stated as holding or not.

On Greedy and on MAJ@N, from the typed rows (``sppd.report_rows``), never from labels:

* the method's chain: SFT-PRM < +DPO-PRM < +SPPD <= +SPPD-Stage2 (<= each later stage);
* the margin ablation: dynamic >= fixed >= no margin;
* self-training against the same compute of pretraining: +DPO-PRM, +SPPD, every later stage and
  every ablation row beat the continued-pretraining control.

One seed: the two accuracies. Several seeds: the claim on the means over seeds, and in how many
seeds it holds on its own. MAJ@N compares only rows evaluated with the same N (the ablation rows
use ``pipeline.ablation_eval_samples``).
"""

from __future__ import annotations

import operator
import statistics
from dataclasses import dataclass

from sppd.report_rows import ReportRow, RowKind
from sppd.types import MarginMode

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
METHODS = (("greedy", "Greedy"), ("maj", "MAJ@N"))


@dataclass(frozen=True)
class Claim:
    """``left op right`` on accuracy; a side is None when the run has no such row (``*_kind`` names it)."""

    left: ReportRow | None
    op: str
    right: ReportRow | None
    left_kind: str
    right_kind: str

    def label(self) -> str:
        left = self.left.name if self.left else self.left_kind
        right = self.right.name if self.right else self.right_kind
        return f"{left} {self.op} {right}"


def _first(rows: list[ReportRow], kind: RowKind, margin: MarginMode | None = None) -> ReportRow | None:
    return next((r for r in rows if r.kind == kind and (margin is None or r.margin == margin)), None)


def claims(rows: list[ReportRow]) -> list[Claim]:
    """Every claim the run's rows allow (a claim whose row is missing is kept: it shows as not run)."""
    sft, dpo, sppd = (_first(rows, k) for k in (RowKind.SFT, RowKind.DPO, RowKind.SPPD))
    stages = [r for r in rows if r.kind == RowKind.STAGE]
    ablations = [_first(rows, RowKind.ABLATION, m) for m in (MarginMode.DYNAMIC, MarginMode.FIXED, MarginMode.NONE)]
    control = _first(rows, RowKind.CONTROL)
    out = [Claim(sft, "<", dpo, "SFT-PRM", "+DPO-PRM"), Claim(dpo, "<", sppd, "+DPO-PRM", "+SPPD")]
    chain = [sppd, *stages] if stages else [sppd, None]
    out += [Claim(a, "<=", b, "+SPPD", "+SPPD-Stage2") for a, b in zip(chain, chain[1:])]
    names = [f"ablation {m}" for m in ("dynamic", "fixed", "none")]
    out += [Claim(ablations[i], ">=", ablations[i + 1], names[i], names[i + 1]) for i in range(2)]
    beaters = [(dpo, "+DPO-PRM"), (sppd, "+SPPD"), *[(s, s.name) for s in stages]]
    beaters += [(a, n) for a, n in zip(ablations, names)]
    out += [Claim(row, ">", control, name, "control") for row, name in beaters]
    return out


def _acc(run: dict, row: ReportRow, bench: str, method: str) -> float | None:
    m = run["evals"].get(row.name, {}).get(bench, {}).get(method)
    return None if m is None else 100 * m["acc"]


def judge(runs: list[dict], claim: Claim, bench: str, method: str) -> tuple[bool | None, str]:
    """(holds on the means; None: not judged) and the cell text with the numbers."""
    if claim.left is None or claim.right is None:
        return None, "not run"
    if method != "greedy" and claim.left.n != claim.right.n:
        return None, f"not comparable (N={claim.left.n} vs N={claim.right.n})"
    per_seed = [(_acc(run, claim.left, bench, method), _acc(run, claim.right, bench, method)) for run in runs]
    pairs = [(a, b) for a, b in per_seed if a is not None and b is not None]
    if not pairs:
        return None, "not evaluated"
    test = OPS[claim.op]
    a, b = statistics.mean(p[0] for p in pairs), statistics.mean(p[1] for p in pairs)
    holds = bool(test(a, b))
    numbers = f"{a:.2f} {claim.op} {b:.2f}" if holds else f"{a:.2f} vs {b:.2f}"
    if len(runs) > 1:
        numbers += f", means; in {sum(bool(test(x, y)) for x, y in pairs)} of {len(pairs)} seeds"
    return holds, f"holds ({numbers})" if holds else f"**does not hold** ({numbers})"


def acceptance_section(runs: list[dict], rows: list[ReportRow], bench: str) -> list[str]:
    """The section for one benchmark: a table of claims x (Greedy, MAJ@N) and a count of what holds."""
    found = claims(rows)
    if not any(c.left and c.right for c in found):
        return []
    held = {m: [] for m, _ in METHODS}
    lines = []
    for claim in found:
        cells = []
        for method, _ in METHODS:
            holds, text = judge(runs, claim, bench, method)
            if holds is not None:
                held[method].append(holds)
            cells.append(text)
        lines.append(f"| {claim.label()} | " + " | ".join(cells) + " |")
    seeds = f" over {len(runs)} seeds (on the means)" if len(runs) > 1 else ""
    counts = "; ".join(f"{label}: {sum(held[m])} of {len(held[m])} hold" for m, label in METHODS)
    return [
        f"## Acceptance — {bench}",
        "",
        "The orderings the method claims, in accuracy (%), each row against the other side at its own "
        f"N for MAJ@N{seeds}.",
        "",
        "| claim | Greedy | MAJ@N |",
        "|---|---|---|",
        *lines,
        "",
        f"Claims judged{seeds}: {counts}.",
        "",
    ]
