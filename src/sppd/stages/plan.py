"""``sppd pipeline --dry-run``: the pipeline's stage calls as text; nothing runs, no model loads.

For each call, in order: its step and stage, how it is launched and the command that runs it
(in-process: the equivalent ``sppd <stage> -c <resolved.yaml>``; the YAML is written when the
stage is launched), the problems it reads (task, split, count), its input and output folders,
and, where earlier results decide whether or with what it runs (Stage 2's model, training on a
set that may be empty), that condition. Imports the config schema, ``sppd.layout`` and
``sppd.tasks`` only: no torch.
"""

from __future__ import annotations

import shlex

from sppd.layout import stage_folders
from sppd.prm.registry import HF_ADAPTERS
from sppd.settings import RunConfig
from sppd.stages.launch import StageCall, command, resolve_accelerate_config
from sppd.tasks import Task, benchmark_task, resolve, training_task
from sppd.types import Launcher


def render(cfg: RunConfig, calls: list[StageCall]) -> str:
    """The plan of ``calls`` (the pipeline's, in order) as lines of text."""
    p = cfg.pipeline
    head = f"sppd pipeline --dry-run: run_dir {cfg.run_dir}, launcher {p.launcher}"
    if p.launcher is Launcher.ACCELERATE:
        head += f" (accelerate config: {resolve_accelerate_config(p.accelerate_config) or 'accelerate default'})"
    lines = [head]
    if p.seeds > 1:
        lines.append(f"repeated for {p.seeds} seeds in <run_dir>/seed-<k>; seed 0 shown")
    if missing := unset_keys(cfg):
        lines.append(f"unset, required before a real run: {', '.join(missing)}")
    if not cfg.model.path and training_task(cfg)[0].synthetic:
        lines.append(" 0. toy/pretrain  [in-process] the toy base model: cached under $SPPD_CACHE, else pretrained")
    for i, call in enumerate(calls, 1):
        inputs, out = stage_folders(call.stage, call.cfg)
        how = "in-process; equivalent to" if call.launcher is Launcher.INPROCESS else call.launcher.value
        lines.append(f"{i:2d}. {call.step}  [{call.stage}, {how}]")
        lines.append(f"      $ {shlex.join(command(call))}")
        lines += [f"      problems: {source}" for source in sources(call)]
        lines.append("      in:  " + ", ".join(f"{k}={v}" for k, v in inputs.items()))
        lines.append(f"      out: {out}")
        if call.when:
            lines.append(f"      planned: {call.when}")
    return "\n".join(lines)


def unset_keys(cfg: RunConfig) -> list[str]:
    """The model keys a real run of ``cfg`` needs and lacks (the dry run shows the plan anyway)."""
    missing = [] if cfg.model.path or resolve(cfg.problems.source, cfg)[0].synthetic else ["model.path"]
    if cfg.score.scorer in HF_ADAPTERS and not cfg.score.prm_path:
        missing.append("score.prm_path")
    return missing


def sources(call: StageCall) -> list[str]:
    """The problems a stage reads, one line per task split."""
    cfg = call.cfg
    if call.stage == "sample":
        return [describe(*training_task(cfg), cfg.problems.n)]
    if call.stage == "eval":
        return [describe(*benchmark_task(cfg, name), cfg.eval.n_problems or None) for name in cfg.eval.benchmarks]
    return []


def describe(task: Task, split: str, n: int | None) -> str:
    """``task/split: used of total problems`` (a mixture: what it draws from each part)."""
    total = task.count(split)
    if total is None:
        return f"{task.name}/{split}: {n if n else 'the default number of'} problems, generated"
    used = min(n, total) if n else total
    text = f"{task.name}/{split}: {used} of {total} problems"
    if task.parts:
        shares, left = [], used
        for k, (name, part_split, share) in enumerate(task.parts):
            take = left if k == len(task.parts) - 1 else round(used * share)
            left -= take
            part = resolve(name)[0]
            shares.append(f"{take} from {name}/{part_split} (of {part.count(part_split)})")
        text += " = " + " + ".join(shares)
    return text
