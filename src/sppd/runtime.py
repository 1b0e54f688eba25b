"""The process a component runs in: its rank, its device and dtype, seeds, barriers, progress bars, caches.

Base layer: anything may import it and it imports no other ``sppd`` module but ``sppd.types``
(stdlib only). The config's device and dtype choices become torch objects here, so "auto" means
the same thing for the policy loader, the trainer and the PRM adapters. torch, accelerate
and tqdm are imported inside the functions that need them, so importing this module (and the
config schema that reaches it) stays free of torch.

Ranks come from the environment that ``accelerate launch`` and ``torchrun`` set (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``); a plain ``python`` process is rank 0 of 1.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sppd.types import DType

if TYPE_CHECKING:
    import torch


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``accelerate launch``/torchrun env)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``; 0 when not launched)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def device_for_rank():
    """``cuda:LOCAL_RANK`` when CUDA exists, else the CPU: one GPU per launched process.

    Bare ``cuda`` would be GPU 0 in every process, since nothing else sets the current device.
    """
    import torch

    if torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank()}")
    return torch.device("cpu")


def barrier() -> None:
    """Wait for all processes when launched with several; a no-op otherwise.

    ``cpu=True`` without CUDA: accelerate otherwise brings up no process group on a CPU-only
    machine (it picks a backend only for accelerators), so the wait did nothing and rank 0 ran
    ahead. With it, CPU launches use gloo; CUDA launches keep NCCL. The state is shared with a
    later ``Accelerator``, which then finds the process group already up.
    """
    if rank_and_world()[1] > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def on_rank0(fn: Callable[[], object]) -> None:
    """Run ``fn`` on rank 0 alone (cheap shared work: a cache, a small file); every process waits for it."""
    if rank_and_world()[0] == 0:
        fn()
    barrier()


def progress(total: int | None, desc: str, unit: str = "it", initial: int = 0):
    """A tqdm bar with rate and ETA; quiet when not on a terminal unless SPPD_PROGRESS=1."""
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() or os.environ.get("SPPD_PROGRESS") == "1"
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not show, dynamic_ncols=True)


def cache_root() -> Path:
    """Where reusable artifacts (the toy base model) live: $SPPD_CACHE or ~/.cache/sppd."""
    return Path(os.environ.get("SPPD_CACHE", Path.home() / ".cache" / "sppd"))


# --- device and dtype ------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is this process's GPU (``cuda:LOCAL_RANK``) when CUDA exists, else the CPU; anything
    else as torch reads it."""
    import torch

    if name == "auto":
        return device_for_rank()
    return torch.device(name)


def resolve_dtype(dtype: DType | str, device: torch.device) -> torch.dtype:
    """The torch dtype of a ``DType`` (or one of its spellings); ``auto`` is bf16 on CUDA, fp32 elsewhere."""
    import torch

    choice = DType(dtype)
    if choice is DType.AUTO:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {DType.FP32: torch.float32, DType.BF16: torch.bfloat16, DType.FP16: torch.float16}[choice]
