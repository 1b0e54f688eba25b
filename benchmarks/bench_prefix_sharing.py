"""Forward+backward throughput of prefix-shared step pairs versus two sequences per pair.

Toy-like step pairs (prefix ~60 tokens, steps ~12, batch 16) on a ~1M-parameter random Llama in
fp32. Both paths are timed in the same run, interleaved, and throughput counts tokens the way an
unshared implementation processes them: (prefix + chosen) + (prefix + rejected) per pair.

    python benchmarks/bench_prefix_sharing.py [--attn sdpa|eager] [--iters 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sppd.packing import PackedPairBatch, pack_pairs
from sppd.train.prefix_sharing import packed_pair_logps, unshared_pair_logps

VOCAB_SIZE = 48


def bench_model(attn_implementation: str) -> LlamaForCausalLM:
    """~1.05M parameters: 4 layers x (4*128^2 attention + 3*128*512 MLP) + embeddings."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        attn_implementation=attn_implementation,
    )
    return LlamaForCausalLM(config).to(torch.float32).train()


def toy_pairs(batch_size: int, seed: int) -> PackedPairBatch:
    """Prefix 50-70 tokens, chosen and rejected steps 8-16 tokens each, pad id 0."""
    g = torch.Generator().manual_seed(seed)

    def ids(low: int, high: int) -> list[int]:
        n = int(torch.randint(low, high + 1, (1,), generator=g))
        return torch.randint(1, VOCAB_SIZE, (n,), generator=g).tolist()

    pairs = [(ids(50, 70), ids(8, 16), ids(8, 16)) for _ in range(batch_size)]
    return pack_pairs(*(list(column) for column in zip(*pairs)), pad_id=0)


def step_seconds(model, batch: PackedPairBatch, compute) -> float:
    """Wall time of one forward + backward of a DPO-shaped objective."""
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    out = compute(model, batch)
    (out.chosen_logps - out.rejected_logps).sum().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = bench_model(args.attn)
    n_params = sum(p.numel() for p in model.parameters())
    batches = [toy_pairs(args.batch_size, seed) for seed in range(args.iters)]
    paths = {"unshared": unshared_pair_logps, "packed": packed_pair_logps}
    for compute in paths.values():  # warm-up: allocator, kernels
        step_seconds(model, batches[0], compute)
    seconds = dict.fromkeys(paths, 0.0)
    for batch in batches:  # interleave so drift in machine load hits both paths alike
        for name, compute in paths.items():
            seconds[name] += step_seconds(model, batch, compute)

    tokens = sum(batch.unshared_token_count for batch in batches)
    packed_tokens = sum(int((b.prefix_lens + b.chosen_lens + b.rejected_lens).sum()) for b in batches)
    print(f"model: Llama {n_params / 1e6:.2f}M params, fp32, attn={args.attn}, threads={args.threads}")
    print(
        f"data: {args.iters} batches x {args.batch_size} pairs; {tokens} unshared tokens, "
        f"{packed_tokens} packed tokens ({tokens / packed_tokens:.2f}x fewer)"
    )
    rates = {name: tokens / secs for name, secs in seconds.items()}
    for name, rate in rates.items():
        print(f"{name:>9}: {rate:10,.0f} tokens/s  ({seconds[name]:.2f} s forward+backward)")
    print(f"ratio packed/unshared: {rates['packed'] / rates['unshared']:.2f}x")
    result = {
        "name": "prefix-shared pair log-probs (forward+backward)",
        "command": f"python benchmarks/bench_prefix_sharing.py --attn {args.attn} --batch-size {args.batch_size}",
        "ratios": [
            {
                "what": "packed tokens/s / unshared tokens/s",
                "value": round(rates["packed"] / rates["unshared"], 2),
                "goal": "> 1 (Wang & Hegde report 1.1-1.6x)",
            }
        ],
    }
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
