"""One device/dtype rule (``sppd.runtime``) and one tokenizer loader (``sppd.modeling``) for every model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from sppd.modeling import load_tokenizer
from sppd.runtime import resolve_device, resolve_dtype
from sppd.stages.train import _declared_dtype, resolve_mixed_precision
from sppd.types import DType, MixedPrecision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # constructing a cuda device needs no GPU


def test_importing_runtime_does_not_import_torch():
    code = "import sys, sppd.runtime; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_auto_dtype_is_bf16_on_cuda_and_fp32_on_cpu():
    """The PRM adapters used to pick fp32 on a CUDA GPU without bf16 support; now every model
    follows the policy's rule, so policy and PRM agree on one machine."""
    assert resolve_dtype(DType.AUTO, CPU) is torch.float32
    assert resolve_dtype("auto", CUDA) is torch.bfloat16
    assert [resolve_dtype(d, CPU) for d in ("fp32", "bf16", "fp16")] == [torch.float32, torch.bfloat16, torch.float16]
    assert resolve_dtype("bfloat16", CPU) is torch.bfloat16  # the PRM adapters' old spelling
    with pytest.raises(ValueError):
        resolve_dtype("fp8", CPU)


def test_device_auto_and_explicit():
    assert resolve_device("cpu") == CPU and resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_mixed_precision_auto_follows_the_device():
    assert resolve_mixed_precision(MixedPrecision.AUTO, CPU) == "no"
    assert resolve_mixed_precision(MixedPrecision.AUTO, CUDA) == "bf16"
    assert resolve_mixed_precision(MixedPrecision.FP16, CPU) == "fp16"
    assert resolve_mixed_precision("no", CUDA) == "no"  # a config built in Python with the string


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"torch_dtype": "bfloat16"}, torch.bfloat16),
        ({"dtype": "float16", "torch_dtype": "float32"}, torch.float16),  # newer HF writes "dtype"
        ({"torch_dtype": "float64"}, torch.float32),
        ({"torch_dtype": "auto"}, torch.float32),
        ({}, torch.float32),
    ],
)
def test_the_saved_model_keeps_the_init_folders_declared_dtype(tmp_path, config, expected):
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert _declared_dtype(tmp_path) is expected


def test_load_tokenizer_gives_a_tokenizer_without_pad_the_eos_as_pad(tmp_path, toy_tokenizer):
    """Policy and PRM tokenizers both come through here (the PRM adapters had their own loader)."""
    import copy

    tok = copy.deepcopy(toy_tokenizer)
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.pad_token == loaded.eos_token == "<eos>" and loaded.pad_token_id == loaded.eos_token_id
