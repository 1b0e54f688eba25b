"""Artifact folders: atomic shards, manifests, malformed-line errors, schema checks."""

import json

import pytest

from sppd.io import DataFileError, StageDir, iter_trees, read_jsonl, write_jsonl
from sppd.records import SCHEMA_VERSION, Problem, RecordError, SFTExample, Tree


def test_shards_are_atomic_and_killed_writes_are_ignored(tmp_path):
    out = StageDir(tmp_path / "stage")
    out.write_shard("t", 0, [{"schema": SCHEMA_VERSION, "x": 1}])
    # what a kill -9 in the middle of a write leaves behind: a temp file, never a shard
    (out.path / ".records-t-00001.jsonl.abc.tmp").write_text('{"schema": 1, "x": 2')
    assert [p.name for p in out.shards()] == ["records-t-00000.jsonl"]
    assert out.has_shard("t", 0) and not out.has_shard("t", 1)
    assert [r["x"] for _, r in out.iter_records()] == [1]


def test_manifest_marks_complete(tmp_path):
    out = StageDir(tmp_path / "s")
    assert not out.is_complete()
    out.write_shard("t", 0, [{"schema": SCHEMA_VERSION}])
    out.write_manifest("demo", counts={"n": 1}, inputs={"a": "b"})
    manifest = out.read_manifest()
    assert out.is_complete() and manifest["counts"] == {"n": 1} and manifest["shards"] == ["records-t-00000.jsonl"]
    out.invalidate()
    assert not out.is_complete()


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,,}\n')
    with pytest.raises(DataFileError, match=r"bad\.jsonl:3: invalid JSON"):
        list(read_jsonl(path))
    path.write_text("[1, 2]\n")
    with pytest.raises(DataFileError, match=r"bad\.jsonl:1: expected a JSON object"):
        list(read_jsonl(path))


def test_wrong_schema_is_refused(tmp_path):
    out = StageDir(tmp_path)
    write_jsonl(out.shard_path("t", 0), [{"schema": 999}])
    with pytest.raises(DataFileError, match="field 'schema'"):
        list(out.iter_records())


def test_tree_round_trip_and_bad_fields():
    tree = Tree(problem=Problem(id="p1", question="1+2", gold="3"), prompt_ids=[1, 2])
    data = json.loads(json.dumps(tree.to_dict()))
    assert Tree.from_dict(data) == tree
    data["nodes"] = [{"id": 0}]
    with pytest.raises(RecordError, match="node 0"):
        Tree.from_dict(data, "f.jsonl:4")
    with pytest.raises(RecordError, match="field 'gold'"):
        Problem.from_dict({"id": "a", "question": "q", "gold": 3}, "f.jsonl:2")


def test_iter_trees_reads_a_folder_or_one_shard_and_names_bad_lines(tmp_path):
    trees = [Tree(problem=Problem(id=f"p{i}", question="1+2", gold="3"), prompt_ids=[i]) for i in range(3)]
    out = StageDir(tmp_path / "trees")
    out.write_shard("trees", 1, [trees[2].to_dict()])
    out.write_shard("trees", 0, [t.to_dict() for t in trees[:2]])
    assert list(iter_trees(out)) == list(iter_trees(out.path)) == trees  # shards in name order
    assert list(iter_trees(out.shard_path("trees", 1))) == trees[2:]
    write_jsonl(out.shard_path("trees", 2), [trees[0].to_dict(), {**trees[1].to_dict(), "schema": 999}])
    with pytest.raises(DataFileError, match=r"records-trees-00002\.jsonl:2: field 'schema'"):
        list(iter_trees(out))
    write_jsonl(out.shard_path("trees", 2), [trees[0].to_dict(), {"schema": SCHEMA_VERSION}])
    with pytest.raises(RecordError, match=r"records-trees-00002\.jsonl:2: field 'kind'"):
        list(iter_trees(out.shard_path("trees", 2)))


def test_training_records_of_schema_1_are_read_and_newer_ones_refused(tmp_path):
    rec = SFTExample(id="a", problem_id="p", prompt="1+2", completion="A", steps=["A"])
    new = rec.to_dict()
    assert new["schema"] == 2 and new["completion_ids"] is None
    old = {k: v for k, v in new.items() if k not in ("prompt_ids", "completion_ids")} | {"schema": 1}
    out = StageDir(tmp_path / "sft")
    write_jsonl(out.shard_path("sft", 0), [old, new])
    assert [SFTExample.from_dict(obj, where) for where, obj in out.iter_records()] == [rec, rec]
    write_jsonl(out.shard_path("sft", 1), [{**new, "schema": 3}])
    with pytest.raises(DataFileError, match=r"records-sft-00001\.jsonl:1: field 'schema' is 3, this sppd reads sft"):
        list(out.iter_records())
    tree = Tree(problem=Problem(id="p1", question="1+2", gold="3"), prompt_ids=[1])
    write_jsonl(out.shard_path("sft", 1), [{**tree.to_dict(), "schema": 2}])  # trees are still at version 1
    with pytest.raises(DataFileError, match="field 'schema' is 2"):
        list(out.iter_records())


def test_manifest_records_each_shard_digest_and_count(tmp_path):
    import hashlib

    from sppd.io import DIGEST_SUFFIX

    out = StageDir(tmp_path)
    out.write_shard("x", 0, [{"a": 1}, {"a": 2}])
    out.write_manifest("test", counts={}, inputs={})
    shard = out.shard_path("x", 0)
    entry = out.read_manifest()["shard_digests"][shard.name]
    assert entry == {"sha256": hashlib.sha256(shard.read_bytes()).hexdigest(), "records": 2}
    assert (tmp_path / (shard.name + DIGEST_SUFFIX)).exists() and out.is_complete()
    shard.write_bytes(shard.read_bytes().replace(b'"a":2', b'"a":3'))
    assert not out.is_complete() and not out.read_manifest()  # found, set aside, manifest dropped
    assert (tmp_path / f"{shard.name}.damaged-1").exists() and not shard.exists()
