"""The learning-rate schedule of every trainer: linear warmup, then cosine decay to a floor.

It is a pure function of the step: the SFT/DPO loop (:mod:`sppd.train.loop`) and the toy
pretraining (:mod:`sppd.toy.pretrain`) set each optimizer step's learning rate from it instead
of keeping a scheduler object, so a resumed run (which restores the step) cannot drift from an
uninterrupted one, and there is no scheduler to step once per process (accelerate's prepared
schedulers step ``num_processes`` times per call). The toy PRM trainer keeps a constant rate.
"""

from __future__ import annotations

import math


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Number of warmup steps: ``ceil(ratio * total)``."""
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"warmup_ratio must lie in [0, 1], got {warmup_ratio}")
    return math.ceil(warmup_ratio * total_steps)


def cosine_lr(step: int, peak_lr: float, total_steps: int, warmup: int, min_lr_ratio: float = 0.0) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of a ``total_steps`` run.

    Warmup: ``peak * (step + 1) / warmup`` for ``step < warmup`` (the first step already moves;
    the last warmup step reaches the peak). Then cosine from the peak down towards
    ``peak * min_lr_ratio``: ``peak * (min + (1 - min) * (1 + cos(pi * p)) / 2`` with
    ``p = min(1, (step - warmup) / (total - warmup))``.
    """
    if step < warmup:
        # Evaluated left to right, (peak * (step + 1)) / warmup: the toy base models cached by
        # config hash were trained with exactly these bits (peak * ((step + 1) / warmup) can
        # differ in the last bit).
        return peak_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return peak_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)


def lr_at(step: int, peak_lr: float, total_steps: int, warmup_ratio: float, min_lr_ratio: float = 0.0) -> float:
    """:func:`cosine_lr` with the warmup given as a share of the steps (``TrainConfig.warmup_ratio``)."""
    return cosine_lr(step, peak_lr, total_steps, warmup_steps(total_steps, warmup_ratio), min_lr_ratio)
