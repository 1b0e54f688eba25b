"""Decoding with the doubling KV cache (sppd.sampling.kv_cache) against transformers' DynamicCache.

Both runs decode the same whole solutions (an evaluation's MAJ@N sampling: toy test problems,
N samples each, up to 200 tokens) with the same seed, through the same ``HFEngine``; the
baseline only turns the conversion off. Samples must be identical; the goal is a speed-up of
at least 1.15x on CPU (the evaluation's profile had 35% of its time in ``torch.cat``).

Uses the cached toy base model (trained on first use). Prints a table and a final
``BENCH_RESULT {json}`` line that ``benchmarks/run_all.py`` collects.
"""

from __future__ import annotations

import argparse
import json
import time

import sppd.sampling.hf_engine as hf_engine
from sppd.modeling import load_policy, set_threads
from sppd.prompting import build_prompt_ids
from sppd.sampling.engine import GenerationParams
from sppd.settings import load_run_config
from sppd.stages import common
from sppd.toy.world import generate_problems

REAL = hf_engine.grow_in_place


def decode(engine, prompts, n, params, grow: bool):
    hf_engine.grow_in_place = REAL if grow else (lambda cache: cache)
    start = time.perf_counter()
    groups = engine.generate(prompts, n, params, seed=3)
    seconds = time.perf_counter() - start
    samples = [(s.token_ids, s.token_logps) for g in groups for s in g]
    return samples, sum(len(ids) for ids, _ in samples), seconds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=128)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--config", default="toy")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the toy config uses 1)")
    args = ap.parse_args(argv)
    cfg = load_run_config(args.config, [f"threads={args.threads}"])
    set_threads(cfg.threads)
    model, tok = load_policy(common.policy_path(cfg), cfg.model)
    engine = hf_engine.HFEngine(model, tok, batch_size=args.batch_size)
    problems = generate_problems(cfg.toy.world, "test", args.problems, seed=7)
    prompts = [build_prompt_ids(tok, p.question, cfg.prompt) for p in problems]
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=1.0)
    engine.generate(prompts[:4], 2, GenerationParams(max_new_tokens=8), seed=0)  # warm-up
    base, base_tokens, base_s = decode(engine, prompts, args.n, params, grow=False)
    ours, tokens, ours_s = decode(engine, prompts, args.n, params, grow=True)
    hf_engine.grow_in_place = REAL
    assert ours == base, "the doubling cache changed the samples"
    print("| cache | seconds | tokens/s |\n|---|---:|---:|")
    print(f"| transformers DynamicCache (torch.cat per token) | {base_s:.1f} | {base_tokens / base_s:.0f} |")
    print(f"| sppd GrowingLayer (doubling buffer) | {ours_s:.1f} | {tokens / ours_s:.0f} |")
    result = {
        "bench": "kv_cache",
        "command": f"python benchmarks/bench_kv_cache.py --problems {args.problems} --n {args.n}",
        "ratios": [
            {
                "what": "decode tokens/s, doubling cache / DynamicCache",
                "value": round(base_s / ours_s, 3),
                "goal": ">= 1.15",
            }
        ],
        "numbers": {"tokens": tokens, "identical_samples": True, "threads": args.threads},
    }
    for r in result["ratios"]:
        print(f"{r['what']}: {r['value']} (goal {r['goal']})")
    print("BENCH_RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
