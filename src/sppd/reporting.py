"""``report.md`` of a pipeline run: the paper's tables and figures, from this run's numbers only.

Table 1's analogue (each stage's Greedy / MAJ@N / ORM_VOTE@N / ORM_MAX@N with 95% intervals and
deltas), the PRM diagnostics (Table 5, Figure 3), Table 4's analogue (dynamic vs fixed vs no
margin), Figure 2's analogue (accuracy vs gamma) and training curves as PNGs, the wall time of
every step, and plain-language verdicts that say when a stage did NOT help.
With several seeds, cells are mean ± standard deviation over seeds and a 95% Student-t interval.
Which table a row lands in and what its Δ is against come from the run's typed ``rows.json``
(``sppd.report_rows``), never its label. The diagnostics (training runs, step pairs) live in
``sppd.report_diagnostics``, the acceptance claims in ``sppd.report_acceptance``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from sppd.eval.stats import t_interval
from sppd.io import atomic_write_text
from sppd.layout import RunLayout
from sppd.report_acceptance import acceptance_section
from sppd.report_diagnostics import learned_prm_section, step_pairs_section, task_step_checker, training_runs_section
from sppd.report_rows import ReportRow, RowKind, load_rows
from sppd.settings import RunConfig
from sppd.types import MarginMode

# Table 1 shows the method's chain in this order, then controls; the kinds that trained a model of their own
CHAIN_KINDS = [RowKind.BASE, RowKind.SFT, RowKind.DPO, RowKind.SPPD, RowKind.STAGE, RowKind.CONTROL]
TRAINED_KINDS = {RowKind.SFT, RowKind.DPO, RowKind.SPPD, RowKind.STAGE, RowKind.CONTROL}
METHODS = [("greedy", "Greedy"), ("maj", "MAJ@{n}"), ("orm_vote", "ORM_VOTE@{n}"), ("orm_max", "ORM_MAX@{n}")]


def _acc(runs: list[dict], row: str, bench: str, method: str) -> list[float]:
    return [
        r["evals"][row][bench][method]["acc"]
        for r in runs
        if row in r["evals"] and method in r["evals"][row].get(bench, {})
    ]


def _cell(runs: list[dict], row: str, bench: str, method: str) -> str:
    values = _acc(runs, row, bench, method)
    if not values:
        return "-"
    if len(runs) == 1:
        m = runs[0]["evals"][row][bench][method]
        return f"{100 * m['acc']:.1f} [{100 * m['lo']:.1f}, {100 * m['hi']:.1f}]"
    if len(values) == 1:
        return f"{100 * values[0]:.1f} (1 seed)"
    s = t_interval([100 * v for v in values])
    return f"{s.mean:.1f} ± {s.sd:.1f} [{s.low:.1f}, {s.high:.1f}]"


def _mean(runs, row, bench, method) -> float | None:
    values = _acc(runs, row, bench, method)
    return statistics.mean(values) if values else None


def _delta(runs, row, prev, bench, method) -> str:
    a, b = _mean(runs, row, bench, method), _mean(runs, prev, bench, method) if prev else None
    return "" if a is None or b is None else f"{100 * (a - b):+.1f}"


def table(runs: list[dict], rows: list[tuple[str, str | None]], bench: str, n: int, methods=METHODS) -> str:
    """Markdown table: one row per (row, previous row for the delta)."""
    head = ["model"] + [label.format(n=n) for _, label in methods] + ["Δ Greedy", f"Δ MAJ@{n}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, prev in rows:
        if not any(row in r["evals"] for r in runs):
            continue
        cells = [_cell(runs, row, bench, m) for m, _ in methods]
        lines.append(
            "| "
            + " | ".join(
                [row, *cells, _delta(runs, row, prev, bench, "greedy"), _delta(runs, row, prev, bench, "maj")]
            )
            + " |"
        )
    return "\n".join(lines)


def verdict(runs, a: str | None, b: str | None, bench: str, what: str) -> str:
    """One sentence comparing row ``a`` with row ``b`` on greedy accuracy, honest about noise (None: not run)."""
    ma, mb = _mean(runs, a, bench, "greedy"), _mean(runs, b, bench, "greedy")
    if ma is None or mb is None:
        return f"- {what}: not run."
    diff = 100 * (ma - mb)
    overlap = ""
    if len(runs) == 1:
        ea, eb = runs[0]["evals"][a][bench]["greedy"], runs[0]["evals"][b][bench]["greedy"]
        overlap = " (95% intervals overlap: within noise)" if ea["lo"] <= eb["hi"] and eb["lo"] <= ea["hi"] else ""
    word = "improves on" if diff > 0 else ("matches" if diff == 0 else "does NOT improve on")
    return f"- {what}: {a} {word} {b} by {diff:+.1f} points greedy{overlap}."


def plot_gamma(
    runs: list[dict], gamma_rows: list[ReportRow], start: str | None, bench: str, n: int, path: Path
) -> bool:
    """Figure 2's analogue: greedy and MAJ@N accuracy against gamma (log x axis); ``start``: a reference line."""
    if not gamma_rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, label in [("greedy", "Greedy"), ("maj", f"MAJ@{n}")]:
        ys = [(r.gamma, _mean(runs, r.name, bench, method)) for r in gamma_rows]
        pts = [(g, 100 * y) for g, y in ys if y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    base = _mean(runs, start, bench, "greedy")
    if base is not None:
        ax.axhline(100 * base, ls="--", c="gray", label="DPO-PRM (start), greedy")
    ax.set_xscale("log")
    ax.set_xlabel("gamma (dynamic value margin scale)")
    ax.set_ylabel(f"accuracy on {bench} (%)")
    ax.set_title("Impact of gamma (Figure 2 analogue)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_training(rows: list[ReportRow], path: Path) -> bool:
    """Loss (and reward accuracy for preference objectives) per optimizer step for every training run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for row in rows:
        metrics = Path(row.model) / "metrics.jsonl"
        if metrics.exists() and row.kind in TRAINED_KINDS:
            lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            curves[row.name] = [m for m in lines if "loss" in m]
    if not curves:
        return False
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3), squeeze=False)
    for ax, (row, points) in zip(axes[0], curves.items()):
        steps = [m.get("step", i) for i, m in enumerate(points)]
        ax.plot(steps, [m["loss"] for m in points], label="loss", color="tab:blue")
        acc = [m.get("rewards/accuracy") for m in points]
        if any(a is not None for a in acc):  # preference objectives: reward accuracy on its own 0-1 axis
            ax2 = ax.twinx()
            ax2.plot(
                steps,
                [a if a is not None else float("nan") for a in acc],
                color="tab:orange",
                alpha=0.7,
                label="reward accuracy",
            )
            ax2.set_ylim(0, 1.05)
            ax2.legend(fontsize=7, loc="lower right")
        ax.set_title(row, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(cfg: RunConfig, runs: list[dict]) -> Path:
    root = Path(cfg.run_dir)
    n = cfg.eval.n_samples
    seeds = (
        f"{len(runs)} seeds (mean ± std [95% Student-t interval over seeds])"
        if len(runs) > 1
        else "1 seed (95% bootstrap intervals)"
    )
    out = [
        f"# SPPD pipeline report — `{cfg.run_dir}`",
        "",
        f"Config: `{root / 'config.yaml'}`; {seeds}. Every number below was produced by this run.",
        "",
    ]
    first = runs[0]
    rows = load_rows(Path(first["run_dir"]))  # every seed runs the same rows
    for bench in cfg.eval.benchmarks:
        out += _table1_section(runs, rows, bench, n)
        out += _ablation_sections(cfg, runs, rows, bench)
        out += acceptance_section(runs, rows, bench)
    if first.get("val"):
        vb = cfg.pipeline.val_benchmark
        out += [
            f"## Model selection on the validation set ({vb}, greedy, {cfg.pipeline.val_problems} problems)",
            "",
            "Used only to choose (never the test set above).",
            "",
            "| model | greedy |",
            "|---|---:|",
            *[f"| {row} | {_val_cell(runs, row)} |" for row in first["val"]],
            "",
        ]
    # with several seeds each note says which seed's run made that choice
    notes = [n if len(runs) == 1 else f"{Path(r['run_dir']).name}: {n}" for r in runs for n in r.get("notes", [])]
    if notes:
        out += ["## Choices the pipeline made", "", *[f"- {n}" for n in notes], ""]
    if first.get("skipped"):
        out += ["## Steps skipped", "", *[f"- {s}" for s in first["skipped"]], ""]
    out += _prm_section(root)
    run_dirs = [Path(r["run_dir"]) for r in runs]
    out += learned_prm_section(run_dirs)
    out += step_pairs_section(run_dirs, task_step_checker(cfg))
    if plot_training(rows, root / "training_curves.png"):
        out += ["## Training curves", "", "![training curves](training_curves.png)", ""]
    out += training_runs_section([rows, *[load_rows(d) for d in run_dirs[1:]]])
    out += ["## Wall time per step (seconds)", "", "| step | seconds |", "|---|---:|"]
    out += [f"| {k} | {v:.1f} |" for k, v in first["timings"].items()]
    out.append(f"| **total** | {sum(first['timings'].values()):.1f} |")
    path = RunLayout.of(cfg).report()
    atomic_write_text(path, "\n".join(out) + "\n")
    return path


def _row(rows: list[ReportRow], kind: RowKind, margin: MarginMode | None = None) -> ReportRow | None:
    """The first row of ``kind`` (and ``margin``), None when the run has none."""
    return next((r for r in rows if r.kind == kind and (margin is None or r.margin == margin)), None)


def _name(row: ReportRow | None) -> str | None:
    return row.name if row else None


def _table1_section(runs: list[dict], rows: list[ReportRow], bench: str, n: int) -> list[str]:
    """Table 1's analogue: the method's chain, each row's Δ against the model it started from, then verdicts."""
    chain = sorted((r for r in rows if r.kind in CHAIN_KINDS), key=lambda r: CHAIN_KINDS.index(r.kind))
    base, sft, dpo, sppd = (_name(_row(rows, k)) for k in (RowKind.BASE, RowKind.SFT, RowKind.DPO, RowKind.SPPD))
    return [
        f"## Table 1 analogue — {bench}",
        "",
        table(runs, [(r.name, r.start) for r in chain], bench, n),
        "",
        "Verdicts:",
        verdict(runs, sft, base, bench, "SFT-PRM"),
        verdict(runs, dpo, sft, bench, "DPO-PRM"),
        verdict(runs, sppd, dpo, bench, "SPPD step-DPO"),
        *[verdict(runs, r.name, r.start, bench, r.name) for r in chain if r.kind == RowKind.STAGE],
        *[
            verdict(runs, sppd, r.name, bench, "self-training vs the same compute of pretraining")
            for r in chain
            if r.kind == RowKind.CONTROL
        ],
        "",
    ]


def _ablation_sections(cfg: RunConfig, runs: list[dict], rows: list[ReportRow], bench: str) -> list[str]:
    """Table 4's analogue (margin modes) and Figure 2's (gamma sweep), every row at the ablations' N."""
    root = Path(cfg.run_dir)
    sppd = _row(rows, RowKind.SPPD)
    dyn = _row(rows, RowKind.ABLATION, MarginMode.DYNAMIC) or sppd  # no ablations: the SPPD row alone
    fixed, none = _row(rows, RowKind.ABLATION, MarginMode.FIXED), _row(rows, RowKind.ABLATION, MarginMode.NONE)
    start_row = _row(rows, RowKind.ABLATION_START) or sppd
    start = start_row.start if start_row else None  # the model every ablation trained from
    na = cfg.pipeline.ablation_eval_samples or cfg.eval.n_samples  # the N every ablation row was evaluated with
    out = [
        f"## Table 4 analogue — margin ablation from DPO-PRM ({bench})",
        "",
        f"Dynamic: γ={cfg.pipeline.step_dpo.gamma:g}·(V(s_w)−V(s_l)); fixed: the mean of that margin over the "
        f"same pairs; none: plain Step-DPO. Δ is against {start}, the common starting point. All rows "
        f"(and {start} for the Δ) evaluated with N={na}.",
        "",
        table(runs, [(r.name, r.start) for r in (dyn, fixed, none) if r], bench, na, METHODS[:2]),
        "",
        verdict(runs, _name(dyn), _name(fixed), bench, "dynamic vs fixed margin"),
        verdict(runs, _name(fixed), _name(none), bench, "fixed vs no margin"),
        "",
    ]
    gamma_rows = sorted((r for r in rows if r.kind == RowKind.GAMMA), key=lambda r: r.gamma)
    gamma_png = root / f"figure2_gamma_{bench}.png"
    if plot_gamma(runs, gamma_rows, _name(_row(rows, RowKind.DPO)), bench, na, gamma_png):
        out += [
            f"## Figure 2 analogue — accuracy vs γ ({bench})",
            "",
            f"![gamma sweep]({gamma_png.name})",
            "",
            table(runs, [(r.name, r.start) for r in gamma_rows], bench, na, METHODS[:2]),
            "",
        ]
    return out


def _val_cell(runs: list[dict], row: str) -> str:
    """A row's validation accuracy in percent (the mean over seeds)."""
    return f"{100 * statistics.mean(r['val'][row] for r in runs if row in r.get('val', {})):.1f}"


def _prm_section(root: Path) -> list[str]:
    rep = RunLayout(root).prm_report()
    if not rep.exists():
        rep = RunLayout(RunLayout(root).seed(0)).prm_report()
    if not (rep / "table5.md").exists():
        return []
    lines = [
        "## PRM diagnostics (Table 5 and Figure 3 analogues, Stage-1 trees)",
        "",
        (rep / "table5.md").read_text().strip(),
        "",
    ]
    if (rep / "figure3.png").exists():
        lines += [f"![PRM segment scores]({(rep / 'figure3.png').relative_to(root)})", ""]
    if (rep / "agreement.md").exists():
        lines += [(rep / "agreement.md").read_text().strip(), ""]
    return lines
