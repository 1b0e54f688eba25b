"""Small pieces every stage needs: its folder, seeding, process rank, progress bars."""

from __future__ import annotations

import hashlib
import os
import random
import sys
from pathlib import Path

from sppd import config as _config
from sppd.io import StageDir
from sppd.settings import RunConfig


def stage_dir(cfg: RunConfig, name: str, override: str = "") -> StageDir:
    """``override`` if set, else ``<run_dir>/<name>``."""
    return StageDir(Path(override) if override else Path(cfg.run_dir) / name)


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``accelerate launch``/torchrun env)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def barrier() -> None:
    """Wait for all processes when launched with several; a no-op otherwise."""
    if rank_and_world()[1] > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


RERUN_STALE_ENV = "SPPD_RERUN_STALE"


def rerun_stale() -> bool:
    """Whether a stale stage folder is moved aside and redone (``--rerun-stale``) rather than refused."""
    return os.environ.get(RERUN_STALE_ENV) == "1"


def set_rerun_stale(on: bool) -> bool:
    """Turn ``--rerun-stale`` on or off for this process and its children; returns the previous state.

    An environment variable rather than a stage argument: the pipeline calls stages with configs
    only, and processes started by ``accelerate launch`` inherit it.
    """
    previous = rerun_stale()
    if on:
        os.environ[RERUN_STALE_ENV] = "1"
    else:
        os.environ.pop(RERUN_STALE_ENV, None)
    return previous


def save_stage_config(out: StageDir, cfg: RunConfig) -> None:
    out.path.mkdir(parents=True, exist_ok=True)
    out.save_config(_config.dump_yaml(cfg))


def progress(total: int, desc: str, unit: str = "it", initial: int = 0):
    """A tqdm bar with rate and ETA; quiet when not on a terminal unless SPPD_PROGRESS=1."""
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() or os.environ.get("SPPD_PROGRESS") == "1"
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not show, dynamic_ncols=True)


def policy_path(cfg: RunConfig) -> Path:
    """The policy to use: ``model.path``, or the cached toy base model (trained if missing)."""
    if cfg.model.path:
        return Path(cfg.model.path)
    from sppd.toy.pretrain import cached_base_model

    return Path(cached_base_model(cfg.toy, cache_root()))


def cache_root() -> Path:
    """Where reusable artifacts (the toy base model) live: $SPPD_CACHE or ~/.cache/sppd."""
    return Path(os.environ.get("SPPD_CACHE", Path.home() / ".cache" / "sppd"))
