"""The one training loop for every objective (SFT, DPO, step-DPO), built on ``accelerate``.

What it guarantees, and how:

* **Exact gradient accumulation and data parallelism.** Optimizer step ``s`` always trains on
  the same global slice of a seeded permutation (:class:`StepPlan`), cut into
  ``processes x grad_accum`` micro-batches. Each micro-batch's ``loss_sum`` (see
  :mod:`sppd.train.objectives`) is divided by the total weight of the whole step, so batch 4 x
  accum 1, batch 2 x accum 2 and 2 processes x batch 2 take the same step up to float rounding.
* **Resume = uninterrupted.** Checkpoints hold the model, optimizer and RNG states
  (``accelerator.save_state``) plus the step number, which is the whole data position and the
  whole learning-rate schedule (:mod:`sppd.train.schedule`).
* **Logging.** ``metrics.jsonl`` (one line per ``log_every`` steps: loss, lr, grad_norm before
  clipping, tokens/s; for preference objectives the rewards and the mean change of the chosen and
  rejected log-probs against the reference; ``l2_from_start`` every ``l2_every`` steps and at the
  last, see :mod:`sppd.train.drift`), the configured accelerate trackers and a tqdm bar.

The model, optimizer and reference log-probs arrive ready (see :mod:`sppd.stages.train`); the
loop only runs steps. The optimizer step itself (schedule, forward/backward per micro-batch,
clipping) is :func:`sppd.train.steps.run_steps`, shared with the toy pretraining and the toy PRM
trainer; this module adds what the SFT/DPO runs need on top: the step plan, the reference
log-probs, checkpoints and resume, and the metrics log.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sppd.io import atomic_write_json
from sppd.runtime import derive_seed, progress
from sppd.settings import TrainConfig
from sppd.train.drift import l2_distance
from sppd.train.objectives import ObjectiveSpec
from sppd.train.ref_cache import RefLogps
from sppd.train.schedule import lr_at
from sppd.train.steps import Step, StepResult, run_steps
from sppd.types import OptimizerName

CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class StepPlan:
    """Which examples each optimizer step trains on; a pure function of (n, sizes, seed).

    ``global_batch = batch_size * grad_accum * processes``. An epoch is a seeded permutation cut
    into global batches; a last partial batch is kept when every micro-batch of the step gets at
    least one example, else its examples are skipped that epoch (``tail_skipped``).
    """

    n_examples: int
    global_batch: int
    min_step_examples: int  # processes * grad_accum
    steps_per_epoch: int
    total_steps: int
    seed: int

    def step_indices(self, step: int) -> list[int]:
        """Global example indices of optimizer step ``step`` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = _epoch_order(self.seed, self.n_examples, epoch)
        return list(order[k * self.global_batch : (k + 1) * self.global_batch])

    @property
    def tail_skipped(self) -> int:
        return self.n_examples - min(self.n_examples, self.steps_per_epoch * self.global_batch)


@functools.lru_cache(maxsize=2)
def _epoch_order(seed: int, n_examples: int, epoch: int) -> tuple[int, ...]:
    """The seeded permutation of epoch ``epoch`` (independent of any global RNG state)."""
    g = torch.Generator().manual_seed(derive_seed(seed, "train-order", epoch))
    return tuple(torch.randperm(n_examples, generator=g).tolist())


def make_plan(n_examples: int, cfg: TrainConfig, processes: int) -> StepPlan:
    """The step plan for ``cfg.epochs`` (or ``cfg.max_steps``, cycling epochs) on ``n_examples``."""
    global_batch = cfg.batch_size * cfg.grad_accum * processes
    min_step = cfg.grad_accum * processes
    full, tail = divmod(n_examples, global_batch)
    steps_per_epoch = full + (1 if tail >= min_step else 0)
    if steps_per_epoch == 0:
        raise ValueError(
            f"{n_examples} examples cannot fill one optimizer step of {processes} process(es) x "
            f"grad_accum {cfg.grad_accum} micro-batches"
        )
    total = cfg.max_steps if cfg.max_steps > 0 else steps_per_epoch * cfg.epochs
    return StepPlan(n_examples, global_batch, min_step, steps_per_epoch, total, cfg.seed)


