"""PRM scoring cost of a tree: tree packing versus per-path and per-node scoring, same run.

Toy-like trees are built synthetically the way ``sppd sample`` grows them (K walks, C children
per expansion, child chosen at random, paths of 3-5 steps of ~20 characters ending in an answer
line), and scored by a randomly initialised toy PRM of the toy policy's size (~1M parameters,
fp32, CPU). Reported per mode:

* forward tokens / distinct tokens: tokens the PRM processes over the tokens that are distinct in
  the trees (question once per tree, each node's step once); goal for tree packing <= 1.2;
* scored steps/s and its ratio to per-node scoring (the naive baseline), timed in this run.

    python benchmarks/bench_prm_packing.py [--problems 48] [--K 16] [--threads 2] [--attn sdpa]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from sppd.prm.packing import layout_tree, score_trees
from sppd.prm.toy import new_toy_prm, random_backbone
from sppd.records import Node, Problem, Tree
from sppd.toy.config import ToyModelConfig
from sppd.types import PackingMode


def synthetic_tree(index: int, K: int, C: int, rng: random.Random) -> Tree:
    """A tree grown like the sampler grows one: K walks, C children per expansion."""
    n_steps = rng.randint(3, 5)
    question = "".join(f"{rng.randint(1, 9)}{rng.choice('+-*')}" for _ in range(n_steps - 1)) + "7"
    tree = Tree(problem=Problem(id=f"b{index}", question=question, gold="0", source="toy"), prompt_ids=[])

    def step_text(depth: int) -> str:
        if depth == n_steps - 1:
            return f"The answer is \\boxed{{{rng.randint(-99, 99)}}}"
        a, b = rng.randint(1, 99), rng.randint(1, 9)
        return f"Step {depth + 1}: {a}*{b}={a * b}, " + "".join(rng.choice("0123456789+-*") for _ in range(6))

    for _ in range(K):
        node_id, depth = -1, 0
        while True:
            kids = tree.children_of(node_id)
            if not kids:
                for _ in range(C):
                    terminal = depth == n_steps - 1
                    tree.nodes.append(
                        Node(
                            id=len(tree.nodes),
                            parent=node_id,
                            depth=depth,
                            text=step_text(depth),
                            token_ids=[],
                            token_logps=[],
                            finish_reason="delimiter",
                            terminal=terminal,
                            correct=rng.random() < 0.5 if terminal else None,
                        )
                    )
                    kids.append(len(tree.nodes) - 1)
            node_id = rng.choice(kids)
            if tree.nodes[node_id].terminal:
                break
            depth += 1
    return tree


def toy_size_prm(attn: str):
    """A random toy PRM shaped like the toy policy (hidden 128, 4 layers, 4 heads)."""
    prm = new_toy_prm(*random_backbone(ToyModelConfig(seed=0)))
    with torch.no_grad():
        torch.nn.init.normal_(prm.model.value_head.weight, std=0.1)
    prm.model.model.set_attn_implementation(attn)
    prm.model.eval()
    return prm


def run(problems: int, K: int, C: int, attn: str, repeats: int) -> list[dict]:
    rng = random.Random(0)
    trees = [synthetic_tree(i, K, C, rng) for i in range(problems)]
    prm = toy_size_prm(attn)
    distinct = sum(layout_tree(prm, t).distinct_tokens for t in trees)
    n_nodes = sum(len(t.nodes) for t in trees)
    # "tree" uses the default row budget; the fixed row lengths show the trade-off around it
    modes = [
        ("tree", PackingMode.TREE, None),
        ("tree rows<=256", PackingMode.TREE, 256),
        ("tree rows<=1024", PackingMode.TREE, 1024),
        ("path", PackingMode.PATH, None),
        ("node", PackingMode.NODE, None),
    ]
    results = {name: {"seconds": []} for name, _, _ in modes}
    reference = None
    for _ in range(repeats):  # interleaved, so machine noise hits every mode alike
        for name, mode, rows in modes:
            start = time.perf_counter()
            scores, stats = score_trees(prm, trees, mode, max_batch_tokens=16384, max_row_tokens=rows)
            results[name]["seconds"].append(time.perf_counter() - start)
            results[name]["stats"] = stats
            flat = [v for s in scores for v in s]
            reference = reference or flat
            results[name]["max_diff"] = max(abs(a - b) for a, b in zip(flat, reference))
    rows_out = []
    node_speed = n_nodes / min(results["node"]["seconds"])
    for name, _, _ in modes:
        r = results[name]
        speed = n_nodes / min(r["seconds"])
        rows_out.append(
            {
                "mode": name,
                "forward_tokens": r["stats"].forward_tokens,
                "tokens_ratio": r["stats"].forward_tokens / distinct,
                "padded_ratio": r["stats"].padded_tokens / distinct,
                "steps_per_s": speed,
                "speedup_vs_node": speed / node_speed,
                "max_diff": r["max_diff"],
            }
        )
    print(
        f"{problems} trees, {n_nodes} nodes (steps), {distinct} distinct PRM tokens; attention={attn}, "
        f"threads={torch.get_num_threads()}, best of {repeats}"
    )
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--K", type=int, default=16)
    parser.add_argument("--C", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args.problems, args.K, args.C, args.attn, args.repeats)
    print(
        f"{'mode':16s} {'fwd tokens':>10s} {'fwd/distinct':>12s} {'padded/distinct':>15s} "
        f"{'steps/s':>9s} {'vs node':>8s} {'max |diff|':>10s}"
    )
    for r in rows:
        print(
            f"{r['mode']:16s} {r['forward_tokens']:10d} {r['tokens_ratio']:12.3f} {r['padded_ratio']:15.3f} "
            f"{r['steps_per_s']:9.0f} {r['speedup_vs_node']:7.2f}x {r['max_diff']:10.2e}"
        )
    tree = rows[0]
    verdict = "OK" if tree["tokens_ratio"] <= 1.2 else "ABOVE GOAL"
    print(
        f"tree packing: forward/distinct tokens = {tree['tokens_ratio']:.3f} (goal <= 1.2: {verdict}); "
        f"{tree['speedup_vs_node']:.2f}x the per-node steps/s"
    )
    node = next(r for r in rows if r["mode"].startswith("node") or r["mode"].startswith("per-node"))
    result = {
        "name": "PRM tree packing",
        "command": "python benchmarks/bench_prm_packing.py",
        "ratios": [
            {
                "what": "PRM forward tokens / distinct tree tokens (tree packing)",
                "value": round(tree["tokens_ratio"], 3),
                "goal": "<= 1.2",
            },
            {
                "what": "same ratio, per-node scoring (the naive baseline)",
                "value": round(node["tokens_ratio"], 3),
                "goal": "(baseline)",
            },
            {
                "what": "scored steps/s, tree packing / per-node",
                "value": round(tree["speedup_vs_node"], 2),
                "goal": "> 1",
            },
        ],
    }
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
