"""Stage fingerprints: is an existing stage folder the output of the config a stage runs with now?

A complete stage folder is skipped, so one written under another config would be silently
reused, and every stage downstream with it (rerun the pipeline with a new DPO learning rate and
the old DPO model stays). Each stage therefore declares what its output depends on: some
config sections and its input folders (``Fingerprint.of``); fields declared not to affect
output (``sppd.digest``: threads, logging, folder keys) never count. Their digest goes into the
folder's ``manifest.json`` as ``fingerprint``; an input folder counts by its own fingerprint, so
a change anywhere upstream reaches every stage below it. ``reuse`` is the one check at each stage's
"complete, nothing to do" point, and it also guards resuming a partial folder, since mixing
shards of two configs is worse than redoing them.

Config values equal to their dataclass default are left out of the digest, so adding a field
whose default keeps the old behaviour does not make every existing run stale. Code changes
(a changed default included) are not tracked.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sppd import config as _config
from sppd import digest as _digest
from sppd import runtime
from sppd.config import ConfigError
from sppd.io import StageDir
from sppd.settings import RunConfig
from sppd.stages import common
from sppd.toy.pretrain import COMPLETE_MARKER, config_hash

CONFIG_FILE = "config.yaml"
_UNSET = "<unset>"
# stage -> the config key that moves its output elsewhere (for the error message)
OUT_KEYS = {
    "sample": "sample.out",
    "score": "score.out",
    "train": "train.out",
    "eval": "eval.out",
    "prm_train": "prm.out",
}


def select(data: Mapping, keys: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The output-affecting values of plain run config ``data`` under ``keys`` but not ``exclude``,
    defaults left out (``sppd.digest.select``)."""
    return _digest.select(RunConfig, data, keys, exclude)


def folder_id(path: str | os.PathLike) -> str:
    """An input folder as a fingerprint input: the fingerprint its stage recorded, else the toy
    base model's config hash (its cache folder has no manifest), else its absolute path."""
    path = Path(path)
    try:
        recorded = (StageDir(path).read_manifest() or {}).get("fingerprint")
    except (OSError, ValueError):
        recorded = None
    if recorded:
        return str(recorded)
    marker = path / COMPLETE_MARKER
    if marker.is_file():
        return f"toy-base-{marker.read_text().strip()}"
    return str(path.resolve())


def policy_id(cfg: RunConfig, model_path: str | os.PathLike | None = None) -> str:
    """The policy a stage runs (``model_path``, ``model.path`` or the toy base model), identified
    without training the toy base model when the cache lacks it."""
    if model_path or cfg.model.path:
        return folder_id(model_path or cfg.model.path)
    return f"toy-base-{config_hash(cfg.toy)}"


@dataclass(frozen=True)
class Fingerprint:
    """What one stage's output depends on: config values and input folders."""

    stage: str
    keys: tuple[str, ...]  # config keys or sections the stage reads (dotted prefixes)
    exclude: tuple[str, ...]  # output fields under ``keys`` this stage's output still does not depend on
    values: dict[str, Any]  # the current config's values under ``keys``, defaults left out
    inputs: dict[str, str]  # input name -> that folder's fingerprint (``folder_id``) or identity
    sources: dict[str, str] = field(default_factory=dict)  # input name -> folder, for messages

    @classmethod
    def of(
        cls,
        stage: str,
        cfg: RunConfig,
        keys: Iterable[str],
        exclude: Iterable[str] = (),
        inputs: Mapping[str, str | os.PathLike] | None = None,
    ) -> Fingerprint:
        """A Path input is a folder (identified by ``folder_id``); a str is an identity as is."""
        ids, sources = {}, {}
        for name, value in (inputs or {}).items():
            if isinstance(value, os.PathLike):
                ids[name], sources[name] = folder_id(value), str(value)
            else:
                ids[name] = sources[name] = str(value)
        keys, exclude = tuple(keys), tuple(exclude)
        return cls(stage, keys, exclude, select(_config.to_dict(cfg), keys, exclude), ids, sources)

    @property
    def digest(self) -> str:
        return _digest.digest({"stage": self.stage, "config": self.values, "inputs": self.inputs})

    def manifest_fields(self) -> dict[str, Any]:
        """What ``StageDir.write_manifest`` records: the digest, and the inputs to explain a change."""
        return {"fingerprint": self.digest, "fingerprint_inputs": self.inputs}


