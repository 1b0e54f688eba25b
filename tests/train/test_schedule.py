"""The one learning-rate schedule: hand-derived values, and the exact bits of the two schedules
it replaced (the toy pretraining's, whose base models are cached by config hash, and the
SFT/DPO loop's)."""

from __future__ import annotations

import math

import pytest

from sppd.toy.pretrain import ToyPretrainConfig
from sppd.train.schedule import cosine_lr, lr_at, warmup_steps


def old_toy_lr(step: int, cfg: ToyPretrainConfig) -> float:
    """``sppd.toy.pretrain.lr_at`` before the schedules were merged, verbatim."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def old_train_lr(step: int, peak: float, total: int, ratio: float, min_ratio: float = 0.0) -> float:
    """``sppd.train.schedule.lr_at`` before the merge: ``peak * factor``."""
    warmup = math.ceil(ratio * total)
    if step < warmup:
        return peak * ((step + 1) / warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def test_warmup_2_total_10_by_hand():
    # Warmup 1/2, 2/2; then 0.1 + 0.9 * (1 + cos(pi * k / 8)) / 2 for k = 0..7, then the floor.
    lrs = [cosine_lr(s, 1.0, 10, 2, 0.1) for s in range(12)]
    hand = [0.5, 1.0, 1.0, 0.96574579, 0.86819805, 0.72220754, 0.55, 0.37779246, 0.23180195, 0.13425421, 0.1, 0.1]
    assert lrs == pytest.approx(hand, abs=1e-8)
    assert [lr_at(s, 1.0, 10, 0.2, 0.1) for s in range(12)] == lrs  # ratio 0.2 of 10 = 2 warmup steps
    assert warmup_steps(10, 0.25) == 3  # rounded up
    with pytest.raises(ValueError, match="warmup_ratio"):
        warmup_steps(10, 1.5)


@pytest.mark.parametrize(
    "cfg",
    [
        ToyPretrainConfig(),  # the toy config: lr 1.5e-3, warmup 50 of 1200, floor 0.1
        ToyPretrainConfig(steps=30),  # toy-tiny: all warmup
        ToyPretrainConfig(lr=3e-3, warmup_steps=1, steps=4),  # the tests' tiny pretraining
    ],
)
def test_toy_pretraining_lrs_are_bit_identical_to_the_old_schedule(cfg):
    # Rounding (peak * (s + 1)) / w and peak * ((s + 1) / w) differ in the last bit for 18 of the
    # toy config's 50 warmup steps; the toy's order is kept so cached base models stay valid.
    new = [cosine_lr(s, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio) for s in range(cfg.steps + 1)]
    assert new == [old_toy_lr(s, cfg) for s in range(cfg.steps + 1)]


@pytest.mark.parametrize("peak,total,ratio", [(1e-3, 43, 0.1), (1e-2, 22, 0.1), (5e-6, 400, 0.03), (1.0, 10, 0.2)])
def test_train_loop_lrs_match_the_old_schedule(peak, total, ratio):
    warmup = warmup_steps(total, ratio)
    for s in range(total):
        new, old = lr_at(s, peak, total, ratio, 0.1), old_train_lr(s, peak, total, ratio, 0.1)
        if s < warmup:  # at most one unit in the last place (float32 parameters never see it)
            assert abs(new - old) <= math.ulp(old)
        else:
            assert new == old
