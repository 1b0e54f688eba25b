"""Where a stage's problems come from: the toy generator, a shipped benchmark, or a JSONL file."""

from __future__ import annotations

from pathlib import Path

from sppd.records import Problem
from sppd.settings import ProblemsConfig


def load_problems(cfg: ProblemsConfig, toy_world=None, seed: int = 0) -> list[Problem]:
    """The problems named by ``cfg`` (first ``cfg.n`` of them when set).

    ``toy_world`` is the ``ToyWorldConfig`` used when ``cfg.source == "toy"``.
    """
    if cfg.source == "toy":
        from sppd.toy.world import ToyWorldConfig, generate_problems

        n = cfg.n if cfg.n is not None else 1000
        return generate_problems(toy_world or ToyWorldConfig(), cfg.split, n, seed)
    if cfg.source == "mix":
        from sppd.eval.benchmarks import training_prompt_mix

        return _as_problems(training_prompt_mix(n=cfg.n or 10000, seed=seed), "mix")
    path = Path(cfg.source)
    if path.suffix in {".jsonl", ".json"} or path.exists():
        from sppd.eval.benchmarks import load_jsonl_problems

        items = load_jsonl_problems(
            path, question_field=cfg.question_field, answer_field=cfg.answer_field, id_field=cfg.id_field or None
        )
    else:
        from sppd.eval.benchmarks import load_benchmark

        items = load_benchmark(cfg.source)
    problems = _as_problems(items, cfg.source)
    return problems[: cfg.n] if cfg.n is not None else problems


def _as_problems(items, source: str) -> list[Problem]:
    """Benchmark loaders return their own record type; stages work with ``Problem``."""
    out = []
    for item in items:
        if isinstance(item, Problem):
            out.append(item)
        else:
            out.append(
                Problem(
                    id=str(item.id),
                    question=item.question,
                    gold=str(item.gold),
                    source=getattr(item, "source", source),
                    # eval leaves these out and says how many; see sppd.eval.benchmarks
                    meta={"unwinnable": item.unwinnable} if getattr(item, "unwinnable", "") else {},
                )
            )
    return out
