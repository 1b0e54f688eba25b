"""Process runtime: where this process computes (device) and in which precision (dtype).

The one place that turns the config's device and dtype choices into torch objects, shared by the
policy loader, the trainer and the PRM adapters so "auto" means the same thing everywhere.
Importing this module stays torch-free: torch is imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sppd.types import DType

if TYPE_CHECKING:
    import torch


# --- device and dtype ------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is the first CUDA device when there is one, else the CPU; anything else as torch reads it."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(dtype: DType | str, device: torch.device) -> torch.dtype:
    """The torch dtype of a ``DType`` (or one of its spellings); ``auto`` is bf16 on CUDA, fp32 elsewhere."""
    import torch

    choice = DType(dtype)
    if choice is DType.AUTO:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {DType.FP32: torch.float32, DType.BF16: torch.bfloat16, DType.FP16: torch.float16}[choice]
