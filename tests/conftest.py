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


@pytest.fixture
def cli(capsys):
    """Run ``sppd.cli.main`` in-process: ``cli(*argv) -> (exit code, stdout, stderr)``."""
    from sppd.cli import main

    def run(*argv):
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def assert_one_error(code: int, err: str, *needles: str) -> str:
    """A non-zero exit with exactly one error line (warnings aside) naming every needle, no traceback."""
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]  # no bars
    errors = [line for line in lines if line.startswith(("sppd: error:", "sppd: config error:"))]
    others = [line for line in lines if line not in errors and not line.startswith("sppd: warning:")]
    assert len(errors) == 1 and not others, err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]
