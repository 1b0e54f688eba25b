"""Toy base models shipped inside the package, so a fresh machine need not pretrain one.

A shipped checkpoint is a copy of a cached base-model folder (``toy-base-<hash>``: weights, HF
config, tokenizer, ``pretrain.json``, ``curve.jsonl``; not the curve PNG nor the complete marker)
under :func:`shipped_root`. :func:`sppd.toy.pretrain.cached_base_model` copies it into the cache
when the cache has none; ``sppd toy pretrain --verify`` (:mod:`sppd.toy.reproduce`) retrains the
config from scratch and compares, which is what makes a committed checkpoint trustworthy;
``sppd toy pretrain --ship`` writes one. This module only finds and copies folders.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

# overrides the shipped folder (tests ship into a temporary one)
SHIPPED_ENV = "SPPD_SHIPPED_CHECKPOINTS"
# what a shipped copy leaves out: the PNG is a binary nobody needs to reproduce; the marker belongs to the cache
LEFT_OUT = ("curve.png", "COMPLETE")  # sppd.toy.pretrain.COMPLETE_MARKER, which imports this module
REQUIRED = ("model.safetensors", "config.json", "pretrain.json")


def shipped_root() -> Path:
    """Folder holding the shipped ``toy-base-<hash>`` checkpoints: ``$SPPD_SHIPPED_CHECKPOINTS``,
    else ``checkpoints/`` next to this module (package data)."""
    return Path(os.environ.get(SHIPPED_ENV) or Path(__file__).resolve().parent / "checkpoints")


def shipped_checkpoint(name: str, root: str | Path | None = None) -> Path | None:
    """The shipped folder ``name`` (``toy-base-<hash>``) if it is there and whole, else None.

    Whole means the required files exist and ``pretrain.json`` names the same hash, so a folder
    renamed by hand is not taken for another config's model.
    """
    folder = Path(root or shipped_root()) / name
    if not all((folder / f).is_file() for f in REQUIRED):
        return None
    try:
        summary_hash = json.loads((folder / "pretrain.json").read_text()).get("config_hash")
    except (OSError, ValueError):
        return None
    return folder if name == f"toy-base-{summary_hash}" else None


def copy_checkpoint(source: Path, dest: Path) -> None:
    """Copy the files of the model folder ``source`` into the new folder ``dest``, minus ``LEFT_OUT``."""
    shutil.copytree(source, dest, ignore=lambda _dir, names: [n for n in names if n in LEFT_OUT])


def ship(source: str | Path, root: str | Path | None = None) -> Path:
    """Copy the base-model folder ``source`` (``toy-base-<hash>``) into the shipped root, replacing
    any earlier copy of that name; returns the shipped folder.

    The copy goes to a temporary sibling that is renamed into place, so an interrupted ship
    never leaves a half-written folder that :func:`shipped_checkpoint` would accept.
    """
    source, root = Path(source), Path(root or shipped_root())
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / source.name, root / f".tmp-{source.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    copy_checkpoint(source, tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final
