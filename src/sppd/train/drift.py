"""How far a training run moved the weights: the L2 distance from its start model.

A run that moved ~0 learned nothing, and runs that moved the same distance in the same direction
trained the same model (the toy's clipped margin variants did). The start weights are read back
from the init folder's safetensors files, one tensor at a time through a memory map, rather than
copied at the start: a copy of a 7B model would cost 15-30 GB per process, the read costs one pass
over the file (from the page cache after the first) and one tensor of device memory at a time.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable
from pathlib import Path

import torch

INDEX = "model.safetensors.index.json"


def weight_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it, for an HF model folder ({} when it has none)."""
    folder = Path(folder)
    index = folder / INDEX
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.exists():
        return {}
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as handle:
        return {name: single for name in handle.keys()}


def l2_distance(named_tensors: Iterable[tuple[str, torch.Tensor]], start_folder: Path) -> float | None:
    """sqrt(sum over tensors of ||w - w_start||^2), in float64, over the names ``start_folder`` holds.

    Names the folder lacks (a tied ``lm_head.weight`` that ``save_pretrained`` drops) are skipped, so
    a shared tensor counts once. None when the folder has no safetensors or no name matches."""
    from safetensors import safe_open

    files = weight_files(start_folder)
    handles: dict[Path, object] = {}
    total, matched = 0.0, 0
    with contextlib.ExitStack() as stack:
        for name, tensor in named_tensors:
            file = files.get(name)
            if file is None or tensor.numel() == 0:  # ZeRO-3 leaves empty placeholders on each rank
                continue
            if file not in handles:
                handles[file] = stack.enter_context(safe_open(str(file), framework="pt"))
            start = handles[file].get_tensor(name).to(tensor.device, torch.float32)
            total += float((tensor.detach().float() - start).pow(2).sum(dtype=torch.float64))
            matched += 1
    return math.sqrt(total) if matched else None


def saved_l2_distance(saved_folder: Path, start_folder: Path) -> float | None:
    """``l2_distance`` of a saved model folder's weights from ``start_folder``'s."""
    from safetensors import safe_open

    def tensors():
        by_file: dict[Path, list[str]] = {}
        for name, file in weight_files(saved_folder).items():
            by_file.setdefault(file, []).append(name)
        for file, names in by_file.items():
            with safe_open(str(file), framework="pt") as handle:
                for name in names:
                    yield name, handle.get_tensor(name)

    return l2_distance(tensors(), start_folder)
