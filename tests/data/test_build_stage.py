"""``sppd build`` end to end on a tmp folder of hand-made scored trees.

Inputs (see handmade_trees.py): p0 = tree_a, p1 = tree_no_correct, p2 = tree_ties.
Expected, by hand:
  sft:        p0 -> leaf 2, p2 -> leaf 1 (mean tie-break); p1 no_correct_path
  dpo:        p0 -> 2 vs 5; p1 no_correct_path; p2 no_wrong_path
  step pairs: p0 -> 1-4 (gap .5625, depth 1), 2-3 (gap .8125, depth 2, both terminal)
              p0 root gap .5, p1 root (.5 vs .0625) gap .4375, p2 n0 (.75 vs .5) gap .25 -> gap_too_small 3
              p2 root (.5 vs .5) -> tie 1;  one-child parents: p0 n4, n6; p1 n0 -> no_siblings 3
              parents: p0 5 (root, n0, n1, n4, n6), p1 2 (root, n0), p2 2 (root, n0) = 9
"""

import json
from collections import Counter

import pytest
from handmade_trees import tree_a, tree_no_correct, tree_ties

from sppd.config import ConfigError
from sppd.io import StageDir
from sppd.settings import RunConfig
from sppd.stages import build


def _write_scored(run_dir, n_problems=3):
    scored = StageDir(run_dir / "scored")
    trees = [tree_a(), tree_no_correct(), tree_ties()]
    scored.write_shard("trees", 0, [t.to_dict() for t in trees[:2]])
    scored.write_shard("trees", 1, [t.to_dict() for t in trees[2:]])
    scored.write_manifest("score", counts={"problems": n_problems}, inputs={})
    return scored


def _records(path):
    return [obj for _, obj in StageDir(path).iter_records()]


@pytest.fixture
def run(tmp_path):
    _write_scored(tmp_path)
    return tmp_path, RunConfig(run_dir=str(tmp_path))


def test_build_writes_three_sets_with_counts_and_stats(run, capsys):
    run_dir, cfg = run
    summary = build.main(cfg)
    data = run_dir / "data"
    sft, dpo, steps = _records(data / "sft"), _records(data / "dpo"), _records(data / "step_pairs")
    assert [r["id"] for r in sft] == ["p0/sft/2", "p2/sft/1"]
    assert [r["id"] for r in dpo] == ["p0/dpo/2-5"]
    assert [r["id"] for r in steps] == ["p0/step/1-4", "p0/step/2-3"]
    assert {r["kind"] for r in steps} == {"step_pair"}

    sft_m, dpo_m, step_m = (StageDir(data / n).read_manifest() for n in ("sft", "dpo", "step_pairs"))
    assert sft_m["complete"] and sft_m["stage"] == "build/sft"
    assert sft_m["counts"] == dict(problems=3, kept=2, no_correct_path=1, paths=9, correct_paths=5, wrong_paths=4)
    assert dpo_m["counts"]["kept"] == len(dpo) == 1
    assert dpo_m["counts"]["no_correct_path"] == 1 and dpo_m["counts"]["no_wrong_path"] == 1
    assert step_m["counts"] == dict(
        problems=3, problems_with_pairs=1, parents=9, kept=2, gap_too_small=3, tie=1, no_siblings=3
    )
    # stats: gaps .5625, .8125 -> mean .6875; chosen terminal: only the depth-2 pair
    stats = step_m["stats"]
    assert stats["pairs"] == 2 and stats["mean_value_gap"] == 0.6875
    assert stats["depth_histogram"] == {"1": 1, "2": 1} and stats["gap_histogram"] == {"0.5": 1, "0.8": 1}
    assert stats["chosen_terminal_fraction"] == 0.5 and stats["min_value_gap"] == 0.5625
    assert dpo_m["stats"]["mean_value_gap"] == 0.6875  # .75 - .0625
    assert sft_m["stats"]["mean_min_value"] == 0.625  # (.75 + .5) / 2
    assert step_m["inputs"]["trees"] == str(run_dir / "scored") and step_m["inputs"]["trees_stage"] == "score"
    assert step_m["inputs"]["delimiter"] == "\n" and step_m["inputs"]["build"]["step_gap"] == 0.5
    assert summary["step_pairs"]["counts"]["kept"] == 2
    out = capsys.readouterr().out
    assert "step_pairs  kept 2 of 6 candidate pairs; dropped: tie 1, gap_too_small 3" in out
    assert "dpo         kept 1 of 3 problems; dropped: no_correct_path 1, no_wrong_path 1" in out


