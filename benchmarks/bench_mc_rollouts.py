"""MC rollouts batched across a shard of trees against one engine call group per tree.

``score.mc_rollouts`` rolls out whole completions from every sibling step so that tree values
are graded (not just 0/1). Rolling out tree by tree (sppd's first version, and what per-problem
Math-Shepherd-style scripts do) gives the engine small batches; ``rollout_counts_batch`` sends
the same rollouts of all trees of a shard as a few large calls. Same plans, same number of
completions; the ratio is completions/s. Prints a final ``BENCH_RESULT {json}`` line.

Measured on the 2-core dev machine: 1.3x at 64 trees and 1 thread (the toy demo's setting),
1.9x at 2 threads, but 0.8-0.9x at 32 trees and 1 thread: a single CPU thread gains little
from larger batches of this tiny model, and a larger batch pads to its longest prefix.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sppd.judging import toy_judge
from sppd.modeling import load_policy, set_threads
from sppd.prm.mc import rollout_counts_batch, rollout_plan
from sppd.prompting import build_prompt_ids
from sppd.sampling.engine import GenerationParams
from sppd.sampling.hf_engine import HFEngine
from sppd.sampling.tree import TreeSampler
from sppd.settings import load_run_config
from sppd.stages import common
from sppd.stages.sample import tree_params
from sppd.toy.world import generate_problems


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=64, help="trees (the toy config scores 64 per shard)")
    ap.add_argument("--rollouts", type=int, default=4)
    ap.add_argument("--config", default="toy")
    ap.add_argument("--model", default="", help="policy folder (default: the cached toy base model)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    cfg = load_run_config(args.config, [f"threads={args.threads}"])
    set_threads(cfg.threads)
    policy = args.model or common.policy_path(cfg)
    model, tok = load_policy(policy, cfg.model)
    engine = HFEngine(model, tok, batch_size=cfg.sample.engine_batch_size)
    problems = generate_problems(cfg.toy.world, "test", args.problems, seed=11)
    prompts = [build_prompt_ids(tok, p.question, cfg.prompt) for p in problems]
    trees = TreeSampler(engine, tree_params(cfg), toy_judge).sample(problems, prompts, seed=1)
    plans = [rollout_plan(t, per_node=args.rollouts) for t in trees]
    completions = sum(sum(p.values()) for p in plans)
    params = GenerationParams(
        max_new_tokens=cfg.sample.max_total_tokens, temperature=cfg.sample.temperature, stop=None
    )

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    batched_s = timed(lambda: rollout_counts_batch(trees, plans, engine, toy_judge, params, seed=5))
    per_tree_s = timed(
        lambda: [rollout_counts_batch([t], [p], engine, toy_judge, params, seed=5) for t, p in zip(trees, plans)]
    )
    print(
        f"model {policy} | {args.problems} trees, {args.rollouts} rollouts per sibling step, "
        f"threads {torch.get_num_threads()} | {completions} completions"
    )
    print(f"{'run':28s} {'seconds':>8s} {'completions/s':>14s}")
    for name, s in [("batched across trees", batched_s), ("one tree at a time", per_tree_s)]:
        print(f"{name:28s} {s:8.2f} {completions / s:14.1f}")
    ratio = round(per_tree_s / batched_s, 2)
    result = {
        "name": "MC rollouts",
        "command": f"python benchmarks/bench_mc_rollouts.py --problems {args.problems} --rollouts {args.rollouts} "
        f"--threads {args.threads}",
        "ratios": [
            {
                "what": "completions/s batched across a shard / one tree at a time (same plans)",
                "value": ratio,
                "goal": "> 1",
            }
        ],
        "numbers": {"completions": completions, "batched_s": round(batched_s, 2), "per_tree_s": round(per_tree_s, 2)},
    }
    print(f"{result['ratios'][0]['what']}: {ratio}")
    print("BENCH_RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