def config_changes(folder: Path, fp: Fingerprint) -> list[str]:
    """``key: old -> new`` for the stage's keys where the folder's ``config.yaml`` differs."""
    try:
        old_data = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(old_data, Mapping):
        return []
    old, new, defaults = select(old_data, fp.keys, fp.exclude), fp.values, _digest.defaults(RunConfig)
    lines = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key, defaults.get(key, _UNSET)), new.get(key, defaults.get(key, _UNSET))
        if before != after:
            lines.append(f"{key}: {before!r} -> {after!r}")
    return lines


def input_changes(manifest: Mapping, fp: Fingerprint) -> list[str]:
    """The inputs whose fingerprint differs from the one the folder recorded."""
    old = manifest.get("fingerprint_inputs") or {}
    return [
        f"input '{name}' ({fp.sources.get(name, old.get(name))}) changed since the folder was made"
        for name in sorted(old.keys() | fp.inputs.keys())
        if old.get(name) != fp.inputs.get(name)
    ]


def _stale_reasons(out: StageDir, fp: Fingerprint, complete: bool, has_work: bool) -> list[str] | None:
    """Why ``out`` is not this config's output, or None when it is (or holds nothing to mix)."""
    manifest = out.read_manifest() or {}
    recorded = manifest.get("fingerprint")
    if recorded:
        if recorded == fp.digest:
            return None
        reasons = config_changes(out.path, fp) + input_changes(manifest, fp)
        return reasons or [f"its fingerprint {recorded} is not this config's {fp.digest}"]
    if complete:
        if runtime.rank_and_world()[0] == 0:
            print(
                f"sppd: warning: {out.path} has no config fingerprint (written by an older sppd); "
                "reusing it unchecked",
                file=sys.stderr,
            )
        return None
    return (config_changes(out.path, fp) or None) if has_work else None


def stale_folder_name(path: Path) -> Path:
    """``<folder>.stale-<n>`` with the first free n."""
    n = 1
    while path.with_name(f"{path.name}.stale-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}.stale-{n}")


def reuse(out: StageDir, fp: Fingerprint, complete: bool, has_work: bool) -> bool:
    """Whether the stage can skip: ``out`` is complete and was made by this config.

    A folder made by another config, complete or holding work a resume would build on
    (``has_work``), is stale: a ``ConfigError`` names what changed, or with ``--rerun-stale`` the
    folder is moved to ``<folder>.stale-<n>`` and the stage runs afresh. A complete folder with
    no fingerprint (an older sppd) is reused with a warning. Every process of a multi-process
    run calls this; only rank 0 moves the folder.
    """
    moving = common.rerun_stale()
    several = moving and runtime.rank_and_world()[1] > 1
    if several:
        runtime.barrier()  # every rank reads the folder before rank 0 may move it
    reasons = _stale_reasons(out, fp, complete, has_work)
    if reasons is None:
        return complete
    if not moving:
        where = OUT_KEYS.get(fp.stage.split("/")[0], "the stage's out key")
        what = "was made" if complete else "holds unfinished work made"
        raise ConfigError(
            f"{out.path} {what} with another config, so {fp.stage} will not reuse it:\n  "
            + "\n  ".join(reasons)
            + f"\nDelete the folder, write elsewhere (another run_dir or {where}), or rerun with "
            f"--rerun-stale to move it to {stale_folder_name(out.path)} and redo the stage."
        )
    if runtime.rank_and_world()[0] == 0:
        target = stale_folder_name(out.path)
        out.path.rename(target)
        print(f"{fp.stage}: {out.path} was made with another config; moved it to {target}")
    if several:
        runtime.barrier()
    return False
