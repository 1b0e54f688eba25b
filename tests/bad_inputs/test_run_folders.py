"""Damaged run folders, a full disk and two writers: damage is found and healed without losing a
finished shard; a full disk or a second writer is one line and a non-zero exit."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import assert_one_error
from sppd import io as sppd_io
from sppd import locking
from sppd.io import MANIFEST, StageDir


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, tiny_policy_dir):
    """A complete ``sppd sample`` run folder (6 problems, 3 shards), made once; tests copy it."""
    from sppd.settings import load_run_config
    from sppd.stages import sample

    run = tmp_path_factory.mktemp("sampled")
    sample.main(load_run_config("toy-tiny", [f"run_dir={run}", f"model.path={tiny_policy_dir}"]))
    return run


def _copy(sampled, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(sampled, run)
    return run


def _args(run, model):
    return ["sample", "-c", "toy-tiny", f"run_dir={run}", f"model.path={model}"]


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b'"correct":false')
    data[at : at + 15] = b'"correct":true '
    path.write_bytes(bytes(data))


DAMAGE = {
    "flipped": _flip_byte,
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "emptied": lambda p: p.write_bytes(b""),
    "deleted": lambda p: p.unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_shard_is_set_aside_and_regenerated(cli, tmp_path, sampled, tiny_policy_dir, damage):
    run = _copy(sampled, tmp_path)
    shards = StageDir(run / "trees").shards()
    victim, want = shards[1], shards[1].read_bytes()
    others = {p.name: p.stat().st_mtime_ns for p in shards if p != victim}
    DAMAGE[damage](victim)
    code, out, err = cli(*_args(run, tiny_policy_dir))
    assert code == 0, err
    if damage != "deleted":
        assert victim.name in err and "damaged-1" in err  # the warning names the shard
        assert (victim.parent / f"{victim.name}.damaged-1").exists()  # kept for inspection
    assert "nothing to do" not in out
    assert victim.read_bytes() == want  # regenerated bitwise
    assert {p.name: p.stat().st_mtime_ns for p in shards if p != victim} == others  # the rest untouched
    assert StageDir(run / "trees").is_complete()


def test_a_damaged_shard_of_an_unfinished_run_is_regenerated_on_resume(cli, tmp_path, sampled, tiny_policy_dir):
    run = _copy(sampled, tmp_path)
    trees = StageDir(run / "trees")
    trees.invalidate()  # as a kill before the manifest leaves it
    victim, want = trees.shards()[0], trees.shards()[0].read_bytes()
    _flip_byte(victim)
    code, _, err = cli(*_args(run, tiny_policy_dir))
    assert code == 0 and victim.name in err
    assert victim.read_bytes() == want and trees.is_complete()


@pytest.mark.parametrize("content", [b"", b'{"stage": "sample", "compl'], ids=["empty", "truncated"])
def test_an_unreadable_manifest_is_set_aside_and_the_stage_completes(cli, tmp_path, sampled, tiny_policy_dir, content):
    run = _copy(sampled, tmp_path)
    kept = {p.name: p.stat().st_mtime_ns for p in StageDir(run / "trees").shards()}
    (run / "trees" / MANIFEST).write_bytes(content)
    code, _, err = cli(*_args(run, tiny_policy_dir))
    assert code == 0 and f"{MANIFEST}:" in err
    assert StageDir(run / "trees").is_complete()
    assert {p.name: p.stat().st_mtime_ns for p in StageDir(run / "trees").shards()} == kept  # nothing redone


def test_a_full_disk_is_one_line_and_keeps_the_finished_shards(cli, tmp_path, sampled, tiny_policy_dir, monkeypatch):
    real = sppd_io.atomic_write_text

    def write(path, text):
        if Path(path).name.startswith("records-trees-00001"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, text)

    monkeypatch.setattr(sppd_io, "atomic_write_text", write)
    run = tmp_path / "run"
    code, _, err = cli(*_args(run, tiny_policy_dir))
    assert_one_error(code, err, "No space left on device", "records-trees-00001")
    trees = StageDir(run / "trees")
    assert not trees.is_complete() and [p.name for p in trees.shards()] == ["records-trees-00000.jsonl"]
    first = trees.shards()[0].stat().st_mtime_ns
    monkeypatch.setattr(sppd_io, "atomic_write_text", real)  # space freed: the rerun completes
    code, _, err = cli(*_args(run, tiny_policy_dir))
    assert code == 0, err
    assert trees.is_complete() and trees.shards()[0].stat().st_mtime_ns == first  # the finished shard kept
    got = [json.dumps(o, sort_keys=True) for _, o in trees.iter_records()]
    want = [json.dumps(o, sort_keys=True) for _, o in StageDir(sampled / "trees").iter_records()]
    assert got == want


HOLDER = textwrap.dedent(
    """
    import sys, time
    from sppd import locking
    locking.acquire(sys.argv[1])
    print("locked", flush=True)
    time.sleep(60)
    """
)


def _holder(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(sppd_io.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_fails_fast_naming_the_holder(cli, tmp_path, tiny_policy_dir):
    run = tmp_path / "run"
    holder = _holder(run / "trees")
    try:
        start = time.perf_counter()
        code, _, err = cli(*_args(run, tiny_policy_dir))
        assert_one_error(code, err, "in use", f"pid {holder.pid}", str(run / "trees"))
        assert time.perf_counter() - start < 30 and not StageDir(run / "trees").shards()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale, taken over with a warning
    code, _, err = cli(*_args(run, tiny_policy_dir))
    assert code == 0 and "taking it over" in err and f"pid {holder.pid}" in err
    assert StageDir(run / "trees").is_complete() and not (run / "trees" / locking.LOCK_NAME).exists()


def test_only_rank_zero_locks_and_a_process_may_relock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    locking.acquire(tmp_path)
    assert not (tmp_path / locking.LOCK_NAME).exists()
    monkeypatch.setenv("RANK", "0")
    locking.acquire(tmp_path)
    locking.acquire(tmp_path)  # the same process again (a pipeline's next stage): fine
    assert json.loads((tmp_path / locking.LOCK_NAME).read_text())["pid"] == os.getpid()
    locking.release(tmp_path)
    assert not (tmp_path / locking.LOCK_NAME).exists()


def test_benchmark_files_sharing_a_base_name_get_distinct_tags():
    from sppd.stages.eval import bench_tags

    tags = bench_tags(["x/test.jsonl", "y/test.jsonl", "toy", "z/other.jsonl"])
    assert tags["x/test.jsonl"] != tags["y/test.jsonl"] and tags["x/test.jsonl"].startswith("test_")
    assert tags["toy"] == "toy" and tags["z/other.jsonl"] == "other"  # unique names keep their tags
    assert bench_tags(["y/test.jsonl", "x/test.jsonl"])["x/test.jsonl"] == tags["x/test.jsonl"]


def test_an_old_folder_without_digests_is_still_reused(cli, tmp_path, sampled, tiny_policy_dir):
    run = _copy(sampled, tmp_path)
    for sidecar in (run / "trees").glob("*.sha256"):
        sidecar.unlink()
    manifest = json.loads((run / "trees" / MANIFEST).read_text())
    manifest.pop("shard_digests")
    (run / "trees" / MANIFEST).write_text(json.dumps(manifest))
    code, out, _ = cli(*_args(run, tiny_policy_dir))
    assert code == 0 and "nothing to do" in out
