"""Process helpers: the barrier really waits under a 2-process CPU launch; one GPU per rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources

import torch

from sppd import runtime
from sppd.modeling import resolve_device

# Rank 1 arrives late at the second barrier; each rank writes when it reached/left it. The first
# barrier brings up the process group in both ranks, so the second one measures waiting alone.
LAUNCHED = """\
import json, sys, time
from sppd import runtime

rank, world = runtime.rank_and_world()
runtime.barrier()
if rank == 1:
    time.sleep(1.5)
entered = time.time()
runtime.barrier()
left = time.time()
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as fh:
    json.dump({"world": world, "entered": entered, "left": left}, fh)
"""


def test_barrier_waits_for_the_slowest_cpu_process(tmp_path):
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    accelerate_config = resources.files("sppd") / "configs" / "accelerate" / "cpu2.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_"))}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU/gloo path even on a machine with GPUs
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
    proc = subprocess.run([*command, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world"] == rank1["world"] == 2
    # rank 0 may not leave before the late rank 1 has arrived (it reached the barrier ~1.5 s earlier)
    assert rank0["left"] >= rank1["entered"]
    assert rank0["left"] - rank0["entered"] > 1.0


def test_each_launched_process_gets_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert runtime.local_rank() == 3
    assert runtime.device_for_rank() == torch.device("cuda:3")
    assert resolve_device("auto") == torch.device("cuda:3")  # what policies and the trainer use
    monkeypatch.delenv("LOCAL_RANK")
    assert runtime.device_for_rank() == torch.device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert runtime.device_for_rank() == torch.device("cpu")


def test_derive_seed_is_stable_and_31_bit():
    assert runtime.derive_seed(0, "sample", 3) == runtime.derive_seed("0", "sample", "3")
    assert runtime.derive_seed(0, "a") != runtime.derive_seed(0, "b")
    assert 0 <= runtime.derive_seed("x") < 2**31
