"""The trained model's config.json declares the dtype of the weights actually saved."""

from __future__ import annotations

import json

import torch
from accelerate import Accelerator
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from fixtures_qwen2 import build_qwen2
from sppd.stages.train import _declared_dtype, save_final_model


def test_bf16_weights_are_declared_bf16(tmp_path):
    model, tokenizer = build_qwen2()  # fp32 parameters, like the training master copy
    save_final_model(Accelerator(cpu=True), model, tokenizer, tmp_path, torch.bfloat16)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config.get("torch_dtype", "bfloat16") == "bfloat16"
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert _declared_dtype(tmp_path) == torch.bfloat16  # what the next stage saves in
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype="auto", local_files_only=True)
    assert next(reloaded.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # the training model is left as it was
