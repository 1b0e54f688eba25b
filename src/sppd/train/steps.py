"""The optimizer-step core of every trainer: SFT/DPO (:mod:`sppd.train.loop`), toy pretraining
(:mod:`sppd.toy.pretrain`) and the toy PRM (:mod:`sppd.prm.toy`).

:func:`run_steps` takes a model, an optimizer, the steps (each one :class:`Step`: this process's
micro-batches and the step's total loss weight) and a loss callback. For every step it sets the
learning rate from the schedule (:mod:`sppd.train.schedule`), runs forward (the callback) and
backward on each micro-batch, clips the gradient norm, steps the optimizer, and hands the summed
metrics, learning rate and gradient norm (:class:`StepResult`) to ``on_step``: the caller's hook
that logs, evaluates, checkpoints, or stops the run by returning True. Resuming is the caller's
part (restore the states, then pass ``start_step`` and the remaining steps).

The update of a step is the gradient of ``(sum of the callback's losses) / weight`` for any
number of micro-batches and processes. ``backend`` is an ``accelerate.Accelerator`` (the SFT/DPO
loop) or a :class:`LocalBackend` (one process, plain ``backward``), which keeps the same contract
without wrapping the model or optimizer.

Nothing here draws random numbers, so a trainer's results do not depend on running through it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# micro-batch -> (loss to differentiate, metrics to sum over the step's micro-batches)
LossFn = Callable[[Any], tuple[torch.Tensor, dict[str, Any]]]


@dataclass(frozen=True)
class Step:
    """One optimizer step's work on this process."""

    micro_batches: Sequence[Any]  # as many as the backend's gradient_accumulation_steps
    weight: float = 1.0  # total loss weight of the step over all processes (1: the loss is a mean)


@dataclass(frozen=True)
class StepResult:
    """What ``on_step`` sees after an optimizer step (local to this process)."""

    step: int  # 0-based index of the step just taken
    lr: float | None  # None: the optimizer's own learning rate (no schedule)
    grad_norm: float  # before clipping
    sums: dict[str, Any]  # the loss callback's metrics, summed over the micro-batches
    weight: float


class LocalBackend:
    """The part of accelerate's ``Accelerator`` that :func:`run_steps` uses, for one process and
    unwrapped modules: plain ``backward`` (divided by the accumulation steps, as accelerate
    does), torch's gradient clipping, and gradient sync on every accumulation boundary."""

    num_processes = 1

    def __init__(self, gradient_accumulation_steps: int = 1) -> None:
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.sync_gradients = True
        self._micro = 0

    @contextlib.contextmanager
    def accumulate(self, model: torch.nn.Module):
        self._micro += 1
        self.sync_gradients = self._micro % self.gradient_accumulation_steps == 0
        yield

    def backward(self, loss: torch.Tensor) -> None:
        if self.gradient_accumulation_steps > 1:
            loss = loss / self.gradient_accumulation_steps
        loss.backward()

    def clip_grad_norm_(self, parameters, max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)


def _add_metrics(sums: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Tensors are summed as float32 tensors (one reduce per step), numbers keep their type."""
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().float()
        sums[name] = sums.get(name, 0) + value


def take_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    step: Step,
    lr: float | None,
    backend: Any,
    max_grad_norm: float = math.inf,
) -> tuple[dict[str, Any], float]:
    """Forward/backward every micro-batch of ``step``, clip, step; returns (metric sums, grad norm)."""
    if len(step.micro_batches) != backend.gradient_accumulation_steps:
        raise ValueError(
            f"a step has {len(step.micro_batches)} micro-batches but the backend accumulates "
            f"{backend.gradient_accumulation_steps}"
        )
    # backend.backward divides by the accumulation steps and DDP averages over processes; undo
    # both so the update is the gradient of (sum of the step's losses) / (step's total weight).
    scale = backend.num_processes * backend.gradient_accumulation_steps / step.weight
    if lr is not None:
        # Set before any backward: under DeepSpeed the optimizer steps inside the last backward.
        for group in optimizer.param_groups:
            group["lr"] = lr
    sums: dict[str, Any] = {}
    grad_norm = float("nan")
    for micro in step.micro_batches:
        with backend.accumulate(model):
            loss, metrics = loss_fn(micro)
            backend.backward(loss * scale)
            _add_metrics(sums, metrics)
            if backend.sync_gradients:
                norm = backend.clip_grad_norm_(model.parameters(), max_grad_norm)
                grad_norm = float(norm) if norm is not None else float("nan")
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
    return sums, grad_norm


def run_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: Iterable[Step],
    loss_fn: LossFn,
    *,
    schedule: Callable[[int], float] | None = None,
    max_grad_norm: float = math.inf,
    backend: Any = None,
    start_step: int = 0,
    on_step: Callable[[StepResult], bool | None] | None = None,
    bar: Any = None,
) -> int:
    """Take the optimizer steps of ``steps`` (numbered from ``start_step``); returns the number
    done (``start_step`` included). ``schedule``: learning rate of a 0-based step, or None to
    keep the optimizer's. ``on_step`` returning True ends the run after that step; ``bar``, a
    tqdm-like progress bar, advances once per step (after ``on_step``, which may set its postfix)."""
    backend = backend if backend is not None else LocalBackend()
    model.train()
    done = start_step
    for index, step in enumerate(steps, start=start_step):
        lr = schedule(index) if schedule is not None else None
        sums, grad_norm = take_step(model, optimizer, loss_fn, step, lr, backend, max_grad_norm)
        done = index + 1
        stop = on_step(StepResult(index, lr, grad_norm, sums, step.weight)) if on_step is not None else False
        if bar is not None:
            bar.update(1)
        if stop:
            break
    return done
