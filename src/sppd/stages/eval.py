"""``sppd eval``: Greedy-CoT, MAJ@N, ORM_VOTE@N, ORM_MAX@N (and pass@N) on the chosen benchmarks.

Per benchmark, problems are cut into fixed chunks; each chunk is generated, graded and
PRM-scored, then written as one shard (``records-<bench>-<n>.jsonl``), so a killed evaluation
resumes at the first missing chunk. Under ``accelerate launch`` each process takes every
WORLD_SIZE-th shard (its records note the ``rank``). When every shard exists rank 0 writes
``metrics.json`` and ``metrics.md`` (accuracy with 95% bootstrap intervals).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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


def bench_tags(names: list[str]) -> dict[str, str]:
    """Each benchmark's shard tag, unique per name: two files with one base name (``x/test.jsonl``,
    ``y/test.jsonl``) get a digest of their path appended, so neither reuses the other's shards."""
    plain = [bench_tag(n) for n in names]
    return {
        n: f"{t}_{runtime.derive_seed(n):08x}" if plain.count(t) > 1 and n.endswith(".jsonl") else t
        for n, t in zip(names, plain)
    }


def bench_judge(cfg: RunConfig, name: str):
    """The judge of one benchmark; math grading runs under ``eval.grade_timeout_s`` and ``eval.grade_workers``."""
    task = benchmark_task(cfg, name)[0]
    return task.outcome_judge(timeout_s=cfg.eval.grade_timeout_s, workers=cfg.eval.grade_workers)


def eval_prm_name(cfg: RunConfig) -> str | None:
    """The registry name of the PRM behind the ORM methods, or None when there is none to use."""
    name = cfg.eval.prm or cfg.score.scorer
    return None if name in (NO_PRM, "mc") else name  # MC values exist only inside sampled trees


def load_eval_prm(cfg: RunConfig):
    """The PRM behind the ORM methods, or None when none is configured or usable outside trees."""
    name = eval_prm_name(cfg)
    if name is None:
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
    """Evaluate; returns the metrics (the same dict on every process of a launch).

    Under ``accelerate launch`` each process generates, grades and scores every WORLD_SIZE-th
    shard of each benchmark; after a barrier rank 0 alone reads all shards and writes the metrics,
    and the other ranks read them back after a second barrier.
    """
    set_threads(cfg.threads)
    out = StageDir(layout.pick(out_dir, layout.eval_out(cfg)))
    fp = fingerprint(cfg, model_path)
    if reuse(out, fp, out.is_complete(), has_work=bool(out.shards())):
        metrics = json.loads((out.path / "metrics.json").read_text())
        print(f"eval: {out.path} is complete; nothing to do.\n" + (out.path / "metrics.md").read_text())
        return metrics
    rank, world = runtime.rank_and_world()
    out.lock()  # rank 0 holds the folder's lock
    if rank == 0:
        common.save_stage_config(out, cfg)
    path = model_path or cfg.eval.model or common.policy_path(cfg)
    plans = {name: _plan(cfg, name) for name in cfg.eval.benchmarks}
    todo = {
        name: [i for i in range(len(p.chunks)) if i % world == rank and not out.has_shard(p.tag, i)]
        for name, p in plans.items()
    }
    if any(todo.values()):  # a process with nothing left to do loads no model
        _generate(cfg, out, path, plans, todo, rank)
    runtime.barrier()
    if rank == 0:
        _write_metrics(cfg, out, str(path), plans, fp, world)
    runtime.barrier()
    return json.loads((out.path / "metrics.json").read_text())  # as a rerun would return it


@dataclass
class _BenchPlan:
    """One benchmark's problems cut into shards; the unwinnable ones are left out."""

    tag: str
    chunks: list[list[Problem]]
    n_unwinnable: int


def _plan(cfg: RunConfig, name: str) -> _BenchPlan:
    problems, unwinnable = split_unwinnable(bench_problems(cfg, name))
    common.require_some(len(problems), f"eval: benchmark {name!r} (eval.benchmarks) has no problems to evaluate")
    common.check_problem_lengths(problems, cfg.problems.max_question_chars, f"eval benchmark {name!r}")
    if unwinnable and runtime.rank_and_world()[0] == 0:
        reasons = ", ".join(sorted({p.meta["unwinnable"] for p in unwinnable}))
        print(f"eval {name}: {len(unwinnable)} unwinnable problem(s) excluded ({reasons})")
    per = cfg.eval.problems_per_shard
    return _BenchPlan(
        bench_tags(cfg.eval.benchmarks)[name],
        [problems[i : i + per] for i in range(0, len(problems), per)],
        len(unwinnable),
    )


def _generate(cfg: RunConfig, out: StageDir, path, plans: dict, todo: dict, rank: int) -> None:
    """Generate, grade and score this process's unfinished shards (``todo``: benchmark -> indices)."""
    engine, tokenizer = load_engine(cfg, path, cfg.eval.batch_size)
    prm = load_eval_prm(cfg)
    for name, plan in plans.items():
        if not todo[name]:
            continue
        judge = bench_judge(cfg, name)
        try:
            _run_shards(cfg, name, plan, todo[name], out, engine, tokenizer, judge, prm, rank)
        finally:
            getattr(judge, "close", lambda: None)()


def _run_shards(cfg, name, plan: _BenchPlan, indices, out: StageDir, engine, tokenizer, judge, prm, rank) -> None:
    """Write shards ``indices`` of one benchmark; each record notes the ``rank`` that made it."""
    e, delimiter = cfg.eval, cfg.step.delimiter_text()
    sample_params = GenerationParams(max_new_tokens=e.max_new_tokens, temperature=e.temperature, top_p=e.top_p)
    greedy_params = GenerationParams(max_new_tokens=e.max_new_tokens, greedy=True)
    bar = runtime.progress(sum(len(plan.chunks[i]) for i in indices), f"eval {name}", "problem")
    for i in indices:
        chunk = plan.chunks[i]
        prompts = [build_prompt_ids(tokenizer, p.question, cfg.prompt) for p in chunk]
        records = generate_records(
            engine,
            chunk,
            prompts,
            e.n_samples,
            sample_params,
            greedy_params,
            seed=runtime.derive_seed(cfg.seed, "eval", plan.tag, i),
        )
        grade_records(records, judge)
        if prm is not None:
            score_records(records, prm, delimiter)
        out.write_shard(plan.tag, i, ({"schema": 1, "kind": "eval", "rank": rank, **r} for r in records))
        bar.update(len(chunk))
    bar.close()


def _write_metrics(cfg: RunConfig, out: StageDir, path: str, plans: dict, fp: Fingerprint, world: int) -> None:
    """Metrics over every shard (rank 0, once all are written): metrics.json, metrics.md, manifest."""
    prm = eval_prm_name(cfg)
    metrics = {}
    for name, plan in plans.items():
        records = [obj for i in range(len(plan.chunks)) for _, obj in _read_shard(out, plan.tag, i)]
        equivalent = benchmark_task(cfg, name)[0].equivalent
        metrics[name] = summarize(
            records, cfg.eval.sample_score, prm is not None, cfg.eval.bootstrap, cfg.seed, equivalent
        )
        metrics[name]["n_unwinnable_excluded"] = plan.n_unwinnable
    metrics["_meta"] = {
        "model": path,
        "prm": prm,
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
        inputs={"model": path, "benchmarks": cfg.eval.benchmarks},
        processes=world,
        **fp.manifest_fields(),
    )
    print(f"eval: wrote {out.path}\n{table}")


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