def test_rerun_of_a_complete_build_does_nothing(run, capsys):
    run_dir, cfg = run
    build.main(cfg)
    shard = run_dir / "data" / "step_pairs" / "records-step_pairs-00000.jsonl"
    before = shard.stat().st_mtime_ns
    summary = build.main(cfg)
    assert "nothing to do" in capsys.readouterr().out
    assert shard.stat().st_mtime_ns == before and summary["sft"]["counts"]["kept"] == 2


def test_incomplete_build_is_rebuilt_without_duplicates(run):
    run_dir, cfg = run
    build.main(cfg)
    steps = StageDir(run_dir / "data" / "step_pairs")
    # a killed earlier run: no manifest, and a stray shard holding a copy of the records
    steps.invalidate()
    stray = steps.path / "records-step_pairs-00007.jsonl"
    stray.write_text((steps.path / "records-step_pairs-00000.jsonl").read_text())
    build.main(cfg)
    ids = [r["id"] for r in _records(steps.path)]
    assert ids == ["p0/step/1-4", "p0/step/2-3"] and not stray.exists()
    assert steps.read_manifest()["counts"]["kept"] == len(ids)


def test_changed_inputs_or_settings_rebuild(run, capsys):
    run_dir, cfg = run
    build.main(cfg)
    cfg.build.step_gap = 0.4  # now p0 root (gap .5) and p1 root (gap .4375) pass too: 4 pairs
    assert build.main(cfg)["step_pairs"]["counts"]["kept"] == 4
    assert len(_records(run_dir / "data" / "step_pairs")) == 4
    _write_scored(run_dir, n_problems=4)  # rescored trees: a new manifest
    capsys.readouterr()
    build.main(cfg)
    assert "nothing to do" not in capsys.readouterr().out
    assert len(_records(run_dir / "data" / "step_pairs")) == 4


def test_shards_follow_trees_per_shard_and_out_override(run, monkeypatch):
    run_dir, cfg = run
    monkeypatch.setattr(build, "TREES_PER_SHARD", 2)
    cfg.build.out = str(run_dir / "elsewhere")
    summary = build.main(cfg)
    sft = StageDir(run_dir / "elsewhere" / "sft")
    assert [p.name for p in sft.shards()] == ["records-sft-00000.jsonl", "records-sft-00001.jsonl"]
    assert [r["id"] for r in _records(sft.path)] == ["p0/sft/2", "p2/sft/1"] and summary["sft"]["shards"] == 2
    assert not (run_dir / "data").exists()


def test_every_step_mode_through_the_stage(run):
    run_dir, cfg = run
    cfg.build.step_pair_mode = "every_step"
    # every non-tie sibling pair: p0 root, 1-4, 2-3; p1 root (n0 .5 vs n2 .0625); p2 n0 (n1 .75 vs n2 .5)
    counts = Counter(build.main(cfg)["step_pairs"]["counts"])
    assert counts["kept"] == 5 and counts["tie"] == 1 and counts["gap_too_small"] == 0
    ids = [r["id"] for r in _records(run_dir / "data" / "step_pairs")]
    assert ids == ["p0/step/0-6", "p0/step/1-4", "p0/step/2-3", "p1/step/0-2", "p2/step/1-2"]


def test_unscored_folder_without_manifest_is_a_config_error(tmp_path):
    StageDir(tmp_path / "scored").write_shard("trees", 0, [tree_a().to_dict()])
    with pytest.raises(ConfigError, match="build.trees"):
        build.main(RunConfig(run_dir=str(tmp_path)))


def test_manifest_is_plain_json(run):
    run_dir, cfg = run
    build.main(cfg)
    text = (run_dir / "data" / "dpo" / "manifest.json").read_text()
    assert json.loads(text)["shards"] == ["records-dpo-00000.jsonl"]


def test_non_output_keys_do_not_rebuild(run, capsys):
    run_dir, cfg = run
    build.main(cfg)
    cfg.threads = 3
    cfg.build.trees = str(run_dir / "scored")  # the same folder, now named explicitly
    capsys.readouterr()
    build.main(cfg)
    assert "nothing to do" in capsys.readouterr().out


def test_fingerprinted_trees_count_by_their_fingerprint(run, capsys):
    run_dir, cfg = run
    scored = StageDir(run_dir / "scored")

    def rescore(fingerprint: str, n_problems: int) -> bool:
        scored.write_manifest("score", counts={"problems": n_problems}, inputs={}, fingerprint=fingerprint)
        capsys.readouterr()
        build.main(cfg)
        return "nothing to do" not in capsys.readouterr().out

    assert rescore("a", 3)
    assert not rescore("a", 4)  # the same scoring config again: the same trees
    assert rescore("b", 3)  # another scoring config upstream
