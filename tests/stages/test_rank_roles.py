"""What a non-zero rank of an ``accelerate launch`` does, checked in one process by setting its env.

Rank 1 of 2 must refuse bad input itself rather than wait at a barrier for a rank 0 that has
already failed, and must leave the run's shared files (timings) to rank 0. The barrier is
replaced, so no process group is needed; the 2-process runs live in test_real_arch_pipeline.py.
"""

from __future__ import annotations

import pytest

from sppd import runtime
from sppd.config import ConfigError
from sppd.settings import load_run_config
from sppd.stages import build, pipeline, prm_report


@pytest.fixture
def rank1(monkeypatch):
    """This process as rank 1 of 2; returns the list of barriers it reached."""
    reached = []
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(runtime, "barrier", lambda: reached.append(True))
    return reached


def test_rank1_refuses_missing_inputs_instead_of_waiting(tmp_path, rank1):
    cfg = load_run_config("toy-tiny", [f"run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="build.trees"):
        build.main(cfg, trees_dir=str(tmp_path / "no-scored"))
    with pytest.raises(ConfigError, match="score.out"):
        prm_report.main(cfg, trees_dir=str(tmp_path / "no-scored"))
    assert rank1 == []


def test_only_rank0_writes_timings(tmp_path, rank1, monkeypatch):
    path = tmp_path / "timings.json"
    assert pipeline.Timer(path).run("stage", lambda: 7) == 7
    assert not path.exists()
    monkeypatch.setenv("RANK", "0")
    pipeline.Timer(path).run("stage", lambda: 7)
    assert path.exists()
