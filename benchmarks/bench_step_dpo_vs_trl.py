"""Step-DPO training throughput and peak memory: sppd's loop versus TRL's DPOTrainer, same run.

Same step pairs (built from the toy world: prefix ~40-80 tokens, steps ~12-20 tokens), same ~1M
toy Llama (hidden 128, 4 layers, 4 heads, MLP 384, toy tokenizer, random init), same batch
size, optimizer (AdamW), schedule (10% warmup + cosine), clipping and precision (fp32, no
gradient checkpointing; TRL defaults to bf16 + checkpointing, overridden here), reference
log-probs precomputed before training for both (TRL: ``precompute_ref_log_probs=True``).

Tokens/s counts every token of prompt, chosen and rejected as an unshared implementation
processes them, ``(prompt + chosen) + (prompt + rejected)`` per pair, from sppd's tokenization
for both (TRL adds an EOS to each intermediate step, 2 tokens per pair more, not counted). The
rate is taken between the end of step 1 and the end of the last step, so start-up, reference
precompute and first-step warm-up are excluded for both. Each implementation runs in its own
subprocess (clean RSS high-water mark, own accelerate state); rounds alternate the
implementations and the best round of each is reported (other load on the machine only slows).

    python benchmarks/bench_step_dpo_vs_trl.py [--pairs 512] [--batch-size 16] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPLEMENTATIONS = ("sppd", "sppd-unshared", "trl")
LR, WARMUP, BETA = 1e-5, 0.1, 0.1


# --- data and model ---------------------------------------------------------------------------


def build_step_pairs(n: int, seed: int = 0) -> list:
    """Toy-tree-shaped step pairs: chosen = the correct next step, rejected = the same step with a
    wrong result; prefix and step lengths (in characters = toy tokens) kept in the target ranges."""
    from sppd.records import StepPair
    from sppd.toy.config import ToyWorldConfig
    from sppd.toy.world import answer_line, random_question, solve

    world, rng, pairs = ToyWorldConfig(min_ops=3, max_ops=6), random.Random(seed), []
    while len(pairs) < n:
        question = random_question(world, rng)
        steps = solve(question)
        lines = [s.line(k + 1) for k, s in enumerate(steps)] + [answer_line(steps[-1].result)]
        prompt_len = len(f"Q: {question}\n") + 1  # + BOS
        for depth in range(1, len(lines)):
            prefix_len = prompt_len + sum(len(line) + 1 for line in lines[:depth])
            chosen = lines[depth]
            if not (40 <= prefix_len <= 80 and 11 <= len(chosen) <= 19):
                continue
            terminal = depth == len(lines) - 1
            if terminal:
                rejected = answer_line(steps[-1].result + 10)
            else:
                s = steps[depth]
                rejected = chosen.replace(f"={s.result}", f"={s.result + rng.choice([1, 10])}", 1)
            pairs.append(
                StepPair(
                    id=f"bench-{len(pairs)}",
                    problem_id=question,
                    prompt=question,
                    initial_reason_steps="".join(line + "\n" for line in lines[:depth]),
                    prefix_steps=lines[:depth],
                    chosen=chosen,
                    rejected=rejected,
                    chosen_value=rng.uniform(0.6, 1.0),
                    rejected_value=rng.uniform(0.0, 0.4),
                    chosen_terminal=terminal,
                    rejected_terminal=terminal,
                    depth=depth,
                )
            )
            break
    return pairs


def prepare(work: Path, n_pairs: int) -> dict:
    """Write the pairs (a StageDir) and the random-init toy model folder; return data stats."""
    from sppd.io import StageDir
    from sppd.toy.config import ToyModelConfig
    from sppd.toy.model import build_toy_model, count_parameters
    from sppd.toy.tokenizer import build_toy_tokenizer

    tokenizer = build_toy_tokenizer()
    model = build_toy_model(ToyModelConfig(), tokenizer)
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    pairs = build_step_pairs(n_pairs)
    StageDir(work / "pairs").write_shard("step_pairs", 0, (p.to_dict() for p in pairs))
    return {"params": count_parameters(model), "pairs": len(pairs)}


def run_config(work: Path, args, prefix_sharing: bool):
    from sppd.settings import PromptConfig, RunConfig, TrainConfig
    from sppd.types import ChatTemplateMode, MixedPrecision, Objective, OptimizerName

    return RunConfig(
        run_dir=str(work / "runs"),
        threads=args.threads,
        prompt=PromptConfig(template="Q: {question}\n", chat_template=ChatTemplateMode.NEVER),
        train=TrainConfig(
            objective=Objective.STEP_DPO,
            data=str(work / "pairs"),
            init=str(work / "model"),
            out=str(work / f"out-{time.time_ns()}"),
            optimizer=OptimizerName.ADAMW,
            lr=LR,
            beta=BETA,
            batch_size=args.batch_size,
            epochs=1,
            warmup_ratio=WARMUP,
            max_grad_norm=1.0,
            mixed_precision=MixedPrecision.NO,
            prefix_sharing=prefix_sharing,
            log_every=1,
            seed=0,
        ),
    )


# --- workers (one subprocess each) ------------------------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rate(total_tokens: int, n_steps: int, step_end_times: list[float]) -> float:
    """Tokens/s between the end of step 1 and the end of the last step (steps 2..N)."""
    return total_tokens * (n_steps - 1) / n_steps / (step_end_times[-1] - step_end_times[0])


def worker_sppd(work: Path, args, prefix_sharing: bool) -> dict:
    import accelerate  # noqa: F401  (imported before the RSS baseline, as TRL's stack is in its worker)
    import transformers  # noqa: F401

    import sppd.stages.train as stage
    from sppd.data.tokenize import TokenizeSettings

    cfg = run_config(work, args, prefix_sharing)
    baseline = _rss_mb()
    summary = stage.main(cfg)
    rows = [json.loads(line) for line in (Path(cfg.train.out) / "metrics.jsonl").read_text().splitlines()]
    spec = stage.get_objective("step_dpo")
    tokenizer = stage.load_tokenizer(cfg.train.init)
    settings = TokenizeSettings(cfg.train.max_length, cfg.train.overlong, "\n", cfg.prompt)
    examples, _ = spec.tokenize(stage.read_records(Path(cfg.train.data), spec), tokenizer, settings)
    total = sum(e.n_tokens for e in examples)
    assert total == sum(r["tokens"] for r in rows), "every example is trained on exactly once"
    return {
        "tokens_per_s": _rate(total, len(rows), [r["elapsed_s"] for r in rows]),
        "steps": len(rows),
        "tokens": total,
        "baseline_mb": baseline,
        "final_loss": summary["final_loss"],
    }


def worker_trl(work: Path, args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from sppd.io import StageDir
    from sppd.modeling import load_tokenizer
    from sppd.records import StepPair

    torch.set_num_threads(args.threads)
    records = [StepPair.from_dict(obj) for _, obj in StageDir(work / "pairs").iter_records()]
    # TRL appends EOS itself; an intermediate step gets its delimiter here (and a wrong EOS there).
    rows = [
        {
            "prompt": f"Q: {r.prompt}\n{r.initial_reason_steps}",
            "chosen": r.chosen + ("" if r.chosen_terminal else "\n"),
            "rejected": r.rejected + ("" if r.rejected_terminal else "\n"),
        }
        for r in records
    ]
    tokenizer = load_tokenizer(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32)
    step_ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_, **__):
            step_ends.append(time.perf_counter())

    config = DPOConfig(
        output_dir=str(work / "trl-out"),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        learning_rate=LR,
        lr_scheduler_type="cosine",
        warmup_steps=WARMUP,
        max_grad_norm=1.0,
        beta=BETA,
        optim="adamw_torch",
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        precompute_ref_log_probs=True,
        report_to="none",
        save_strategy="no",
        logging_steps=10,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    baseline = _rss_mb()
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[StepClock()],
    )
    trainer.train()
    # Same token count as sppd's (its tokenization, without TRL's extra EOS).
    total = sum(
        2 * (1 + len(f"Q: {r.prompt}\n{r.initial_reason_steps}"))
        + len(row["chosen"])
        + len(row["rejected"])
        + r.chosen_terminal
        + r.rejected_terminal
        for r, row in zip(records, rows)
    )
    return {
        "tokens_per_s": _rate(total, len(step_ends), step_ends),
        "steps": len(step_ends),
        "tokens": total,
        "baseline_mb": baseline,
        "final_loss": trainer.state.log_history[-1].get("train_loss"),
    }


def worker_main(impl: str, work: Path, args) -> None:
    if impl == "trl":
        result = worker_trl(work, args)
    else:
        result = worker_sppd(work, args, prefix_sharing=impl == "sppd")
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print("RESULT " + json.dumps(result), flush=True)


# --- driver -----------------------------------------------------------------------------------


def run_worker(impl: str, work: Path, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        impl,
        "--work",
        str(work),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{impl} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    # One thread by default: on a shared or busy machine, 2-thread OpenMP runs slow down erratically
    # (oversubscription), which hits whichever implementation is running; the ratio is stabler.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.work, args)
        return
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-step-dpo-") as tmp:
        work = Path(tmp)
        stats = prepare(work, args.pairs)
        best: dict[str, dict] = {}
        for _ in range(args.rounds):
            for impl in IMPLEMENTATIONS:
                result = run_worker(impl, work, args)
                if impl not in best or result["tokens_per_s"] > best[impl]["tokens_per_s"]:
                    best[impl] = result
    # Same work on both sides: same pairs, same number of optimizer steps, same token count.
    assert len({best[i]["tokens"] for i in IMPLEMENTATIONS}) == 1, {i: best[i]["tokens"] for i in best}
    assert len({best[i]["steps"] for i in IMPLEMENTATIONS}) == 1, {i: best[i]["steps"] for i in best}
    print(
        f"model: toy Llama {stats['params'] / 1e6:.2f}M params, fp32, CPU threads={args.threads}; "
        f"{stats['pairs']} step pairs, batch {args.batch_size}, {best['sppd']['steps']} steps, "
        f"{best['sppd']['tokens']} unshared tokens per epoch; best of {args.rounds} round(s)"
    )
    trl_rate = best["trl"]["tokens_per_s"]
    print(f"{'implementation':>15} {'tokens/s':>10} {'vs TRL':>7} {'peak RSS MB':>12} {'RSS growth MB':>14}")
    for impl in IMPLEMENTATIONS:
        r = best[impl]
        print(
            f"{impl:>15} {r['tokens_per_s']:10,.0f} {r['tokens_per_s'] / trl_rate:6.2f}x "
            f"{r['peak_mb']:12.0f} {r['peak_mb'] - r['baseline_mb']:14.0f}"
        )
    ratio = best["sppd"]["tokens_per_s"] / trl_rate
    print(f"ratio sppd/TRL: {ratio:.2f}x (goal >= 1.5x); total {time.perf_counter() - start:.0f} s")
    result = {
        "name": "step-DPO training: sppd loop vs TRL DPOTrainer",
        "command": f"python benchmarks/bench_step_dpo_vs_trl.py --pairs {args.pairs} --batch-size {args.batch_size} "
        f"--rounds {args.rounds} --threads {args.threads}",
        "ratios": [
            {"what": "sppd step-DPO tokens/s / TRL DPOTrainer tokens/s", "value": round(ratio, 2), "goal": ">= 1.5"}
        ],
        "numbers": {
            f"{impl}_{key}": round(best[impl][key]) for impl in IMPLEMENTATIONS for key in ("tokens_per_s", "peak_mb")
        },
    }
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
