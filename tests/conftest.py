"""Shared fixtures: tiny real models and tokenizers built in code (no downloads, no GPU)."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def toy_tokenizer():
    from sppd.toy.tokenizer import build_toy_tokenizer

    return build_toy_tokenizer()


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory, toy_tokenizer):
    """A randomly initialised tiny Llama + the toy tokenizer saved as an HF folder."""
    from sppd.toy.config import ToyModelConfig
    from sppd.toy.model import build_toy_model

    cfg = ToyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, seed=1)
    model = build_toy_model(cfg, toy_tokenizer)
    path = tmp_path_factory.mktemp("tiny_policy")
    model.save_pretrained(path)
    toy_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_policy(tiny_policy_dir):
    from sppd.modeling import load_policy
    from sppd.settings import ModelConfig

    return load_policy(tiny_policy_dir, ModelConfig(device="cpu"))
