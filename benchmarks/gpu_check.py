"""GPU smoke check with no network: the pipeline's heavy stages on a random model of a real architecture.

Builds a randomly initialised Llama-architecture model (default ~0.2B parameters) with the toy
tokenizer, then in bf16 on the GPU: tree sampling (``sppd sample``), tree-packed scoring with a
random toy-style PRM (``sppd score``), and step-DPO training with the dynamic margin on toy step
pairs (``sppd train``). Prints throughput and peak GPU memory per stage. Run by
``scripts/gpu_check.sh``; it needs CUDA and takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch


def build_policy(folder: Path, hidden: int, layers: int) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    from sppd.toy.tokenizer import build_toy_tokenizer

    tok = build_toy_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 64 * 64,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=max(1, hidden // 256),
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def write_step_pairs(folder: Path, n: int) -> None:
    """Toy step pairs (correct vs corrupted step after a shared prefix) with random values."""
    from sppd.io import StageDir
    from sppd.records import StepPair
    from sppd.toy.config import ToyWorldConfig
    from sppd.toy.world import format_solution, generate_problems, solve

    rng = random.Random(0)
    records = []
    for p in generate_problems(ToyWorldConfig(), "train", n, seed=3):
        lines = format_solution(solve(p.question), p.gold).split("\n")
        k = rng.randrange(len(lines) - 1)
        wrong = lines[k].replace("=", "=1", 1)
        vw, vl = rng.uniform(0.6, 1.0), rng.uniform(0.0, 0.4)
        records.append(
            StepPair(
                id=p.id,
                problem_id=p.id,
                prompt=p.question,
                initial_reason_steps="".join(s + "\n" for s in lines[:k]),
                prefix_steps=lines[:k],
                chosen=lines[k],
                rejected=wrong,
                chosen_value=vw,
                rejected_value=vl,
            ).to_dict()
        )
    out = StageDir(folder)
    out.write_shard("pairs", 0, records)
    out.write_manifest("gpu-check-pairs", counts={"pairs": len(records)}, inputs={})


def stage(name: str, fn) -> dict:
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"[{name}] {seconds:.1f} s, peak GPU memory {peak:.2f} GiB")
    return {
        "seconds": round(seconds, 1),
        "peak_gib": round(peak, 2),
        **{k: v for k, v in (result or {}).items() if isinstance(v, (int, float, str))},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/gpu-check")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--problems", type=int, default=256)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device")
    from sppd.settings import load_run_config
    from sppd.stages import sample, score, train

    work = Path(args.work)
    policy = work / "policy"
    n_params = build_policy(policy, args.hidden, args.layers)
    print(f"random Llama policy: {n_params / 1e6:.0f}M parameters, bf16, {torch.cuda.get_device_name()}")
    common = [
        f"run_dir={work}",
        f"model.path={policy}",
        "model.dtype=bf16",
        f"problems.n={args.problems}",
        "sample.problems_per_shard=256",
        "sample.engine_batch_size=1024",
        "sample.max_step_tokens=32",
    ]
    results = {"params": n_params}
    results["sample"] = stage("sample", lambda: sample.main(load_run_config("toy", common)))
    results["score"] = stage(
        "score (mc values)", lambda: score.main(load_run_config("toy", common + ["score.scorer=mc"]))
    )
    write_step_pairs(work / "pairs", 2048)
    results["train"] = stage(
        "train step_dpo",
        lambda: train.main(
            load_run_config(
                "toy",
                common
                + [
                    "train.objective=step_dpo",
                    f"train.data={work / 'pairs'}",
                    "train.batch_size=32",
                    "train.optimizer=sgd",
                    "train.lr=1e-5",
                    "train.mixed_precision=bf16",
                ],
            )
        ),
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
