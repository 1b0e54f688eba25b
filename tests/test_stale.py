"""Stale stage folders: a complete (or partial) folder made with another config is not reused.

Real stages on the toy world with a tiny random policy: sample -> score (MC values, no PRM), and
a one-step SFT run on hand-made records.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sppd import cli, runtime
from sppd.config import ConfigError
from sppd.io import StageDir
from sppd.records import SFTExample
from sppd.settings import load_run_config
from sppd.stages import common, fingerprint, sample, score, train
from sppd.toy.config import ToyWorldConfig
from sppd.toy.world import STEP_DELIMITER, answer_line, sample_questions, solve


def _overrides(run_dir, model_dir, *extra) -> list[str]:
    return [
        f"run_dir={run_dir}",
        f"model.path={model_dir}",
        "problems.n=2",
        "sample.K=3",
        "sample.max_depth=3",
        "sample.max_step_tokens=8",
        "sample.problems_per_shard=1",
        "score.scorer=mc",
        "threads=2",
        *extra,
    ]


def _cfg(run_dir, model_dir, *extra):
    return load_run_config("toy-tiny", _overrides(run_dir, model_dir, *extra))


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in StageDir(folder).shards()}


@pytest.fixture(autouse=True)
def _no_rerun_stale(monkeypatch):
    monkeypatch.delenv(common.RERUN_STALE_ENV, raising=False)


@pytest.fixture
def sampled(tmp_path, tiny_policy_dir):
    run = tmp_path / "run"
    sample.main(_cfg(run, tiny_policy_dir))
    return run


def test_unchanged_rerun_skips_and_irrelevant_keys_do_not_count(sampled, tiny_policy_dir, capsys):
    trees = sampled / "trees"
    assert StageDir(trees).read_manifest()["fingerprint"]
    before = _stamps(trees)
    capsys.readouterr()
    # threads, device and another stage's settings are not what the trees depend on
    sample.main(_cfg(sampled, tiny_policy_dir, "threads=1", "model.device=cpu", "train.lr=0.5"))
    assert "nothing to do" in capsys.readouterr().out
    assert _stamps(trees) == before


def test_changed_key_names_the_key_and_both_values(sampled, tiny_policy_dir):
    with pytest.raises(ConfigError) as err:
        sample.main(_cfg(sampled, tiny_policy_dir, "sample.temperature=0.5"))
    message = str(err.value)
    assert str(sampled / "trees") in message and "sample.temperature: 1.0 -> 0.5" in message
    assert "--rerun-stale" in message and "sample.out" in message


@pytest.mark.slow
def test_changed_upstream_makes_score_stale_via_its_input(sampled, tiny_policy_dir):
    score.main(_cfg(sampled, tiny_policy_dir))
    assert not common.set_rerun_stale(True)
    try:
        sample.main(_cfg(sampled, tiny_policy_dir, "sample.K=2"))  # moved aside and resampled
    finally:
        common.set_rerun_stale(False)
    assert (sampled / "trees.stale-1" / "manifest.json").exists() and StageDir(sampled / "trees").is_complete()
    with pytest.raises(ConfigError, match=r"input 'trees' \(.*trees\) changed since the folder was made"):
        score.main(_cfg(sampled, tiny_policy_dir))  # score's own keys are unchanged


@pytest.mark.slow
def test_rerun_stale_through_the_cli_moves_the_folder_aside(sampled, tiny_policy_dir, capsys):
    args = ["sample", "-c", "toy-tiny", *_overrides(sampled, tiny_policy_dir, "sample.temperature=0.5")]
    assert cli.main(args) == 2
    assert "sample.temperature: 1.0 -> 0.5" in capsys.readouterr().err
    old = json.loads((sampled / "trees" / "manifest.json").read_text())["fingerprint"]
    assert cli.main([*args, "--rerun-stale"]) == 0
    assert "moved it to" in capsys.readouterr().out and not common.rerun_stale()  # the switch is restored
    moved, fresh = StageDir(sampled / "trees.stale-1"), StageDir(sampled / "trees")
    assert moved.read_manifest()["fingerprint"] == old and fresh.is_complete()
    assert fresh.read_manifest()["fingerprint"] != old and len(fresh.shards()) == len(moved.shards())
    assert cli.main(args) == 0 and "nothing to do" in capsys.readouterr().out  # now current


def test_manifest_without_fingerprint_is_reused_with_a_warning(sampled, tiny_policy_dir, capsys):
    path = sampled / "trees" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["fingerprint"], manifest["fingerprint_inputs"]
    path.write_text(json.dumps(manifest))  # as an older sppd wrote it
    capsys.readouterr()
    sample.main(_cfg(sampled, tiny_policy_dir, "sample.temperature=0.5"))
    out = capsys.readouterr()
    assert "nothing to do" in out.out and "no config fingerprint" in out.err and len(out.err.splitlines()) == 1


@pytest.mark.slow
def test_partial_folder_of_another_config_is_refused_then_moved(sampled, tiny_policy_dir):
    trees = StageDir(sampled / "trees")
    trees.invalidate()
    trees.shards()[-1].unlink()  # killed after the first shard
    with pytest.raises(ConfigError, match="holds unfinished work.*\n  sample.K: 3 -> 2"):
        sample.main(_cfg(sampled, tiny_policy_dir, "sample.K=2"))
    common.set_rerun_stale(True)
    try:
        sample.main(_cfg(sampled, tiny_policy_dir, "sample.K=2"))
    finally:
        common.set_rerun_stale(False)
    assert len(StageDir(sampled / "trees.stale-1").shards()) == 1 and trees.is_complete()
    # the same config resumes a partial folder as before
    trees.invalidate()
    kept = trees.shards()[0]
    stamp = kept.stat().st_mtime_ns
    trees.shards()[-1].unlink()
    sample.main(_cfg(sampled, tiny_policy_dir, "sample.K=2"))
    assert trees.is_complete() and kept.stat().st_mtime_ns == stamp


def _sft_data(folder: Path, n: int = 4) -> None:
    records = []
    for i, q in enumerate(sample_questions(ToyWorldConfig(min_ops=2, max_ops=2), "train", n, 0, unique=False)):
        steps = solve(q)
        lines = [s.line(k + 1) for k, s in enumerate(steps)] + [answer_line(steps[-1].result)]
        records.append(
            SFTExample(
                id=f"sft-{i}", problem_id=f"p{i}", prompt=q, completion=STEP_DELIMITER.join(lines), steps=lines
            ).to_dict()
        )
    StageDir(folder).write_shard("sft", 0, records)


def test_train_model_folder_is_checked_too(tmp_path, tiny_policy_dir, capsys):
    _sft_data(tmp_path / "data")
    base = [
        "train.objective=sft",
        f"train.data={tmp_path / 'data'}",
        f"train.init={tiny_policy_dir}",
        "train.max_steps=1",
        "train.batch_size=4",
        "train.lr=0.001",
        "train.max_length=256",
    ]
    train.main(_cfg(tmp_path / "run", tiny_policy_dir, *base))
    out = tmp_path / "run" / "train-sft"
    assert StageDir(out).read_manifest()["fingerprint"]  # the model folder carries it for eval/sample
    capsys.readouterr()
    train.main(_cfg(tmp_path / "run", tiny_policy_dir, *base, "train.log_every=5"))  # logging only
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"train.lr: 0.001 -> 0.002"):
        train.main(_cfg(tmp_path / "run", tiny_policy_dir, *base, "train.lr=0.002"))
    # the model folder's fingerprint is what a stage downstream sees as its input
    assert fingerprint.folder_id(out) == StageDir(out).read_manifest()["fingerprint"]
    assert fingerprint.folder_id(tiny_policy_dir) == str(Path(tiny_policy_dir).resolve())


def test_only_rank_zero_moves_a_stale_folder(sampled, tiny_policy_dir, monkeypatch):
    cfg = _cfg(sampled, tiny_policy_dir, "sample.K=2")
    fp = sample.fingerprint(cfg)
    barriers = []
    monkeypatch.setattr(runtime, "barrier", lambda: barriers.append(1))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(common.RERUN_STALE_ENV, "1")
    out = StageDir(sampled / "trees")
    assert fingerprint.reuse(out, fp, complete=True, has_work=True) is False
    assert out.is_complete() and not (sampled / "trees.stale-1").exists() and len(barriers) == 2
