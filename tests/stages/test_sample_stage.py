"""`sppd sample` through the CLI: summary, artifacts, and kill -9 + resume == uninterrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sppd.io import StageDir

pytestmark = pytest.mark.slow  # multi-process: every test here starts other Python processes


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sppd", *args], capture_output=True, text=True, env=env, timeout=300)


def _args(run_dir, model_dir, *extra):
    return ["sample", "-c", "toy-tiny", f"run_dir={run_dir}", f"model.path={model_dir}", *extra]


def _trees(run_dir):
    return [obj for _, obj in StageDir(Path(run_dir) / "trees").iter_records()]


def test_toy_tiny_sampling_through_cli(tmp_path, tiny_policy_dir):
    res = _cli(*_args(tmp_path / "run", tiny_policy_dir))
    assert res.returncode == 0, res.stderr
    assert "problems" in res.stdout and "tokens_per_s" in res.stdout
    out = StageDir(tmp_path / "run" / "trees")
    manifest = out.read_manifest()
    assert manifest["complete"] and manifest["counts"]["problems"] == 6
    trees = _trees(tmp_path / "run")
    assert len({t["problem"]["id"] for t in trees}) == 6
    assert (out.path / "config.yaml").read_text().startswith("run_dir:")
    # a second run finds the stage complete and does nothing
    again = _cli(*_args(tmp_path / "run", tiny_policy_dir))
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_killed_run_resumes_to_the_same_trees(tmp_path, tiny_policy_dir):
    extra = ["problems.n=16", "sample.problems_per_shard=2", "sample.K=24"]
    from sppd.settings import load_run_config
    from sppd.stages import sample

    sample.main(load_run_config("toy-tiny", [f"run_dir={tmp_path / 'full'}", f"model.path={tiny_policy_dir}", *extra]))

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sppd", *_args(run, tiny_policy_dir, *extra)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shards_dir = run / "trees"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards_dir.glob("records-*.jsonl"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = StageDir(shards_dir)
    if out.is_complete():  # finished before the kill landed: simulate the kill's aftermath
        out.invalidate()
        out.shards()[-1].unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.shards()}
    assert 0 < len(kept) < 8

    sample.main(load_run_config("toy-tiny", [f"run_dir={run}", f"model.path={tiny_policy_dir}", *extra]))
    assert {p.name: p.stat().st_mtime_ns for p in out.shards() if p.name in kept} == kept  # not redone
    got, want = _trees(run), _trees(tmp_path / "full")
    assert len(got) == 16 and len({t["problem"]["id"] for t in got}) == 16  # nothing lost or duplicated
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


def test_malformed_problems_file_is_a_clear_error(tmp_path, tiny_policy_dir):
    bad = tmp_path / "problems.jsonl"
    bad.write_text('{"question": "1+1", "answer": "2"}\n{"question": "2+2"}\n')
    res = _cli(
        "sample",
        "-c",
        "toy-tiny",
        f"run_dir={tmp_path / 'run'}",
        f"model.path={tiny_policy_dir}",
        f"problems.source={bad}",
        "problems.n=null",
    )
    assert res.returncode == 2
    assert "problems.jsonl:2" in res.stderr and "answer" in res.stderr and "Traceback" not in res.stderr
