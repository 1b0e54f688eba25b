"""Bad data files (problem and benchmark JSONL, training records, scored trees): one line naming
file:line and field (or the config key), exit 2, no traceback, no complete (manifest) folder."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import assert_one_error
from sppd.io import MANIFEST, StageDir

LONG = "x" * 20001
BAD_PROBLEM_FILES = [
    # (bytes of problems.jsonl, what the error must name)
    (b"", "no problems"),
    (b"\n\n  \n", "no problems"),
    (b'{"question": "1+1", "answer": "2"}\n{"question": "2+2", "answer": \n', "problems.jsonl:2"),
    (b'{"question": "1+1", "answer": "2"}\n[1, 2]\n', "problems.jsonl:2"),
    (b'{"question": "1+1", "answer": "2"}\n{"question": "caf\xe9", "answer": "3"}\n', "problems.jsonl:2: not UTF-8"),
    (b'{"question": "1+1"}\n', "'answer'"),
    (b'{"question": 11, "answer": "2"}\n', "'question'"),
    (json.dumps({"question": LONG, "answer": "2"}).encode() + b"\n", "problems.max_question_chars"),
    (json.dumps({"question": "1+1", "answer": LONG}).encode() + b"\n", "problems.max_question_chars"),
]


@pytest.mark.parametrize(("content", "needle"), BAD_PROBLEM_FILES, ids=[f"jsonl{i}" for i in range(9)])
def test_a_bad_problems_file_stops_sampling_with_one_line(cli, tmp_path, tiny_policy_dir, content, needle):
    path = tmp_path / "problems.jsonl"
    path.write_bytes(content)
    run = tmp_path / "run"
    args = ["sample", "-c", "toy-tiny", f"run_dir={run}", f"model.path={tiny_policy_dir}"]
    code, _, err = cli(*args, f"problems.source={path}", "problems.n=null")
    assert_one_error(code, err, needle)
    assert not (run / "trees" / MANIFEST).exists()


def test_an_unknown_source_or_split_names_the_key(cli, tmp_path, tiny_policy_dir):
    args = ["sample", "-c", "toy-tiny", f"run_dir={tmp_path}", f"model.path={tiny_policy_dir}"]
    assert_one_error(*cli(*args, "problems.source=nope")[::2], "problems.source")
    assert_one_error(*cli(*args, "problems.split=nope")[::2], "problems.split")
    assert_one_error(*cli(*args, f"problems.source={tmp_path / 'missing.jsonl'}")[::2], "missing.jsonl")


BAD_BENCHMARKS = [
    (b"", "has no problems"),
    (b'{"question": "1+1", "answer": "2"}\n{oops}\n', "bench.jsonl:2"),
    (b'{"question": "1+1", "answer": "2\xff"}\n', "bench.jsonl:1: not UTF-8"),
]


@pytest.mark.parametrize(("content", "needle"), BAD_BENCHMARKS, ids=["empty", "json", "utf8"])
def test_a_bad_benchmark_file_stops_eval_with_one_line(cli, tmp_path, tiny_policy_dir, content, needle):
    path = tmp_path / "bench.jsonl"
    path.write_bytes(content)
    run = tmp_path / "run"
    args = ["eval", "-c", "toy-tiny", f"run_dir={run}", f"model.path={tiny_policy_dir}", "eval.prm=none"]
    code, _, err = cli(*args, f"eval.benchmarks=[{path}]")
    assert_one_error(code, err, needle)
    assert not (run / "eval" / MANIFEST).exists()


def test_an_unknown_benchmark_names_the_key(cli, tmp_path, tiny_policy_dir):
    args = ["eval", "-c", "toy-tiny", f"run_dir={tmp_path}", f"model.path={tiny_policy_dir}", "eval.prm=none"]
    assert_one_error(*cli(*args, "eval.benchmarks=[nope]")[::2], "nope")


def _sft_folder(path) -> StageDir:
    out = StageDir(path)
    record = {"schema": 1, "kind": "sft", "id": "p0/sft/0", "problem_id": "p0", "prompt": "Q: 1+1\n"}
    out.write_shard("sft", 0, [{**record, "completion": "1+1=2\nThe answer is 2\n"}])
    return out


TRAIN_CASES = [
    # (override builder, what the error must name)
    (lambda tmp: ["train.objective=step_dpo", f"train.data={tmp / 'sft'}"], "field 'kind'"),
    (lambda tmp: [f"train.init={tmp / 'no-such-model'}"], "train.init"),
    (lambda tmp: [f"train.ref={tmp / 'no-such-ref'}", "train.objective=dpo"], "train.ref"),
    (lambda tmp: [f"train.data={tmp / 'empty-folder'}"], "train.data"),
    (lambda tmp: [f"train.data={tmp / 'no-records'}"], "nothing to train on"),
]


@pytest.mark.parametrize(("overrides", "needle"), TRAIN_CASES, ids=["kind", "init", "ref", "no-shards", "no-records"])
def test_bad_training_inputs_are_one_line(cli, tmp_path, tiny_policy_dir, overrides, needle):
    _sft_folder(tmp_path / "sft")
    (tmp_path / "empty-folder").mkdir()
    StageDir(tmp_path / "no-records").write_shard("sft", 0, [])
    run = tmp_path / "run"
    base = ["train", "-c", "toy-tiny", f"run_dir={run}", f"model.path={tiny_policy_dir}", f"train.data={tmp_path}/sft"]
    code, _, err = cli(*base, *overrides(tmp_path))
    assert_one_error(code, err, needle)
    assert not list(run.glob(f"*/{MANIFEST}")) and not list(run.glob("*/model.safetensors"))


@pytest.fixture(scope="module")
def sampled_trees(tmp_path_factory, tiny_policy_dir):
    """A complete ``sppd sample`` folder (6 problems, 3 shards), made once; tests copy it."""
    from sppd.settings import load_run_config
    from sppd.stages import sample

    run = tmp_path_factory.mktemp("sampled")
    sample.main(load_run_config("toy-tiny", [f"run_dir={run}", f"model.path={tiny_policy_dir}"]))
    return run / "trees"


def _old_style_copy(src, dst) -> StageDir:
    """A copy of a complete folder as an older sppd wrote it: no shard digests anywhere."""
    shutil.copytree(src, dst)
    for sidecar in dst.glob("*.sha256"):
        sidecar.unlink()
    manifest = json.loads((dst / MANIFEST).read_text())
    manifest.pop("shard_digests")
    (dst / MANIFEST).write_text(json.dumps(manifest))
    return StageDir(dst)


def _break_line(shard, new_line: bytes) -> None:
    lines = shard.read_bytes().splitlines(keepends=True)
    shard.write_bytes(b"".join(lines[:1] + [new_line] + lines[2:]))


BUILD_INPUTS = [
    (lambda shard: _break_line(shard, b'{"schema": 1, "kind": "tree", "caf\xe9": 1}\n'), ":2: not UTF-8"),
    (lambda shard: _break_line(shard, b'{"schema": 1, "kind": \n'), ":2: invalid JSON"),
    (lambda shard: _break_line(shard, b'{"schema": 99, "kind": "tree"}\n'), ":2: field 'schema'"),
    (lambda shard: _break_line(shard, b'{"schema": 1, "kind": "tree"}\n'), ":2"),  # fields missing
    (lambda shard: shard.write_bytes(shard.read_bytes()[:-40]), ":2"),  # truncated mid-record
]


@pytest.mark.parametrize(("damage", "needle"), BUILD_INPUTS, ids=["utf8", "json", "schema", "fields", "truncated"])
def test_a_malformed_input_shard_is_named_by_file_and_line(cli, tmp_path, sampled_trees, damage, needle):
    scored = _old_style_copy(sampled_trees, tmp_path / "scored")
    shard = scored.shards()[0]
    damage(shard)
    code, _, err = cli("build", "-c", "toy-tiny", f"run_dir={tmp_path}", f"build.trees={scored.path}")
    assert_one_error(code, err, shard.name, needle)
    assert not list(tmp_path.glob(f"data/*/{MANIFEST}"))


@pytest.mark.parametrize("content", [b"", b'{"stage": "score", "comp'], ids=["empty", "truncated"])
def test_an_unreadable_input_manifest_is_set_aside_and_named(cli, tmp_path, sampled_trees, content):
    shutil.copytree(sampled_trees, tmp_path / "scored")
    (tmp_path / "scored" / MANIFEST).write_bytes(content)
    code, _, err = cli("build", "-c", "toy-tiny", f"run_dir={tmp_path}")
    assert_one_error(code, err, "build.trees", "not a complete")
    assert f"{MANIFEST}:" in err and (tmp_path / "scored" / f"{MANIFEST}.damaged-1").exists()


def test_a_missing_input_folder_names_the_key(cli, tmp_path):
    code, _, err = cli("build", "-c", "toy-tiny", f"run_dir={tmp_path}", f"build.trees={tmp_path / 'nope'}")
    assert_one_error(code, err, "build.trees")
    code, _, err = cli("score", "-c", "toy-tiny", f"run_dir={tmp_path}", f"score.trees={tmp_path / 'nope'}")
    assert_one_error(code, err, "score.trees")