def split_step(indices: list[int], rank: int, processes: int, grad_accum: int) -> list[list[int]]:
    """This process's ``grad_accum`` micro-batches of a step: near-equal, non-empty chunks."""
    n_chunks = processes * grad_accum
    base, extra = divmod(len(indices), n_chunks)
    bounds, start = [], 0
    for c in range(n_chunks):
        end = start + base + (1 if c < extra else 0)
        bounds.append((start, end))
        start = end
    return [indices[a:b] for a, b in bounds[rank * grad_accum : (rank + 1) * grad_accum]]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over the trainable parameters (lr is set every step from the schedule)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == OptimizerName.SGD:
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def deepspeed_settings(cfg: TrainConfig) -> dict:
    """The DeepSpeed config keys the train stage sets on accelerate's DeepSpeed plugin.

    * ``train_micro_batch_size_per_gpu``: no dataloader goes through ``accelerate.prepare``.
    * ``gradient_clipping`` always, 0 included: left unset ("auto"), accelerate fills 1.0 and
      DeepSpeed's own default is 1.0 too, so ``max_grad_norm: 0`` would still clip under ZeRO.
    * ``zero_allow_untested_optimizer``: DeepSpeed refuses torch's SGD (paper: DPO and step-DPO)
      under ZeRO without it. accelerate >= 1.0 sets it when handed a torch optimizer; set here so
      the config says so whatever accelerate does.
    """
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_clipping": max(cfg.max_grad_norm, 0.0),
        "zero_allow_untested_optimizer": True,
    }


