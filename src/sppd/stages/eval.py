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

from sppd.eval.harness import generate_records, grade_records, score_records, summarize
from sppd.eval.methods import SampleScore
from sppd.eval.stats import markdown_table
from sppd.io import StageDir, atomic_write_json, atomic_write_text
from sppd.judging import build_judge
from sppd.modeling import load_policy, set_threads
from sppd.problems import load_problems
from sppd.prompting import build_prompt_ids
from sppd.records import Problem
from sppd.sampling.engine import GenerationParams, build_engine
from sppd.settings import ProblemsConfig, RunConfig
from sppd.stages import common
from sppd.stages.fingerprint import Fingerprint, policy_id, reuse

TOY_SETS = ("toy", "toy-val")
METHOD_LABELS = {
    "greedy": "Greedy",
    "maj": "MAJ@{n}",
    "orm_vote": "ORM_VOTE@{n}",
    "orm_max": "ORM_MAX@{n}",
    "pass": "pass@{n}",
}


def bench_problems(cfg: RunConfig, name: str) -> list[Problem]:
    """The problems of one benchmark name.

    ``toy`` is the toy world's held-out test split; ``toy-val`` its validation split (for
    choosing hyperparameters and models without touching the test set). Both are disjoint from
    the training questions by the split hash.
    """
    n = cfg.eval.n_problems or None
    if name == "toy":
        pc = ProblemsConfig(source="toy", split="test", n=n or 500)
    elif name == "toy-val":
        pc = ProblemsConfig(source="toy", split="val", n=n or 500)
    else:
        pc = ProblemsConfig(
            source=name,
            n=n,
            question_field=cfg.problems.question_field,
            answer_field=cfg.problems.answer_field,
            id_field=cfg.problems.id_field,
        )
    return load_problems(pc, cfg.toy.world, seed=cfg.seed + 1)


def bench_tag(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", Path(name).stem if name.endswith(".jsonl") else name).strip("_")


def bench_judge(cfg: RunConfig, name: str):
    """The judge of one benchmark; math grading runs under ``eval.grade_timeout_s`` and ``eval.grade_workers``."""
    if name in TOY_SETS:
        return build_judge("toy")
    return build_judge(name, timeout_s=cfg.eval.grade_timeout_s, workers=cfg.eval.grade_workers)


def load_eval_prm(cfg: RunConfig):
    """The PRM behind the ORM methods, or None when none is configured or usable outside trees."""
    name = cfg.eval.prm or cfg.score.scorer
    if name in ("none", "mc"):  # MC values exist only inside sampled trees
        return None
    from sppd.prm.base import build_prm

    if name == "oracle":
        return build_prm(name)
    path = cfg.eval.prm_path or cfg.score.prm_path or str(Path(cfg.run_dir) / "prm")
    if not Path(path).exists():
        raise FileNotFoundError(f"PRM folder for the ORM methods not found: {path} (config key 'eval.prm_path')")
    return build_prm(name, path=path)


def fingerprint(cfg: RunConfig, model_path: str | None = None) -> Fingerprint:
    """What the metrics depend on: the eval settings (``batch_size`` too: it splits the engine's
    random stream), prompt and step rule, the model and the PRM behind the ORM methods."""
    prm = cfg.eval.prm or cfg.score.scorer
    keys = ["seed", "eval", "prompt", "step", "sample.engine", "model.dtype"]
    keys += ["score.scorer"] if not cfg.eval.prm else []
    keys += ["toy.world"] if any(b.startswith("toy") for b in cfg.eval.benchmarks) else []  # toy, toy-val
    keys += ["problems.question_field", "problems.answer_field", "problems.id_field"]
    model = model_path or cfg.eval.model
    inputs = {"model": Path(model) if model else policy_id(cfg)}
    if prm not in ("none", "mc", "oracle"):
        inputs["prm"] = Path(cfg.eval.prm_path or cfg.score.prm_path or Path(cfg.run_dir) / "prm")
    # grade_workers changes how fast answers are graded, never a verdict.
    exclude = ["eval.out", "eval.model", "eval.prm_path", "eval.grade_workers"]
    return Fingerprint.of("eval", cfg, keys, exclude, inputs)


def main(cfg: RunConfig, model_path: str | None = None, out_dir: str = "") -> dict:
    set_threads(cfg.threads)
    out = common.stage_dir(cfg, "eval", out_dir or cfg.eval.out)
    if reuse(out, fingerprint(cfg, model_path), out.is_complete(), has_work=bool(out.shards())):
        metrics = json.loads((out.path / "metrics.json").read_text())
        print(f"eval: {out.path} is complete; nothing to do.\n" + (out.path / "metrics.md").read_text())
        return metrics
    common.save_stage_config(out, cfg)
    path = model_path or cfg.eval.model or common.policy_path(cfg)
    model, tokenizer = load_policy(path, cfg.model)
    engine = build_engine(cfg.sample.engine, model=model, tokenizer=tokenizer, batch_size=cfg.eval.batch_size)
    prm = load_eval_prm(cfg)
    delimiter = cfg.step.delimiter_text()
    metrics = {}
    for name in cfg.eval.benchmarks:
        judge = bench_judge(cfg, name)
        try:
            records, n_unwinnable = _run_benchmark(cfg, name, out, engine, tokenizer, judge, prm, delimiter)
        finally:
            getattr(judge, "close", lambda: None)()
        equivalent = (lambda a, b: False) if name in TOY_SETS else None  # toy answers are integers
        metrics[name] = summarize(
            records, SampleScore(cfg.eval.sample_score), prm is not None, cfg.eval.bootstrap, cfg.seed, equivalent
        )
        metrics[name]["n_unwinnable_excluded"] = n_unwinnable
    metrics["_meta"] = {
        "model": str(path),
        "prm": getattr(prm, "name", None),
        "n_samples": cfg.eval.n_samples,
        "temperature": cfg.eval.temperature,
        "sample_score": cfg.eval.sample_score,
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
    bar = common.progress(len(problems), f"eval {name}", "problem", initial=done)
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
            seed=common.derive_seed(cfg.seed, "eval", tag, i),
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
