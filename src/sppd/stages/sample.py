"""``sppd sample``: grow one tree per problem with the policy and write them as shards.

Problems are cut into fixed chunks of ``sample.problems_per_shard``; a chunk is the unit of
lockstep search, of the seed, of the output shard and of resume. A rerun skips chunks whose
shard exists, so a killed run completes without losing or duplicating a tree, and (same
chunk, same seed) produces exactly the trees an uninterrupted run would. Under
``accelerate launch`` each process takes every WORLD_SIZE-th chunk.
"""

from __future__ import annotations

import time

from sppd import layout, runtime
from sppd.io import StageDir, iter_trees
from sppd.modeling import set_threads
from sppd.prompting import build_prompt_ids
from sppd.records import Tree
from sppd.sampling.tree import TreeParams, TreeSampler
from sppd.settings import RunConfig
from sppd.stages import common
from sppd.stages.fingerprint import Fingerprint, policy_id, reuse
from sppd.stages.policy_engine import load_engine
from sppd.tasks import training_task

TAG = "trees"


def tree_params(cfg: RunConfig) -> TreeParams:
    s = cfg.sample
    return TreeParams(
        K=s.K,
        C=s.C,
        max_depth=s.max_depth,
        max_step_tokens=s.max_step_tokens,
        max_total_tokens=s.max_total_tokens,
        temperature=s.temperature,
        top_p=s.top_p,
        selection_temperature=s.selection_temperature,
        delimiter=cfg.step.delimiter_text(),
        answer_pattern=cfg.step.answer_pattern,
        siblings=s.siblings,
        sibling_tries=s.sibling_tries,
    )


def main(cfg: RunConfig, model_path: str | None = None, out_dir: str = "") -> dict:
    """Sample trees for the configured problems; returns the summary it prints."""
    set_threads(cfg.threads)
    out = StageDir(layout.pick(out_dir, layout.sample_out(cfg)))
    rank, world = runtime.rank_and_world()
    task, split = training_task(cfg)  # a test split is refused unless problems.allow_test_split
    problems = task.problems(split, cfg.problems.n, seed=cfg.seed)
    common.require_some(len(problems), f"sample: problems.source={cfg.problems.source!r} ({split}) has no problems")
    common.check_problem_lengths(problems, cfg.problems.max_question_chars, f"problems.source={cfg.problems.source!r}")
    per = cfg.sample.problems_per_shard
    chunks = [problems[i : i + per] for i in range(0, len(problems), per)]
    fp = fingerprint(cfg, model_path)
    if reuse(out, fp, out.is_complete() and len(out.shards()) == len(chunks), has_work=bool(out.shards())):
        summary = summarize(list(iter_trees(out)))
        print(f"sample: {out.path} is complete; nothing to do.")
        return summary
    out.lock()
    if rank == 0:
        common.save_stage_config(out, cfg)
    path = model_path or common.policy_path(cfg)
    engine, tokenizer = load_engine(cfg, path, cfg.sample.engine_batch_size)
    judge = task.outcome_judge()
    sampler = TreeSampler(engine, tree_params(cfg), judge)
    mine = [ci for ci in range(len(chunks)) if ci % world == rank]
    todo = [ci for ci in mine if not out.has_shard(TAG, ci)]
    bar = runtime.progress(
        len(problems) if world == 1 else sum(len(chunks[c]) for c in mine),
        "sample",
        "problem",
        initial=sum(len(chunks[c]) for c in mine if c not in todo),
    )
    start = time.perf_counter()
    for ci in todo:
        chunk = chunks[ci]
        prompts = [build_prompt_ids(tokenizer, p.question, cfg.prompt) for p in chunk]
        trees = sampler.sample(chunk, prompts, seed=runtime.derive_seed(cfg.seed, "sample", ci))
        out.write_shard(TAG, ci, (t.to_dict() for t in trees))
        bar.update(len(chunk))
        bar.set_postfix(tok_s=f"{engine.stats.generated_tokens / max(time.perf_counter() - start, 1e-9):.0f}")
    bar.close()
    close = getattr(judge, "close", None)
    if close:
        close()
    runtime.barrier()
    summary = summarize(list(iter_trees(out)))
    summary.update(seconds=round(time.perf_counter() - start, 2), new_generated_tokens=engine.stats.generated_tokens)
    summary["tokens_per_s"] = round(engine.stats.generated_tokens / max(summary["seconds"], 1e-9), 1)
    if rank == 0 and len(out.shards()) == len(chunks):
        out.write_manifest(
            "sample",
            counts=summary,
            inputs={"model": str(path), "problems": cfg.problems.source, "n_problems": len(problems)},
            **fp.manifest_fields(),
        )
    runtime.barrier()  # no rank returns before the manifest exists (the next stage checks it)
    print(format_summary(summary, out.path))
    return summary


def fingerprint(cfg: RunConfig, model_path: str | None = None) -> Fingerprint:
    """What the trees depend on. ``problems_per_shard`` and ``engine_batch_size`` count: they set
    the chunks' seeds and how the engine's random stream is split. Threads and device do not."""
    keys = ["seed", "model.dtype", "prompt", "step", "problems", "sample"]
    keys += training_task(cfg)[0].config_keys  # e.g. the toy world that generates the problems
    return Fingerprint.of("sample", cfg, keys, inputs={"model": policy_id(cfg, model_path)})


def summarize(trees: list[Tree]) -> dict:
    leaves = [(t, k) for t in trees for k in t.leaves()]
    texts = {(t.problem.id, t.path_text(k)) for t, k in leaves}
    correct = sum(1 for t, k in leaves if t.nodes[k].correct)
    return {
        "problems": len(trees),
        "nodes": sum(len(t.nodes) for t in trees),
        "leaves": len(leaves),
        "distinct_paths": len(texts),
        "correct_leaf_fraction": round(correct / max(len(leaves), 1), 4),
        "problems_with_correct_leaf": sum(1 for t in trees if any(t.nodes[k].correct for k in t.leaves())),
        "generated_tokens": sum(n.n_tokens for t in trees for n in t.nodes),
        **sibling_counts(trees),
    }


def sibling_counts(trees: list[Tree]) -> dict:
    """How many distinct children expansions produced (sample.siblings): step pairs need two."""
    sizes = [len(t.root_children) for t in trees if t.root_children]
    sizes += [len(n.children) for t in trees for n in t.nodes if n.children]
    return {
        "expansions": len(sizes),
        "expansions_with_2plus_children": sum(1 for k in sizes if k >= 2),
        "distinct_children_per_expansion": round(sum(sizes) / max(len(sizes), 1), 4),
        "sibling_retries": sum(t.stats.get("sibling_retries", 0) for t in trees),
    }


def format_summary(summary: dict, path) -> str:
    keys = [
        "problems",
        "nodes",
        "leaves",
        "distinct_paths",
        "correct_leaf_fraction",
        "problems_with_correct_leaf",
        "generated_tokens",
        "expansions",
        "expansions_with_2plus_children",
        "distinct_children_per_expansion",
        "sibling_retries",
        "seconds",
        "tokens_per_s",
    ]
    lines = [f"sample: wrote {path}"] + [f"  {k:32s} {summary[k]}" for k in keys if k in summary]
    return "\n".join(lines)