def prepare_for_training(model: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    """Dropout off (so the policy at step 0 equals the reference), no KV cache, optional
    gradient checkpointing."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):  # HF attention: a float, not a module
            module.attention_dropout = 0.0
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.train()


# --- checkpoints ------------------------------------------------------------------------------


def latest_checkpoint(out_dir: Path) -> tuple[Path, int] | None:
    """Newest complete checkpoint (its ``trainer_state.json`` is written last) and its step."""
    found = []
    for path in (out_dir / CHECKPOINTS).glob("step-*"):
        state = path / "trainer_state.json"
        if state.exists():
            found.append((json.loads(state.read_text())["step"], path))
    if not found:
        return None
    step, path = max(found)
    return path, step


def save_checkpoint(accelerator, out_dir: Path, step: int, tokens: int = 0) -> Path:
    """Model, optimizer, RNG states, step and tokens trained on so far; older checkpoints are
    removed afterwards."""
    path = out_dir / CHECKPOINTS / f"step-{step:08d}"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(path / "trainer_state.json", {"step": step, "tokens": tokens})
        for old in (out_dir / CHECKPOINTS).glob("step-*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines written after the checkpoint a resumed run restarts from."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= last_step]
    path.write_text("".join(line + "\n" for line in kept))


# --- the loop ---------------------------------------------------------------------------------


@dataclass
class LoopInputs:
    """What :func:`train_loop` runs on. ``model`` and ``optimizer`` are already prepared by the
    accelerator; ``ref`` holds the cached reference log-probs of ``examples`` (or None);
    ``start``: the init model folder ``l2_from_start`` is measured from (None: not measured)."""

    accelerator: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    spec: ObjectiveSpec
    examples: list
    ref: RefLogps | None
    cfg: TrainConfig
    out_dir: Path
    pad_id: int
    start: Path | None = None


def _loss_fn(inp: LoopInputs):
    """The loss callback of :func:`sppd.train.steps.run_steps`: a micro-batch of example indices
    -> (weighted loss sum, metric sums), reference log-probs taken from the cache."""
    cfg = inp.cfg

    def loss(micro: list[int]) -> tuple[torch.Tensor, dict]:
        batch = inp.spec.collate([inp.examples[i] for i in micro], inp.pad_id, cfg.prefix_sharing)
        ref_metrics = {}
        if inp.ref is not None:
            ref_chosen, ref_rejected = inp.ref.take(micro)
            batch = batch.with_ref(ref_chosen, ref_rejected)
            ref_metrics = {"ref_logps/chosen": ref_chosen.sum(), "ref_logps/rejected": ref_rejected.sum()}
        batch = batch.to(inp.accelerator.device)
        out = inp.spec.loss(inp.model, batch, cfg)
        metrics = {"loss_sum": out.loss_sum, **out.metric_sums, **ref_metrics, "examples": float(len(micro))}
        return out.loss_sum, {**metrics, "tokens": float(batch.n_tokens)}

    return loss


def _steps(inp: LoopInputs, plan: StepPlan, start_step: int):
    """This process's micro-batches and the total weight of each step from ``start_step`` on."""
    acc = inp.accelerator
    for step in range(start_step, plan.total_steps):
        indices = plan.step_indices(step)
        weight = sum(inp.spec.weight(inp.examples[i]) for i in indices)
        yield Step(split_step(indices, acc.process_index, acc.num_processes, inp.cfg.grad_accum), weight)


def _reduce(acc, sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """Sum every metric over processes in one collective (same keys on every rank)."""
    names = sorted(sums)
    stacked = torch.stack([torch.as_tensor(sums[n], dtype=torch.float32, device=acc.device) for n in names])
    if acc.num_processes > 1:
        stacked = acc.reduce(stacked, reduction="sum")
    return dict(zip(names, stacked.tolist()))


def _step_record(
    step: int, plan: StepPlan, totals: dict[str, float], denominator: float, lr: float, grad_norm: float
) -> dict:
    record = {
        "step": step + 1,
        "epoch": round((step + 1) / plan.steps_per_epoch, 4),
        "loss": totals["loss_sum"] / denominator,
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens": int(totals["tokens"]),
        "examples": int(totals["examples"]),
    }
    for name, value in totals.items():
        if name not in ("loss_sum", "tokens", "examples") and not name.startswith("ref_logps/"):
            record[name] = value / totals["examples"]  # per-example means
    for side in ("chosen", "rejected"):  # mean log-prob change against the reference (= rewards / beta)
        if f"ref_logps/{side}" in totals and f"logps/{side}" in totals:
            change = totals[f"logps/{side}"] - totals[f"ref_logps/{side}"]
            record[f"logps/{side}_change"] = change / totals["examples"]
    return record


def l2_from_start(inp: LoopInputs) -> float | None:
    """L2 distance of the model's parameters from ``inp.start``'s; None when not measured here.

    Under ZeRO-3 each rank holds shards only: the train stage measures the saved model instead."""
    if inp.start is None:
        return None
    params = list(inp.accelerator.unwrap_model(inp.model).named_parameters())
    if any(hasattr(p, "ds_id") for _, p in params):
        return None
    return l2_distance(params, inp.start)


class _MetricsLog:
    """Writes step records (main process: ``metrics.jsonl``, trackers, progress bar); measures
    tokens/s over each logging interval."""

    def __init__(self, inp: LoopInputs, plan: StepPlan, start_step: int):
        self.acc, self.cfg, self.total = inp.accelerator, inp.cfg, plan.total_steps
        self.path = inp.out_dir / METRICS
        main = self.acc.is_main_process
        if main:
            _trim_metrics(self.path, start_step)
        self.bar = progress(plan.total_steps, f"train {inp.spec.name}", "step", initial=start_step) if main else None
        self.t_start = self.t_log = time.perf_counter()
        self.tokens_since_log = self.tokens_total = 0

    def record(self, row: dict) -> None:
        self.tokens_since_log += row["tokens"]
        self.tokens_total += row["tokens"]
        if self.logs(row["step"]):
            now = time.perf_counter()
            row.update(tokens_per_s=self.tokens_since_log / max(now - self.t_log, 1e-9), elapsed_s=now - self.t_start)
            self.tokens_since_log, self.t_log = 0, now
            if self.acc.is_main_process:
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
            if self.cfg.trackers:
                self.acc.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])
        if self.bar is not None:  # run_steps advances it
            self.bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row.get('tokens_per_s', 0):.0f}")

    def logs(self, step: int) -> bool:
        """Whether step ``step`` (1-based) gets a metrics line."""
        return step % max(self.cfg.log_every, 1) == 0 or step == self.total

    def close(self) -> float:
        if self.bar is not None:
            self.bar.close()
        return time.perf_counter() - self.t_start


