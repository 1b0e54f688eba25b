"""GPU check with no network: the whole pipeline on a small random model of a real architecture.

Builds a randomly initialised ``Qwen2ForCausalLM`` (the Qwen2.5 architecture; default ~50M
parameters) over the toy tokenizer and saves it to a work folder, then on one GPU in bf16:

1. tree sampling against plain generation of whole solutions with the same engine (vLLM with
   prefix caching when vLLM is installed, else the HF engine; which one is printed), as a ratio
   of generated tokens/s;
2. the whole pipeline on the toy world (sample, MC scoring, build, SFT, DPO, step-DPO, Stage 2,
   margin ablation and a gamma, evaluations), with its wall time per step;
3. step-DPO training again on the pipeline's step pairs, alone, for its tokens/s and peak GPU
   memory. Training runs on DeepSpeed ZeRO-2 with SGD when ``scripts/gpu_check.sh`` found
   DeepSpeed (it then starts this file under ``accelerate launch`` with configs/accelerate/zero2.yaml),
   else on plain accelerate (the DDP path, one process); which one is printed.

``--cpu-smoke`` runs the same code on CPU at toy size in well under a minute (HF engine, no
DeepSpeed): it proves the script works where no GPU is, not any GPU number. Prints a final
``GPU_CHECK {json}`` line.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import time
from pathlib import Path

import torch


def build_policy(folder: Path, hidden: int, layers: int, dtype: torch.dtype) -> int:
    """A random Qwen2 model over the toy tokenizer, saved as an HF folder; returns its parameter count."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sppd.toy.tokenizer import build_toy_tokenizer

    tok = build_toy_tokenizer()
    heads = max(2, hidden // 64)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 4),
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(dtype)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def backends(cpu: bool) -> tuple[str, str]:
    """(sampling engine, training backend) this run uses, from what is installed and how it was started."""
    engine = "vllm" if not cpu and importlib.util.find_spec("vllm") is not None else "hf"
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    return engine, ("deepspeed-zero2" if deepspeed and not cpu else "accelerate (DDP path, 1 process)")


def overrides(args, work: Path, policy: Path, engine: str) -> list[str]:
    """The toy world's config at the check's size, on the random Qwen2 policy."""
    cpu = args.cpu_smoke
    small = cpu or args.quick
    return [
        f"run_dir={work / 'run'}",
        f"model.path={policy}",
        f"model.device={'cpu' if cpu else 'cuda'}",
        f"model.dtype={'float32' if cpu else 'bf16'}",
        f"sample.engine={engine}",
        "sample.vllm_gpu_memory_utilization=0.3",  # leaves the rest of the GPU to training
        f"problems.n={args.problems}",
        f"sample.K={4 if small else 16}",
        f"sample.max_depth={4 if small else 8}",
        f"sample.max_step_tokens={24 if cpu else 40}",
        f"sample.max_total_tokens={48 if cpu else 200}",
        f"sample.problems_per_shard={args.problems}",
        "score.scorer=mc",
        "score.mc_rollouts=0",
        "eval.prm=none",
        f"eval.n_problems={args.problems}",
        f"eval.n_samples={2 if small else 8}",
        f"eval.max_new_tokens={40 if cpu else 200}",
        f"pipeline.stages={1 if cpu else 2}",
        "pipeline.train_prm=false",
        "pipeline.control=false",
        "pipeline.val_benchmark=",
        "pipeline.gammas=[2.0]",
        f"pipeline.margin_ablation={'false' if cpu else 'true'}",
        "pipeline.ablation_eval_samples=0",
        f"threads={2 if cpu else 0}",
        *[f"pipeline.{o}.mixed_precision={'no' if cpu else 'bf16'}" for o in ("sft", "dpo", "step_dpo")],
    ]


def peak_gib(cpu: bool) -> float | None:
    """Peak memory torch allocated in this process since ``reset_peak`` (vLLM's own process not included)."""
    return None if cpu else round(torch.cuda.max_memory_allocated() / 2**30, 2)


def reset_peak(cpu: bool) -> None:
    if not cpu:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def compare_sampling(cfg, policy: Path) -> dict:
    """Tree sampling vs plain generation of whole solutions (K per prompt), same engine, tokens/s."""
    from sppd.prompting import build_prompt_ids
    from sppd.sampling.engine import GenerationParams
    from sppd.sampling.tree import TreeSampler
    from sppd.stages.policy_engine import load_engine
    from sppd.stages.sample import tree_params
    from sppd.tasks import training_task

    engine, tok = load_engine(cfg, policy, cfg.sample.engine_batch_size)
    task, split = training_task(cfg)
    problems = task.problems(split, cfg.problems.n, seed=cfg.seed)
    prompts = [build_prompt_ids(tok, p.question, cfg.prompt) for p in problems]
    params = tree_params(cfg)
    engine.generate(prompts[:2], 2, GenerationParams(max_new_tokens=4), seed=0)  # warm-up (compile, graphs)

    def tokens_per_s(fn) -> tuple[float, int]:
        before, start = engine.stats.generated_tokens, time.perf_counter()
        fn()
        tokens = engine.stats.generated_tokens - before
        return tokens / max(time.perf_counter() - start, 1e-9), tokens

    judge = task.outcome_judge()
    tree_tps, tree_tokens = tokens_per_s(lambda: TreeSampler(engine, params, judge).sample(problems, prompts, 1))
    getattr(judge, "close", lambda: None)()
    full = GenerationParams(max_new_tokens=params.max_total_tokens, temperature=params.temperature)
    plain_tps, plain_tokens = tokens_per_s(lambda: engine.generate(prompts, params.K, full, seed=2))
    return {
        "tree_tokens_per_s": round(tree_tps, 1),
        "plain_tokens_per_s": round(plain_tps, 1),
        "tree_over_plain": round(tree_tps / max(plain_tps, 1e-9), 3),
        "tree_tokens": tree_tokens,
        "plain_tokens": plain_tokens,
    }


def write_records(folder: Path, kind: str, n: int) -> None:
    """Toy-world training records: SFT on correct solutions, or step pairs (the correct step vs the
    same step with its result changed, after a shared correct prefix) with random values."""
    import random

    from sppd.io import StageDir
    from sppd.records import SFTExample, StepPair
    from sppd.toy.config import ToyWorldConfig
    from sppd.toy.world import format_solution, generate_problems, solve

    rng, records = random.Random(0), []
    for p in generate_problems(ToyWorldConfig(), "train", n, seed=3):
        lines = format_solution(solve(p.question), p.gold).split("\n")
        if kind == "sft":
            records.append(SFTExample(p.id, p.id, p.question, "\n".join(lines), lines).to_dict())
            continue
        k = rng.randrange(len(lines) - 1)
        pair = StepPair(
            id=p.id,
            problem_id=p.id,
            prompt=p.question,
            initial_reason_steps="".join(s + "\n" for s in lines[:k]),
            prefix_steps=lines[:k],
            chosen=lines[k],
            rejected=lines[k].replace("=", "=1", 1),
            chosen_value=rng.uniform(0.6, 1.0),
            rejected_value=rng.uniform(0.0, 0.4),
        )
        records.append(pair.to_dict())
    out = StageDir(folder)
    out.write_shard(kind, 0, records)
    out.write_manifest(f"gpu-check-{kind}", counts={"records": len(records)}, inputs={})


def timed(name: str, fn, cpu: bool):
    reset_peak(cpu)
    start = time.perf_counter()
    result = fn()
    print(f"[{name}] {time.perf_counter() - start:.1f} s, peak GPU memory {peak_gib(cpu)} GiB", flush=True)
    return result


def train_run(args, work: Path, policy: Path, engine: str, objective: str, n: int, extra: list[str]) -> dict:
    """Train ``objective`` on ``n`` fresh toy records from ``policy`` into ``work/train-<objective>``."""
    from sppd.settings import load_run_config
    from sppd.stages import train

    data = work / f"data-{objective}"
    if not data.exists():
        write_records(data, "sft" if objective == "sft" else "step_pairs", n)
    keys = [f"train.objective={objective}", f"train.data={data}", f"train.init={policy}"]
    keys += [f"train.out={work / f'train-{objective}'}", "train.epochs=1", *extra]
    cfg = load_run_config("toy-tiny" if args.cpu_smoke else "toy", overrides(args, work, policy, engine) + keys)
    summary = timed(f"train {objective}", lambda: train.main(cfg), args.cpu_smoke)
    peak = peak_gib(args.cpu_smoke)
    keep = ("steps", "examples", "tokens_per_s", "final_loss", "final_grad_norm", "l2_from_start")
    return {**{k: summary.get(k) for k in keep}, "peak_gib": peak}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="runs/gpu-check")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--problems", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="fewer walks and samples")
    ap.add_argument("--cpu-smoke", action="store_true", help="toy size on CPU (HF engine, no DeepSpeed), < 60 s")
    args = ap.parse_args(argv)
    cpu = args.cpu_smoke
    if cpu:
        args.hidden, args.layers, args.problems = 32, 2, min(args.problems, 3)
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device (use --cpu-smoke to check the script on CPU)")
    from sppd.settings import load_run_config
    from sppd.stages import pipeline

    work = Path(args.work)
    engine, trainer = backends(cpu)
    random_policy = work / "policy-random"
    n_params = build_policy(random_policy, args.hidden, args.layers, torch.float32 if cpu else torch.bfloat16)
    print(f"random Qwen2 policy: {n_params / 1e6:.1f}M parameters on {'CPU' if cpu else torch.cuda.get_device_name()}")
    print(f"sampling engine: {engine}" + ("" if engine == "vllm" else " (vLLM not installed, or --cpu-smoke)"))
    print(f"training: {trainer}" + ("" if "deepspeed" in trainer else " (DeepSpeed not installed, or --cpu-smoke)"))
    results: dict = {"params": n_params, "engine": engine, "trainer": trainer, "cpu_smoke": cpu}
    # A random model never reaches an answer, so nothing would be built to train on: SFT on the
    # world's correct solutions first (AdamW), then the pipeline starts from that model.
    sft = ["train.optimizer=adamw", "train.lr=1e-3", f"train.batch_size={8 if cpu else 64}", "train.warmup_ratio=0.05"]
    results["sft"] = train_run(args, work, random_policy, engine, "sft", 16 if cpu else 8192, sft)
    policy = work / "train-sft"
    cfg = load_run_config("toy-tiny" if cpu else "toy", overrides(args, work, policy, engine))
    results["sampling"] = timed("tree vs plain sampling", lambda: compare_sampling(cfg, policy), cpu)
    start = time.perf_counter()
    ran = timed("pipeline", lambda: pipeline.main(cfg), cpu)
    results["pipeline_seconds"] = round(time.perf_counter() - start, 1)
    results["pipeline_skipped"] = ran["runs"][0]["skipped"]  # e.g. no correct path: nothing to train on
    results["pipeline_timings"] = json.loads((work / "run" / "timings.json").read_text())
    step = ["train.optimizer=sgd", "train.lr=1e-5", "train.max_grad_norm=0", f"train.batch_size={4 if cpu else 32}"]
    results["train"] = train_run(args, work, policy, engine, "step_dpo", 16 if cpu else 4096, step)
    s, t = results["sampling"], results["train"]
    print(
        f"{engine} tree sampling {s['tree_tokens_per_s']:.0f} tok/s vs plain generate (prefix caching) "
        f"{s['plain_tokens_per_s']:.0f} tok/s: ratio {s['tree_over_plain']}"
    )
    print(f"step-DPO training ({trainer}, SGD): {t['tokens_per_s']} tok/s, peak GPU memory {t['peak_gib']} GiB")
    print("GPU_CHECK " + json.dumps(results))
    return results


if __name__ == "__main__":
    main()
