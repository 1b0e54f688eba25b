"""Learning-rate schedule: linear warmup then cosine decay to a floor, as a pure function of step.

The loop sets each optimizer step's learning rate from :func:`lr_at` instead of keeping a
scheduler object, so the schedule's whole state is the step number: a resumed run (which
restores the step) cannot drift from an uninterrupted one, and there is no scheduler to step
once per process (accelerate's prepared schedulers step ``num_processes`` times per call).
"""

from __future__ import annotations

import math


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Number of warmup steps: ``ceil(ratio * total)``."""
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"warmup_ratio must lie in [0, 1], got {warmup_ratio}")
    return math.ceil(warmup_ratio * total_steps)


def lr_factor(step: int, total_steps: int, warmup: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate for optimizer step ``step`` (0-based).

    Warmup: ``(step + 1) / warmup`` for ``step < warmup`` (the first step already moves; the
    last warmup step reaches the peak). Then cosine from 1 down towards ``min_lr_ratio``:
    ``min + (1 - min) * (1 + cos(pi * p)) / 2`` with ``p = (step - warmup) / (total - warmup)``.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return min_lr_ratio + (1.0 - min_lr_ratio) * cosine


def lr_at(step: int, peak_lr: float, total_steps: int, warmup_ratio: float, min_lr_ratio: float = 0.0) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of a ``total_steps`` run."""
    return peak_lr * lr_factor(step, total_steps, warmup_steps(total_steps, warmup_ratio), min_lr_ratio)
