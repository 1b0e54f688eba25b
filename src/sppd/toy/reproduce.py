"""Checks that a shipped toy base model is what pretraining its config produces.

:func:`verify` pretrains the config from scratch into a temporary folder (neither the cache nor
the shipped copy is read) and compares it with the shipped checkpoint tensor by tensor. On the
machine and torch build that made the checkpoint the weights are bitwise equal (pretraining is
seeded and runs with a fixed thread count); another CPU or build may drift by float rounding,
hence a tolerance. The greedy accuracies of both ``pretrain.json`` files are shown, not judged:
they follow from the weights.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sppd.errors import SppdError
from sppd.toy.config import ToyPretrainConfig
from sppd.toy.pretrain import config_hash, run_pretrain
from sppd.toy.shipped import SHIPPED_ENV, shipped_checkpoint, shipped_root


class NotReproduced(SppdError):
    """The fresh pretraining differs from the shipped checkpoint; the message names the tensor."""

    exit_code = 1  # a failed check, not bad input


@dataclass(frozen=True)
class Verification:
    """The comparison of a fresh pretraining with the shipped checkpoint of one config."""

    shipped: Path
    tolerance: float
    tensor_diffs: dict[str, float]  # tensor name -> max |fresh - shipped|; inf when missing or of another shape
    fresh_acc: float | None  # final greedy accuracy in each pretrain.json
    shipped_acc: float | None
    fresh_steps: int | None
    shipped_steps: int | None

    @property
    def failures(self) -> list[str]:
        """Tensor names beyond the tolerance, largest difference first."""
        bad = [n for n, d in self.tensor_diffs.items() if not d <= self.tolerance]
        return sorted(bad, key=lambda n: -self.tensor_diffs[n])

    @property
    def passed(self) -> bool:
        return bool(self.tensor_diffs) and not self.failures


def compare_weights(fresh: Path, shipped: Path) -> dict[str, float]:
    """Per-tensor max absolute difference between the ``model.safetensors`` of two folders.

    A tensor present in only one of them, or with another shape, counts as ``inf``.
    """
    from safetensors.torch import load_file

    a, b = load_file(fresh / "model.safetensors"), load_file(shipped / "model.safetensors")
    diffs = {}
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b or a[name].shape != b[name].shape:
            diffs[name] = float("inf")
        elif a[name].numel() == 0:
            diffs[name] = 0.0
        else:
            diffs[name] = (a[name].double() - b[name].double()).abs().max().item()
    return diffs


def _summary(folder: Path) -> dict:
    try:
        return json.loads((folder / "pretrain.json").read_text())
    except (OSError, ValueError):
        return {}


def verify(cfg: ToyPretrainConfig, tolerance: float = 1e-5, progress: bool = True) -> Verification:
    """Pretrain ``cfg`` afresh and compare it with its shipped checkpoint.

    Raises ``SppdError`` (exit code 2) when no checkpoint is shipped for this config.
    """
    name = f"toy-base-{config_hash(cfg)}"
    shipped = shipped_checkpoint(name)
    if shipped is None:
        raise SppdError(
            f"no shipped toy base model {name} under {shipped_root()} (${SHIPPED_ENV}) for this config; "
            "`sppd toy pretrain --ship` makes one"
        )
    with tempfile.TemporaryDirectory(prefix="sppd-verify-") as tmp:
        fresh = Path(tmp)
        run_pretrain(cfg, fresh, progress=progress)
        diffs = compare_weights(fresh, shipped)
        ours = _summary(fresh)
    theirs = _summary(shipped)
    return Verification(
        shipped=shipped,
        tolerance=tolerance,
        tensor_diffs=diffs,
        fresh_acc=ours.get("final_greedy_acc"),
        shipped_acc=theirs.get("final_greedy_acc"),
        fresh_steps=ours.get("steps_done"),
        shipped_steps=theirs.get("steps_done"),
    )


def format_verification(v: Verification) -> str:
    """A short table: each tensor's max |difference| and verdict, then both runs' accuracy and steps."""
    width = max([len(n) for n in v.tensor_diffs] + [len("tensor")])
    lines = [f"shipped: {v.shipped}", f"{'tensor':{width}s}  max|diff|  ok"]
    for name, diff in v.tensor_diffs.items():
        lines.append(f"{name:{width}s}  {diff:9.2e}  {'yes' if diff <= v.tolerance else 'NO'}")
    lines.append(f"{'final greedy acc (fresh / shipped)':{width}s}  {v.fresh_acc} / {v.shipped_acc}")
    lines.append(f"{'steps done (fresh / shipped)':{width}s}  {v.fresh_steps} / {v.shipped_steps}")
    return "\n".join(lines)


def check(v: Verification) -> None:
    """Raise :class:`NotReproduced` with a one-line reason unless ``v`` passed."""
    if not v.tensor_diffs:
        raise NotReproduced(f"{v.shipped}: no tensors to compare")
    if v.failures:
        worst = v.failures[0]
        raise NotReproduced(
            f"shipped toy base model {v.shipped.name} not reproduced: {len(v.failures)} tensor(s) beyond "
            f"tolerance {v.tolerance:g}, the largest {worst} (max |diff| {v.tensor_diffs[worst]:.3g})"
        )
