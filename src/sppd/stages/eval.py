"""``sppd eval``: Greedy-CoT, MAJ@N, ORM_VOTE@N, ORM_MAX@N (and pass@N) on the chosen benchmarks.

Per benchmark, problems are cut into fixed chunks; each chunk is generated, graded and
PRM-scored, then written as one shard (``records-<bench>-<n>.jsonl``), so a killed evaluation
resumes at the first missing chunk. When every shard exists the stage writes
``metrics.json`` and ``metrics.md`` (accuracy with 95% bootstrap intervals).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sppd import layout, runtime
from sppd.eval.harness import generate_records, grade_records, score_records, summarize
from sppd.eval.stats import markdown_table
from sppd.io import StageDir, atomic_write_json, atomic_write_text
from sppd.modeling import set_threads
from sppd.prompting import build_prompt_ids
from sppd.records import Problem
from sppd.sampling.engine import GenerationParams
from sppd.settings import RunConfig
from sppd.stages import common
from sppd.stages.fingerprint import Fingerprint, policy_id, reuse
from sppd.stages.policy_engine import load_engine
from sppd.tasks import benchmark_task
from sppd.types import NO_PRM

GENERATED_N = 500  # problems of a generated set (the toy world) when eval.n_problems is unset
METHOD_LABELS = {
    "greedy": "Greedy",
    "maj": "MAJ@{n}",
    "orm_vote": "ORM_VOTE@{n}",
    "orm_max": "ORM_MAX@{n}",
    "pass": "pass@{n}",
}


def bench_problems(cfg: RunConfig, name: str) -> list[Problem]:
    """The problems of one benchmark name: its task's test split unless the name pins another.

    ``toy`` is the toy world's held-out test split; ``toy-val`` its validation split (for
    choosing hyperparameters and models without touching the test set). Both are disjoint from
    the training questions by the split hash.
    """
    task, split = benchmark_task(cfg, name)
    n = cfg.eval.n_problems or (GENERATED_N if task.synthetic else None)
    return task.problems(split, n, seed=cfg.seed + 1)


def bench_tag(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", Path(name).stem if name.endswith(".jsonl") else name).strip("_")


def bench_judge(cfg: RunConfig, name: str):
    """The judge of one benchmark; math grading runs under ``eval.grade_timeout_s`` and ``eval.grade_workers``."""
    task = benchmark_task(cfg, name)[0]
    return task.outcome_judge(timeout_s=cfg.eval.grade_timeout_s, workers=cfg.eval.grade_workers)


def load_eval_prm(cfg: RunConfig):
    """The PRM behind the ORM methods, or None when none is configured or usable outside trees."""
    name = cfg.eval.prm or cfg.score.scorer
    if name in (NO_PRM, "mc"):  # MC values exist only inside sampled trees
        return None
    from sppd.prm.base import build_prm

    if name == "oracle":
        return build_prm(name)
    path = layout.eval_prm_path(cfg)
    if not path.exists():
        raise FileNotFoundError(f"PRM folder for the ORM methods not found: {path} (config key 'eval.prm_path')")
    from sppd.stages.score import adapter_options

    return build_prm(name, path=str(path), **adapter_options(cfg, name))


def fingerprint(cfg: RunConfig, model_path: str | None = None) -> Fingerprint:
    """What the metrics depend on: the eval settings (``batch_size`` too: it splits the engine's
    random stream), prompt and step rule, the model and the PRM behind the ORM methods."""
    prm = cfg.eval.prm or cfg.score.scorer
    keys = ["seed", "eval", "prompt", "step", "sample.engine", "model.dtype"]
    keys += ["score.scorer"] if not cfg.eval.prm else []
    for name in cfg.eval.benchmarks:  # e.g. the toy world that generates toy and toy-val
        keys += [k for k in benchmark_task(cfg, name)[0].config_keys if k not in keys]
    keys += ["problems.question_field", "problems.answer_field", "problems.id_field"]
    model = model_path or cfg.eval.model
    inputs = {"model": Path(model) if model else policy_id(cfg)}
    if prm not in (NO_PRM, "mc", "oracle"):
        inputs["prm"] = layout.eval_prm_path(cfg)
    return Fingerprint.of("eval", cfg, keys, inputs=inputs)


def main(cfg: RunConfig, model_path: str | None = None, out_dir: str = "") -> dict:
    set_threads(cfg.threads)
    out = StageDir(layout.pick(out_dir, layout.eval_out(cfg)))
    if reuse(out, fingerprint(cfg, model_path), out.is_complete(), has_work=bool(out.shards())):
        metrics = json.loads((out.path / "metrics.json").read_text())
        print(f"eval: {out.path} is complete; nothing to do.\n" + (out.path / "metrics.md").read_text())
        return metrics
    common.save_stage_config(out, cfg)
    path = model_path or cfg.eval.model or common.policy_path(cfg)
    engine, tokenizer = load_engine(cfg, path, cfg.eval.batch_size)
    prm = load_eval_prm(cfg)
    delimiter = cfg.step.delimiter_text()
    metrics = {}
    for name in cfg.eval.benchmarks:
        task = benchmark_task(cfg, name)[0]
        judge = bench_judge(cfg, name)
        try:
            records, n_unwinnable = _run_benchmark(cfg, name, out, engine, tokenizer, judge, prm, delimiter)
        finally:
            getattr(judge, "close", lambda: None)()
        metrics[name] = summarize(
            records, cfg.eval.sample_score, prm is not None, cfg.eval.bootstrap, cfg.seed, task.equivalent
        )
        metrics[name]["n_unwinnable_excluded"] = n_unwinnable
    metrics["_meta"] = {
        "model": str(path),
        "prm": getattr(prm, "name", None),
        "n_samples": cfg.eval.n_samples,
        "temperature": cfg.eval.temperature,
        "sample_score": str(cfg.eval.sample_score),
    }
    atomic_write_json(out.path / "metrics.json", metrics)
    table = metrics_table(metrics, cfg.eval.n_samples)
    atomic_write_text(out.path / "metrics.md", table + "\n")
    out.write_manifest(
        "eval",
        counts={k: v["n_problems"] for k, v in metrics.items() if k != "_meta"},
        inputs={"model": str(path), "benchmarks": cfg.eval.benchmarks},
        **fingerprint(cfg, model_path).manifest_fields(),
    )
    print(f"eval: wrote {out.path}\n{table}")
    return metrics


def _run_benchmark(cfg, name, out: StageDir, engine, tokenizer, judge, prm, delimiter) -> tuple[list[dict], int]:
    """The graded records of one benchmark, and how many unwinnable problems were left out."""
    problems, unwinnable = split_unwinnable(bench_problems(cfg, name))
    if unwinnable:
        reasons = ", ".join(sorted({p.meta["unwinnable"] for p in unwinnable}))
        print(f"eval {name}: {len(unwinnable)} unwinnable problem(s) excluded ({reasons})")
    tag, per = bench_tag(name), cfg.eval.problems_per_shard
    chunks = [problems[i : i + per] for i in range(0, len(problems), per)]
    e = cfg.eval
    sample_params = GenerationParams(max_new_tokens=e.max_new_tokens, temperature=e.temperature, top_p=e.top_p)
    greedy_params = GenerationParams(max_new_tokens=e.max_new_tokens, greedy=True)
    done = sum(len(c) for i, c in enumerate(chunks) if out.has_shard(tag, i))
    bar = runtime.progress(len(problems), f"eval {name}", "problem", initial=done)
    for i, chunk in enumerate(chunks):
        if out.has_shard(tag, i):
            continue
        prompts = [build_prompt_ids(tokenizer, p.question, cfg.prompt) for p in chunk]
        records = generate_records(
            engine,
            chunk,
            prompts,
            e.n_samples,
            sample_params,
            greedy_params,
            seed=runtime.derive_seed(cfg.seed, "eval", tag, i),
        )
        grade_records(records, judge)
        if prm is not None:
            score_records(records, prm, delimiter)
        out.write_shard(tag, i, ({"schema": 1, "kind": "eval", **r} for r in records))
        bar.update(len(chunk))
    bar.close()
    return [obj for i in range(len(chunks)) for _, obj in _read_shard(out, tag, i)], len(unwinnable)


def split_unwinnable(problems: list[Problem]) -> tuple[list[Problem], list[Problem]]:
    """(problems to evaluate, problems flagged unwinnable by their loader, e.g. an empty gold)."""
    keep = [p for p in problems if not p.meta.get("unwinnable")]
    return keep, [p for p in problems if p.meta.get("unwinnable")]


def _read_shard(out: StageDir, tag: str, index: int):
    from sppd.io import read_jsonl

    return read_jsonl(out.shard_path(tag, index))


def metrics_table(metrics: dict, n: int) -> str:
    """A markdown table: one row per benchmark, one column per method (accuracy % [95% CI])."""
    names = [k for k in metrics if k != "_meta"]
    methods = [m for m in METHOD_LABELS if any(m in metrics[b] for b in names)]
    rows = []
    for b in names:
        row = {"benchmark": b, "problems": metrics[b]["n_problems"]}
        for m in methods:
            v = metrics[b].get(m)
            row[METHOD_LABELS[m].format(n=n)] = (
                f"{100 * v['acc']:.1f} [{100 * v['lo']:.1f}, {100 * v['hi']:.1f}]" if v else "-"
            )
        rows.append(row)
    return markdown_table(rows).rstrip("\n")
