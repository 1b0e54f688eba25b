"""Load a policy (causal LM + tokenizer) from a local HF folder with the configured dtype/device.

Only local folders: nothing here reaches a model hub (``local_files_only``), which is what a
cluster without network and this project's offline tests both need.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sppd.runtime import device_for_rank
from sppd.settings import DType, ModelConfig


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch (0 = all cores)."""
    torch.set_num_threads(threads if threads > 0 else (os.cpu_count() or 1))


def resolve_device(name: str) -> torch.device:
    """``auto``: this process's GPU (``cuda:LOCAL_RANK``) when CUDA exists, else the CPU."""
    if name == "auto":
        return device_for_rank()
    return torch.device(name)


def resolve_dtype(dtype: DType, device: torch.device) -> torch.dtype:
    if dtype == DType.AUTO:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {DType.FP32: torch.float32, DType.BF16: torch.bfloat16, DType.FP16: torch.float16}[dtype]


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:  # batching needs a pad id; EOS is the usual stand-in
        tok.pad_token = tok.eos_token
    return tok


def load_policy(path: str | Path, cfg: ModelConfig):
    """``(model, tokenizer)`` from a local folder, in eval mode on the configured device."""
    from transformers import AutoModelForCausalLM

    if not Path(path).is_dir():
        raise FileNotFoundError(f"model folder not found: {path} (config key 'model.path')")
    device = resolve_device(cfg.device)
    model = AutoModelForCausalLM.from_pretrained(
        str(path),
        dtype=resolve_dtype(cfg.dtype, device),
        local_files_only=True,
        trust_remote_code=cfg.trust_remote_code,
    ).to(device)
    return model.eval(), load_tokenizer(path, cfg.trust_remote_code)
