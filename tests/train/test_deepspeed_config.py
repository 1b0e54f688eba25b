"""The shipped DeepSpeed accelerate configs, with the keys the train stage adds, run the paper's
SGD under ZeRO-2 and ZeRO-3 and clip exactly as ``train.max_grad_norm`` says.

DeepSpeed refuses an optimizer outside its ``ZERO_SUPPORTED_OPTIMIZERS`` (torch's SGD is not in
it) unless ``zero_allow_untested_optimizer`` is true, and clips at 1.0 when ``gradient_clipping``
is missing. The config is checked here with accelerate's own ``DeepSpeedPlugin`` (no DeepSpeed
needed); where DeepSpeed is installed, a subprocess also builds a ZeRO engine with SGD on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources

import pytest
import yaml

from sppd.settings import TrainConfig
from sppd.train.loop import deepspeed_settings

ZERO_CONFIGS = {"zero2.yaml": 2, "zero3.yaml": 3}


def shipped_plugin_config(name: str, train: TrainConfig) -> dict:
    """The DeepSpeed config accelerate builds from a shipped YAML, with the train stage's keys on top
    (as ``sppd.stages.train.make_accelerator`` does)."""
    from accelerate.utils import DeepSpeedPlugin

    text = (resources.files("sppd") / "configs" / "accelerate" / name).read_text()
    data = yaml.safe_load(text)
    assert data["distributed_type"] == "DEEPSPEED"
    plugin = DeepSpeedPlugin(**data["deepspeed_config"])  # the keys accelerate launch passes on
    plugin.deepspeed_config.update(deepspeed_settings(train))
    return plugin.deepspeed_config


@pytest.mark.parametrize("name, stage", ZERO_CONFIGS.items())
def test_shipped_zero_configs_allow_sgd_and_honour_no_clipping(name, stage):
    config = shipped_plugin_config(name, TrainConfig(optimizer="sgd", lr=1e-5, batch_size=2, max_grad_norm=0.0))
    assert config["zero_optimization"]["stage"] == stage
    assert config["zero_allow_untested_optimizer"] is True
    assert config["gradient_clipping"] == 0.0  # not "auto", which accelerate would fill with 1.0
    assert config["train_micro_batch_size_per_gpu"] == 2


ENGINE = """
import json, os, sys, torch
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2], RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
import deepspeed
deepspeed.init_distributed(dist_backend="gloo")
config = json.loads(sys.argv[1])
config.update(train_batch_size=config["train_micro_batch_size_per_gpu"], gradient_accumulation_steps=1)
model = torch.nn.Linear(4, 2)
engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), config=config)
engine.backward(engine(torch.ones(1, 4)).sum())
engine.step()
print("ENGINE_OK", type(engine.optimizer).__name__)
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero2.yaml"])
def test_deepspeed_builds_a_zero_engine_with_sgd_from_the_shipped_config(tmp_path, name):
    pytest.importorskip("deepspeed", reason="DeepSpeed not installed (pip install 'sppd[gpu]')")
    config = shipped_plugin_config(name, TrainConfig(optimizer="sgd", batch_size=1, max_grad_norm=0.0))
    config = {k: v for k, v in config.items() if k != "steps_per_print"}  # inf is no JSON
    config["zero_optimization"] = {"stage": config["zero_optimization"]["stage"]}
    env = {**os.environ, "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu")}
    args = [sys.executable, "-c", ENGINE, json.dumps(config), "29561"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert "ENGINE_OK" in proc.stdout, proc.stderr[-3000:]
    without = {k: v for k, v in config.items() if k != "zero_allow_untested_optimizer"}
    proc = subprocess.run(
        [*args[:3], json.dumps(without), "29562"], capture_output=True, text=True, timeout=300, env=env
    )
    assert "untested ZeRO Optimizer" in proc.stdout + proc.stderr  # the reproduction: refused without the key