def train_loop(inp: LoopInputs, stop_after: int | None = None) -> dict:
    """Run (or resume from the latest checkpoint) training to the plan's last step; returns a
    summary. ``stop_after``: return once that many steps are done (after checkpointing if due),
    as a kill would; for resume tests."""
    acc, cfg = inp.accelerator, inp.cfg
    plan = make_plan(len(inp.examples), cfg, acc.num_processes)
    start_step, resumed_from, tokens_before = 0, None, 0
    found = latest_checkpoint(inp.out_dir)
    if found is not None:
        resumed_from, start_step = str(found[0]), found[1]
        acc.load_state(str(found[0]))
        # the summary counts every token trained on, before the resume too (the pipeline sizes
        # the continued-pretraining control from it)
        tokens_before = int(json.loads((found[0] / "trainer_state.json").read_text()).get("tokens", 0))
    log = _MetricsLog(inp, plan, start_step)
    last: dict = {}

    def on_step(result: StepResult) -> bool:
        nonlocal last
        last = _step_record(result.step, plan, _reduce(acc, result.sums), result.weight, result.lr, result.grad_norm)
        if not math.isfinite(last["loss"]):
            raise FloatingPointError(f"training loss is {last['loss']} at step {result.step + 1}")
        done = result.step + 1
        due = done == plan.total_steps or (cfg.l2_every > 0 and done % cfg.l2_every == 0)
        if acc.is_main_process and due and log.logs(done):
            last["l2_from_start"] = l2_from_start(inp)
        log.record(last)
        if cfg.save_every > 0 and done % cfg.save_every == 0 and done < plan.total_steps:
            save_checkpoint(acc, inp.out_dir, done, tokens_before + log.tokens_total)
        return stop_after is not None and done >= stop_after

    run_steps(
        inp.model,
        inp.optimizer,
        _steps(inp, plan, start_step),
        _loss_fn(inp),
        schedule=lambda step: lr_at(step, cfg.lr, plan.total_steps, cfg.warmup_ratio, cfg.min_lr_ratio),
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"),
        backend=acc,
        start_step=start_step,
        on_step=on_step,
        bar=log.bar,
    )
    seconds = log.close()
    steps_done = last.get("step", start_step)
    return {
        "objective": str(inp.spec.name),
        "steps": steps_done,
        "total_steps": plan.total_steps,
        "complete": steps_done >= plan.total_steps,
        "resumed_from": resumed_from,
        "examples": plan.n_examples,
        "global_batch": plan.global_batch,
        "steps_per_epoch": plan.steps_per_epoch,
        "tail_skipped_per_epoch": plan.tail_skipped,
        "final_loss": last.get("loss"),
        "final_grad_norm": last.get("grad_norm"),  # before clipping
        "l2_from_start": last.get("l2_from_start"),
        "train_seconds": round(seconds, 3),
        "tokens": tokens_before + log.tokens_total,
        "tokens_this_run": log.tokens_total,
        "tokens_per_s": round(log.tokens_total / max(seconds, 1e-9), 1),
    }
