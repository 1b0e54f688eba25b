"""Two CPU processes (DDP over gloo, started by ``accelerate launch`` with the shipped cpu2.yaml)
take the same steps as one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources

import pytest
from safetensors.torch import load_file
from toy_records import make_run_config

from sppd.config import dump_yaml
from sppd.stages.train import main

pytestmark = pytest.mark.slow  # multi-process: every test here starts other Python processes

LAUNCHED = """\
import sys
from sppd.settings import load_run_config
from sppd.stages.train import main
main(load_run_config(sys.argv[1]))
"""


def test_two_processes_match_one(tmp_path, tiny_policy_dir):
    # SGD, not Adam: Adam would hide a gradient that is off by a constant factor (e.g. the world size).
    common = dict(max_steps=3, optimizer="sgd", lr=0.05, momentum=0.9, warmup_ratio=0.0, save_every=2)
    main(make_run_config(tmp_path, "step_dpo", tiny_policy_dir, name="one", batch_size=4, **common))

    two = make_run_config(tmp_path, "step_dpo", tiny_policy_dir, name="two", batch_size=2, **common)
    two.model.device = "cpu"
    config_path = tmp_path / "two.yaml"
    config_path.write_text(dump_yaml(two))
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    accelerate_config = resources.files("sppd") / "configs" / "accelerate" / "cpu2.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_"))}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(accelerate_config),
            str(script),
            str(config_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    out_one, out_two = tmp_path / "one" / "train-step_dpo", tmp_path / "two" / "train-step_dpo"
    summary = json.loads((out_two / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_batch"] == 4 and summary["steps"] == 3
    w1, w2, w0 = (load_file(str(p / "model.safetensors")) for p in (out_one, out_two, tiny_policy_dir))
    assert max(float((w1[k] - w0[k]).abs().max()) for k in w0) > 1e-3  # training moved the weights
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w0) < 1e-5
    losses = [
        [json.loads(line)["loss"] for line in (o / "metrics.jsonl").read_text().splitlines()]
        for o in (out_one, out_two)
    ]
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)
