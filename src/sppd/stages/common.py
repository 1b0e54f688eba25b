"""Small pieces every stage needs: its saved config, ``--rerun-stale``, the policy (folders: ``sppd.layout``).

Process-level helpers (rank, seeds, barriers, progress bars) live in ``sppd.runtime``. The
refusals every stage shares live here too: nothing empty is written as "complete", and no
question too long to tokenize sensibly reaches a model.
"""

from __future__ import annotations

import os
from pathlib import Path

from sppd import config as _config
from sppd.errors import SppdError
from sppd.io import StageDir
from sppd.runtime import cache_root
from sppd.settings import RunConfig

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


def policy_path(cfg: RunConfig) -> Path:
    """The policy to use: ``model.path``, or the cached toy base model (trained if missing).

    The toy base model stands in only for the toy world's problems: a real-model recipe leaves
    ``model.path`` unset (so ``sppd show-config`` works) and a stage that needs it stops here."""
    if cfg.model.path:
        return Path(cfg.model.path)
    from sppd.tasks import resolve

    if not resolve(cfg.problems.source, cfg)[0].synthetic:
        raise _config.ConfigError(
            f"config key 'model.path': required (a local HF model folder); the toy base model only serves "
            f"problems.source=toy, not {cfg.problems.source!r}"
        )
    from sppd.toy.pretrain import cached_base_model

    return Path(cached_base_model(cfg.toy, cache_root()))


class EmptyStageError(SppdError):
    """A stage has nothing to do (no problems, no records): it stops rather than mark an empty folder complete."""


def require_some(count: int, message: str) -> None:
    """Stop with ``message`` when ``count`` is zero (an empty output is never "complete")."""
    if count == 0:
        raise EmptyStageError(message)


def check_problem_lengths(problems, cap: int, where: str) -> None:
    """Refuse problems whose question or gold answer is longer than ``cap`` characters.

    A 60 MB question grew the sampler's memory without bound and a 200 KB one ran for minutes;
    such a record is almost always a broken file. The error counts them and names the first.
    """
    long = [p for p in problems if len(p.question) > cap or len(p.gold) > cap]
    if long:
        first = long[0]
        size = max(len(first.question), len(first.gold))
        raise _config.ConfigError(
            f"{where}: {len(long)} problem(s) longer than problems.max_question_chars={cap} characters "
            f"(first: id {first.id!r}, {size} characters); raise the cap or fix the file"
        )
