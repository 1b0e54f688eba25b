"""Tree self-sampling throughput against two baselines measured in the same run.

1. Ceiling: tree sampling's generated tokens/s divided by the engine's plain batched generation
   (whole solutions, no tree) tokens/s for the same model and batch size. Goal >= 0.7.
2. Lockstep: the lockstep batched expansion (all expansions of a depth, for all problems, in one
   engine call) against expanding one node per generate call, walk after walk, the way public
   tree-search code does it. Same trees in distribution; goal >= 5x at K=16, C=2, 32 problems.

Uses the cached toy base model (trained on first use). ``--quick`` shrinks the problem count.
Prints a table and a final ``BENCH_RESULT {json}`` line that ``benchmarks/run_all.py`` collects.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from sppd.judging import toy_judge
from sppd.modeling import load_policy, set_threads
from sppd.prompting import build_prompt_ids
from sppd.records import Node, Tree
from sppd.sampling.engine import FinishReason, GenerationParams
from sppd.sampling.hf_engine import HFEngine
from sppd.sampling.tree import TreeSampler, selection_probs
from sppd.settings import load_run_config
from sppd.stages import common
from sppd.stages.sample import tree_params
from sppd.toy.world import generate_problems


def sequential_trees(engine, params, problems, prompts, seed):
    """Baseline: one generate call per node expansion, walks run one after another."""
    rng = random.Random(seed)
    gen = GenerationParams(
        max_new_tokens=params.max_step_tokens, temperature=params.temperature, stop=params.delimiter
    )
    calls = 0
    for problem, prompt in zip(problems, prompts):
        tree = Tree(problem=problem, prompt_ids=prompt)
        for _ in range(params.K):
            node, depth = -1, 0
            while True:
                if not tree.children_of(node):
                    (group,) = engine.generate(
                        [prompt + tree.path_token_ids(node)], params.C, gen, seed=rng.randrange(1 << 30)
                    )
                    calls += 1
                    for s in group:
                        terminal = (
                            s.finish_reason != FinishReason.DELIMITER
                            or depth + 1 >= params.max_depth
                            or "boxed" in s.text
                        )
                        child = Node(
                            id=len(tree.nodes),
                            parent=node,
                            depth=depth,
                            text=s.text,
                            token_ids=s.token_ids,
                            token_logps=s.token_logps,
                            finish_reason=str(s.finish_reason),
                            terminal=terminal,
                            avg_logp=s.avg_logp,
                        )
                        tree.nodes.append(child)
                        tree.children_of(node).append(child.id)
                kids = tree.children_of(node)
                node = rng.choices(kids, weights=selection_probs([tree.nodes[k].avg_logp for k in kids]))[0]
                depth += 1
                if tree.nodes[node].terminal:
                    break
    return calls


def measure(engine, fn):
    engine.stats.generated_tokens = 0
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    return out, engine.stats.generated_tokens, seconds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--C", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--config", default="toy")
    ap.add_argument("--model", default="", help="policy folder (default: the cached toy base model)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores; the toy config uses 1)")
    args = ap.parse_args(argv)
    cfg = load_run_config(args.config, [f"sample.K={args.K}", f"sample.C={args.C}", f"threads={args.threads}"])
    set_threads(cfg.threads)
    policy = args.model or common.policy_path(cfg)
    model, tok = load_policy(policy, cfg.model)
    engine = HFEngine(model, tok, batch_size=args.batch_size)
    problems = generate_problems(cfg.toy.world, "test", args.problems, seed=7)
    prompts = [build_prompt_ids(tok, p.question, cfg.prompt) for p in problems]
    params = tree_params(cfg)
    sampler = TreeSampler(engine, params, toy_judge)

    engine.generate(prompts[:4], 2, GenerationParams(max_new_tokens=8), seed=0)  # warm-up
    trees, tree_tokens, tree_s = measure(engine, lambda: sampler.sample(problems, prompts, seed=1))
    # plain batched generation of whole solutions: as many rows per call as the tree's engine gets
    n_rows = args.batch_size // args.C
    plain_prompts = (prompts * (n_rows // len(prompts) + 1))[:n_rows]
    full = GenerationParams(max_new_tokens=params.max_total_tokens, temperature=params.temperature)
    _, plain_tokens, plain_s = measure(engine, lambda: engine.generate(plain_prompts, args.C, full, seed=2))
    calls, seq_tokens, seq_s = measure(engine, lambda: sequential_trees(engine, params, problems, prompts, seed=3))

    tree_tps, plain_tps, seq_tps = tree_tokens / tree_s, plain_tokens / plain_s, seq_tokens / seq_s
    leaves = sum(len(t.leaves()) for t in trees)
    rows = [
        ("tree sampling (lockstep)", tree_tokens, tree_s, tree_tps),
        ("plain batched generation", plain_tokens, plain_s, plain_tps),
        (f"one node per call ({calls} calls)", seq_tokens, seq_s, seq_tps),
    ]
    print(
        f"model {policy} | {args.problems} problems, K={args.K}, C={args.C}, batch {args.batch_size}, "
        f"threads {torch.get_num_threads()} | {leaves} leaves"
    )
    print(f"{'run':38s} {'tokens':>8s} {'seconds':>8s} {'tokens/s':>9s}")
    for name, t, s, r in rows:
        print(f"{name:38s} {t:8d} {s:8.2f} {r:9.0f}")
    result = {
        "name": "tree sampling",
        "command": (
            f"python benchmarks/bench_sampling.py --problems {args.problems} --K {args.K} --C {args.C}"
            f" --threads {args.threads}"
        ),
        "ratios": [
            {
                "what": "tree tokens/s / plain batched generation tokens/s",
                "value": round(tree_tps / plain_tps, 3),
                "goal": ">= 0.7",
            },
            {
                "what": "lockstep tokens/s / one-node-per-call tokens/s (same K, C, problems)",
                "value": round(tree_tps / seq_tps, 2),
                "goal": ">= 5",
            },
        ],
        "numbers": {
            "tree_tokens_per_s": round(tree_tps),
            "plain_tokens_per_s": round(plain_tps),
            "sequential_tokens_per_s": round(seq_tps),
            "sequential_calls": calls,
            "leaves": leaves,
        },
    }
    for r in result["ratios"]:
        print(f"{r['what']}: {r['value']} (goal {r['goal']})")
    print("BENCH_RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
