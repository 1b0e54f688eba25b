"""Stage artifact folders: JSONL shards, manifests, atomic writes and resume.

A stage folder holds ``records-<tag>-<n>.jsonl`` shards, the resolved ``config.yaml`` and, once
the stage is complete, ``manifest.json``. Each shard is written to a temporary name and renamed
into place, so a shard either exists whole or not at all: a stage killed at any point (even
``kill -9``) and rerun finds the finished shards, skips their work units and redoes only the
missing ones, without losing or duplicating a record.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sppd.records import SCHEMA_VERSION, Tree, reads_schema, schema_of

MANIFEST = "manifest.json"


class DataFileError(ValueError):
    """A data file is malformed; the message names the file, line and field."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so readers never see a partial file (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Atomically write ``records`` as one JSON object per line; returns the count."""
    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)``; a malformed line raises ``DataFileError`` naming it."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DataFileError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _shard_records(shard: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(file:line, record)`` of one shard; a record of a schema version this sppd cannot read is refused."""
    for lineno, obj in read_jsonl(shard):
        schema, kind = obj.get("schema"), obj.get("kind")
        if not reads_schema(kind, schema):
            raise DataFileError(
                f"{shard}:{lineno}: field 'schema' is {schema!r}, this sppd reads {kind or 'records'} "
                f"up to version {schema_of(kind)}"
            )
        yield f"{shard}:{lineno}", obj


def file_digest(path: str | os.PathLike) -> str:
    """Short sha256 of a file, recorded in manifests to tie outputs to their inputs."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class StageDir:
    """One stage's artifact folder."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def shard_path(self, tag: str, index: int) -> Path:
        return self.path / f"records-{tag}-{index:05d}.jsonl"

    def shards(self) -> list[Path]:
        """Finished shards, in name order (temporary files of killed writes are ignored)."""
        if not self.path.exists():
            return []
        return sorted(self.path.glob("records-*.jsonl"))

    def has_shard(self, tag: str, index: int) -> bool:
        return self.shard_path(tag, index).exists()

    def write_shard(self, tag: str, index: int, records: Iterable[dict[str, Any]]) -> int:
        return write_jsonl(self.shard_path(tag, index), records)

    def iter_records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(where, record)`` over all shards; ``where`` is ``file:line`` for errors."""
        for shard in self.shards():
            yield from _shard_records(shard)

    def is_complete(self) -> bool:
        manifest = self.read_manifest()
        return bool(manifest and manifest.get("complete"))

    def read_manifest(self) -> dict[str, Any] | None:
        path = self.path / MANIFEST
        if not path.exists():
            return None
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    def write_manifest(self, stage: str, counts: dict[str, Any], inputs: dict[str, Any], **extra: Any) -> None:
        """Mark the stage complete: counts, schema version, inputs and timing."""
        manifest = {
            "stage": stage,
            "complete": True,
            "schema": SCHEMA_VERSION,
            "counts": counts,
            "inputs": inputs,
            "shards": [p.name for p in self.shards()],
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **extra,
        }
        atomic_write_json(self.path / MANIFEST, manifest)

    def invalidate(self) -> None:
        """Drop the manifest (the stage will be redone/extended), keeping finished shards."""
        (self.path / MANIFEST).unlink(missing_ok=True)

    def save_config(self, yaml_text: str) -> None:
        atomic_write_text(self.path / "config.yaml", yaml_text)


def iter_trees(source: StageDir | str | os.PathLike) -> Iterator[Tree]:
    """The trees of a stage folder (every shard, in name order) or of one shard file, streamed.

    A record of another schema version, or one that is not a well-formed tree, raises an error
    naming its file and line.
    """
    if isinstance(source, StageDir):
        shards = source.shards()
    elif Path(source).is_dir():
        shards = StageDir(Path(source)).shards()
    else:
        shards = [Path(source)]
    for shard in shards:
        for where, obj in _shard_records(shard):
            yield Tree.from_dict(obj, where)
