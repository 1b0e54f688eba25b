"""scripts/gpu_check.sh and benchmarks/gpu_check.py: the shell script parses, and the Python part's
CPU path (``--cpu-smoke``: random Qwen2 model, HF engine, plain accelerate training) runs end to
end. Its GPU numbers come only from running it on a GPU."""

from __future__ import annotations

import importlib.util
import math
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_shell_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu_check.sh")], check=True)


@pytest.mark.slow
def test_cpu_smoke_runs_the_whole_check(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--cpu-smoke", "--work", str(tmp_path)])
    assert results["engine"] == "hf" and "accelerate" in results["trainer"] and results["cpu_smoke"]
    assert results["sampling"]["tree_tokens"] > 0 and results["sampling"]["tree_over_plain"] > 0
    assert {"stage1/sample", "stage1/score", "stage1/build", "eval/Base"} <= results["pipeline_timings"].keys()
    for run in (results["sft"], results["train"]):
        assert run["steps"] > 0 and run["tokens_per_s"] > 0 and math.isfinite(run["final_loss"])
        assert run["l2_from_start"] > 0
    assert "GPU_CHECK {" in capsys.readouterr().out
