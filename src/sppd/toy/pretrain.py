"""Pretraining of the toy base model on the generated (deliberately noisy) arithmetic corpus.

``run_pretrain`` builds the corpus, trains the toy Llama with AdamW in fp32 on CPU (the shared
step core :func:`sppd.train.steps.run_steps` and schedule :func:`sppd.train.schedule.cosine_lr`),
evaluates greedy accuracy on a fixed held-out test subset as it goes, and writes an HF model
folder with the tokenizer, ``curve.jsonl``, ``curve.png`` and ``pretrain.json``. ``cached_base_model``
returns such a folder for a config, copying the package's shipped checkpoint (:mod:`sppd.toy.shipped`)
or else training it only when no complete one exists.

It shares the optimizer-step core with the SFT/DPO loop but not that loop's outer part
(:func:`sppd.train.loop.train_loop`): its data order (a torch-seeded permutation per epoch,
tail dropped) differs from the ``random.Random`` refill order the cached base models were
trained on, so it would change every cached model, and its accelerate checkpoints buy nothing
here: a killed pretraining restarts from scratch in a fresh temporary folder (see
``cached_base_model``), which costs minutes.

The loss covers the solution tokens and the final EOS only: question characters are uniform
random draws, so their loss is irreducible noise that would dominate the reported loss and
spend capacity, while the model is only ever used conditioned on a question.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sppd.digest import digest, output_values
from sppd.records import Problem
from sppd.toy.checker import check_answer
from sppd.toy.config import ToyPretrainConfig, ToyWorldConfig
from sppd.toy.model import build_toy_model, count_parameters
from sppd.toy.shipped import copy_checkpoint, shipped_checkpoint
from sppd.toy.tokenizer import build_toy_tokenizer
from sppd.toy.world import corpus_text, generate_problems, prompt_text, sample_questions
from sppd.train.schedule import cosine_lr
from sppd.train.steps import Step, StepResult, run_steps

COMPLETE_MARKER = "COMPLETE"
IGNORE_INDEX = -100
# (section, field) of ToyPretrainConfig added after the base-model hash was fixed: left out at their default
ADDED_LATER = (("world", "error_model"), ("world", "corrupt_medium_rate"), ("world", "terse_rate"))


def config_hash(cfg: ToyPretrainConfig) -> str:
    """Short stable hash of the fields that affect the model (the cache key).

    Unlike a stage fingerprint it keeps default values, and it keeps json.dumps' default
    separators: the hash names every cached base model, so its text must not change. Fields added
    after the hash was fixed (``ADDED_LATER``) enter it only when set away from their default.
    """
    values = output_values(cfg)
    for section, name in ADDED_LATER:
        if values[section][name] == getattr(getattr(ToyPretrainConfig(), section), name):
            del values[section][name]
    return digest(values, length=12, separators=(", ", ": "))


def max_new_tokens_for(world: ToyWorldConfig) -> int:
    """Generation budget covering a full solution: ~40 characters per step line."""
    return 40 * (world.max_ops + 1)


# --- corpus and batches ----------------------------------------------------------------------


def build_corpus(cfg: ToyPretrainConfig, tokenizer) -> tuple[list[list[int]], list[int], float]:
    """``(token id lists, prompt lengths, clean fraction)``; each example is
    ``<bos> prompt solution <eos>``."""
    questions = sample_questions(cfg.world, "train", cfg.n_train_problems, cfg.seed, unique=False)
    rng = random.Random(f"toy-corpus-{cfg.seed}")
    examples, prompt_lens, n_clean = [], [], 0
    for q in questions:
        text, clean = corpus_text(q, cfg.world, rng)
        n_clean += clean
        prompt_len = len(tokenizer(prompt_text(q))["input_ids"])
        examples.append(tokenizer(text)["input_ids"] + [tokenizer.eos_token_id])
        prompt_lens.append(prompt_len)
    return examples, prompt_lens, n_clean / max(1, len(questions))


def collate(examples: list[list[int]], prompt_lens: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask``/``labels``, each ``(B, T)``; labels are
    ``IGNORE_INDEX`` on prompt and padding tokens."""
    width = max(len(e) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(zip(examples, prompt_lens)):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# --- evaluation ------------------------------------------------------------------------------


@torch.no_grad()
def generate_solutions(model, tokenizer, questions: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
    """One greedy completion per question, special tokens removed.

    Batched ``generate`` with left padding; the decoded text starts right after the prompt.
    """
    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    texts: list[str] = []
    for start in range(0, len(questions), batch_size):
        prompts = [prompt_text(q) for q in questions[start : start + batch_size]]
        batch = tokenizer(prompts, padding=True, return_tensors="pt")
        out_ids = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_ids = out_ids[:, batch["input_ids"].shape[1] :]
        texts.extend(tokenizer.batch_decode(new_ids, skip_special_tokens=True))
    model.train(was_training)
    tokenizer.padding_side = padding_side
    return texts


def greedy_accuracy(
    model, tokenizer, problems: list[Problem], batch_size: int = 100, max_new_tokens: int = 200
) -> float:
    """Fraction of ``problems`` whose greedy solution's boxed answer equals the gold answer."""
    if not problems:
        return 0.0
    texts = generate_solutions(model, tokenizer, [p.question for p in problems], batch_size, max_new_tokens)
    return sum(check_answer(p.gold, t) for p, t in zip(problems, texts)) / len(problems)


# --- training --------------------------------------------------------------------------------


def _plot_curve(curve: list[dict], path: Path) -> None:
    """Greedy accuracy and loss against minutes, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    minutes = [c["minutes"] for c in curve]
    ax_acc.plot(minutes, [c["greedy_acc"] for c in curve], marker="o")
    ax_acc.set(xlabel="minutes", ylabel="greedy accuracy (held-out test)", ylim=(0, 1))
    ax_loss.plot(minutes, [c["loss"] for c in curve], marker="o", color="tab:red")
    ax_loss.set(xlabel="minutes", ylabel="train loss (solution tokens)")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _steps(cfg: ToyPretrainConfig, n_examples: int) -> Iterator[Step]:
    """``cfg.steps`` batches of example indices: a seeded shuffle of the corpus, reshuffled when
    fewer than a batch remain (the leftover examples go first)."""
    order_rng = random.Random(f"toy-order-{cfg.seed}")
    order: list[int] = []
    for _ in range(cfg.steps):
        if len(order) < cfg.batch_size:
            fresh = list(range(n_examples))
            order_rng.shuffle(fresh)
            order += fresh
        picked, order = order[: cfg.batch_size], order[cfg.batch_size :]
        yield Step([picked])


class _Curve:
    """The ``on_step`` hook: loss EMA, tokens, periodic greedy accuracy (``curve.jsonl``), the
    progress bar's postfix, and the wall-time stop."""

    def __init__(self, cfg: ToyPretrainConfig, model, tokenizer, out_dir: Path, bar) -> None:
        self.cfg, self.model, self.tokenizer, self.out_dir, self.bar = cfg, model, tokenizer, out_dir, bar
        self.eval_problems = generate_problems(cfg.world, "test", cfg.n_eval, cfg.eval_seed)
        self.max_new = max_new_tokens_for(cfg.world)
        self.entries: list[dict] = []
        self.tokens, self.loss_ema, self.eval_seconds, self.start = 0, None, 0.0, time.perf_counter()

    def __call__(self, result: StepResult) -> bool:
        cfg, step = self.cfg, result.step + 1
        loss = result.sums["loss"].item()
        self.tokens += result.sums["tokens"]
        self.loss_ema = loss if self.loss_ema is None else 0.95 * self.loss_ema + 0.05 * loss
        minutes = (time.perf_counter() - self.start) / 60
        out_of_time = minutes >= cfg.max_minutes
        entry = {"step": step, "tokens": self.tokens, "minutes": round(minutes, 3), "loss": round(self.loss_ema, 4)}
        if step == cfg.steps or out_of_time or (cfg.eval_every > 0 and step % cfg.eval_every == 0):
            eval_start = time.perf_counter()
            entry["greedy_acc"] = greedy_accuracy(
                self.model, self.tokenizer, self.eval_problems, cfg.eval_batch_size, self.max_new
            )
            self.eval_seconds += time.perf_counter() - eval_start
            self.entries.append(entry)
            with open(self.out_dir / "curve.jsonl", "a") as fh:
                fh.write(json.dumps(entry) + "\n")
        train_seconds = max(1e-9, time.perf_counter() - self.start - self.eval_seconds)
        self.bar.set_postfix(
            loss=f"{self.loss_ema:.3f}",
            tok_s=f"{self.tokens / train_seconds:.0f}",
            acc=f"{self.entries[-1]['greedy_acc']:.2f}" if self.entries else "-",
        )
        return out_of_time


def _train(cfg: ToyPretrainConfig, model, tokenizer, out_dir: Path, progress: bool) -> tuple[list[dict], float, float]:
    """The optimisation loop (:func:`sppd.train.steps.run_steps`); returns the curve, the wall
    time in minutes and the corpus' clean fraction."""
    examples, prompt_lens, clean_frac = build_corpus(cfg, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)

    def loss_fn(picked: list[int]) -> tuple[torch.Tensor, dict]:
        batch = collate([examples[i] for i in picked], [prompt_lens[i] for i in picked], tokenizer.pad_token_id)
        loss = model(**batch).loss
        return loss, {"loss": loss, "tokens": int(batch["attention_mask"].sum())}

    bar = tqdm(total=cfg.steps, desc="toy pretrain", disable=not progress, dynamic_ncols=True)
    curve = _Curve(cfg, model, tokenizer, out_dir, bar)
    run_steps(
        model,
        optimizer,
        _steps(cfg, len(examples)),
        loss_fn,
        schedule=lambda step: cosine_lr(step, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio),
        max_grad_norm=cfg.grad_clip,
        on_step=curve,
        bar=bar,
    )
    bar.close()
    return curve.entries, (time.perf_counter() - curve.start) / 60, clean_frac


def run_pretrain(cfg: ToyPretrainConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Pretrain a toy base model into ``out_dir`` and return the summary written to
    ``pretrain.json`` (config, final greedy accuracy, wall time, curve)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "curve.jsonl").unlink(missing_ok=True)
    torch.set_num_threads(cfg.num_threads or os.cpu_count() or 1)
    tokenizer = build_toy_tokenizer()
    model = build_toy_model(cfg.model, tokenizer)
    curve, minutes, clean_frac = _train(cfg, model, tokenizer, out_dir, progress)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _plot_curve(curve, out_dir / "curve.png")
    summary = {
        "config": asdict(cfg),
        "config_hash": config_hash(cfg),
        "n_parameters": count_parameters(model),
        "final_greedy_acc": curve[-1]["greedy_acc"],
        "steps_done": curve[-1]["step"],
        "wall_minutes": round(minutes, 3),
        "corpus_clean_fraction": round(clean_frac, 4),
        "curve": curve,
    }
    (out_dir / "pretrain.json").write_text(json.dumps(summary, indent=2))
    return summary


def _remove_stale_tmp(cache_root: Path, name: str) -> None:
    """Delete temporary folders for ``name`` left by killed processes (their pid is gone)."""
    for tmp in cache_root.glob(f".tmp-{name}-*"):
        try:
            os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, owned by someone else
            pass


def cached_base_model(
    cfg: ToyPretrainConfig, cache_root: str | Path, progress: bool = True, use_shipped: bool = True
) -> Path:
    """Folder of the base model for ``cfg`` under ``cache_root``, made only if missing.

    The folder is keyed by ``config_hash(cfg)`` and counts as complete once its marker file
    exists; the marker is written last, and the folder is made in a private temporary folder
    that is renamed into place, so a killed run never leaves a folder that looks complete.
    A missing folder is copied from the package's shipped checkpoint of that hash when there is
    one (and ``use_shipped``), else pretrained.
    """
    cache_root = Path(cache_root)
    final = cache_root / f"toy-base-{config_hash(cfg)}"
    if (final / COMPLETE_MARKER).exists():
        return final
    _remove_stale_tmp(cache_root, final.name)
    tmp = cache_root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    source = shipped_checkpoint(final.name) if use_shipped else None
    if source is not None:
        cache_root.mkdir(parents=True, exist_ok=True)
        copy_checkpoint(source, tmp)
        print(
            f"sppd: using the shipped toy base model {source.name} (no pretraining); "
            "`sppd toy pretrain --verify` with this config retrains it and compares",
            file=sys.stderr,
        )
    else:
        run_pretrain(cfg, tmp, progress=progress)
    (tmp / COMPLETE_MARKER).write_text(config_hash(cfg) + "\n")
    if (final / COMPLETE_MARKER).exists():  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return final
    shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover
    os.replace(tmp, final)
    return final
