"""``sppd prm report``: PRM diagnostics on scored trees (paper Appendix B).

Reads the scored trees (``score.out``, default ``<run_dir>/scored``) and writes
``<run_dir>/prm_report/``: ``table5.md`` (accuracy of the final-step, mean and minimum step
score judgments on correct and incorrect trajectories), ``figure3.png`` (segment-score box
plots), ``report.json`` with every number, and for problems with a step checker (toy) the
values' step-level agreement with it (and, for comparison, the MC values' agreement).
"""

from __future__ import annotations

import json
from pathlib import Path

from sppd import layout, runtime
from sppd.config import ConfigError
from sppd.io import StageDir, atomic_write_json, atomic_write_text, iter_trees
from sppd.prm.report import build_report, format_table5, plot_figure3, segment_distributions, trajectories
from sppd.settings import RunConfig


def main(cfg: RunConfig, trees_dir: str = "", out_dir: str = "") -> dict:
    """Write the report files; returns ``report.json``'s content.

    Under ``accelerate launch`` rank 0 writes the report and the other ranks read it back.
    """
    src = StageDir(layout.pick(trees_dir, layout.prm_report_trees(cfg)))
    if not src.shards():  # checked on every rank, so none is left waiting at the barrier
        raise ConfigError(f"config key 'score.out': no scored shards in {src.path}; run `sppd score` first")
    out = Path(layout.pick(out_dir, layout.prm_report_out(cfg)))
    report = _write(src, out) if runtime.rank_and_world()[0] == 0 else None
    runtime.barrier()
    return report if report is not None else json.loads((out / "report.json").read_text())


def _write(src: StageDir, out: Path) -> dict:
    trees = list(iter_trees(src))
    checkable = all(_has_step_checker(source) for source in {t.problem.source for t in trees})
    report = build_report(trees, toy=checkable)
    report["inputs"] = {"scored": str(src.path), "complete": src.is_complete()}
    scorer = ", ".join(report["scorers"])
    text = format_table5(report["table5"], scorer)
    if checkable:
        text += "\n" + format_agreement(report)
    atomic_write_text(out / "table5.md", text)
    plot_figure3(
        segment_distributions(trajectories(trees)),
        out / "figure3.png",
        title=f"Score by trajectory segment ({scorer or 'no scorer'})",
    )
    atomic_write_json(out / "report.json", report)
    print(f"prm report: wrote {out}\n{text}")
    return report


def _has_step_checker(source: str) -> bool:
    """Whether the task behind a problem's source tag can check each step (the toy world can)."""
    from sppd.tasks import find

    task = find(source)
    return task is not None and task.process_judge is not None


def format_agreement(report: dict) -> str:
    """The toy checker agreement of the values and of the MC values as Markdown."""

    def cell(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        "Step-level agreement with the exact step checker (a step is called wrong when its value "
        "is at most 0.5; the oracle says wrong when any step so far is wrong)",
        "",
        "| values | steps | wrong steps | accuracy | wrong-step precision | wrong-step recall |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key in (("scorer", "checker_agreement"), ("MC values", "mc_checker_agreement")):
        a = report[key]
        lines.append(
            f"| {label} | {a['n']} | {a['n_wrong']} | {cell(a['accuracy'])} | "
            f"{cell(a['wrong_precision'])} | {cell(a['wrong_recall'])} |"
        )
    return "\n".join(lines) + "\n"
