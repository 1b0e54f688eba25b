"""One writer per stage folder: ``<folder>/.lock``, created with ``O_EXCL``, naming its holder.

Two identical commands on one run folder used to both run and interleave their output (two
``train`` runs duplicated lines of ``metrics.jsonl``). A stage takes its output folder's lock
before it writes; a second process then fails at once with an error naming the holder (host,
PID, start time). A lock whose PID is dead on this host (a ``kill -9``ed run) is stale: it is
moved aside with a warning and taken over, so resuming after a crash needs no manual step. A lock
held by another host is never taken over (its PID cannot be checked from here).

Under a multi-process launch only rank 0 locks: the ranks of one run write one folder together.
Locks are held until ``release_all`` (the command line calls it when a command ends) or exit;
taking a lock this process already holds is a no-op, so a pipeline may run stage after stage.
Base layer: stdlib and ``sppd.errors``/``sppd.runtime`` only.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time
from pathlib import Path

from sppd import runtime
from sppd.errors import SppdError

LOCK_NAME = ".lock"
_held: set[Path] = set()


class StageLockedError(SppdError):
    """Another live process holds the stage folder's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


def _is_stale(path: Path, holder: dict | None) -> bool:
    """A lock of a dead process on this host; an unreadable one (its writer died between create
    and write) once it is a minute old."""
    if holder is None:
        try:
            return time.time() - path.stat().st_mtime > 60
        except FileNotFoundError:
            return True
    return holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", -1)))


def _take_over(path: Path, holder: dict | None) -> None:
    """Move a stale lock aside (rename, so two processes cannot both remove one) and warn."""
    aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return  # another process took it over first; the O_EXCL create decides
    if _read(aside) != holder:  # a fresh lock slipped in between our read and the rename: put it back
        os.replace(aside, path)
        raise StageLockedError(f"{path.parent} is in use ({path}); try again")
    aside.unlink(missing_ok=True)
    who = _describe(holder) if holder else "an unreadable lock"
    print(f"sppd: warning: {path} was left by {who}, which is gone; taking it over", file=sys.stderr)


def acquire(folder: str | os.PathLike) -> None:
    """Lock ``folder`` for this process (rank 0 only); a live holder raises ``StageLockedError``."""
    if runtime.rank_and_world()[0] != 0:
        return
    path = Path(folder).resolve() / LOCK_NAME
    if path in _held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder and holder.get("host") == me["host"] and holder.get("pid") == me["pid"]:
                _held.add(path)  # ours (taken by an earlier call that was forgotten)
                return
            if not _is_stale(path, holder):
                who = _describe(holder) if holder else "another process"
                raise StageLockedError(
                    f"{path.parent} is in use by {who} (lock file {path}); wait for it to finish, "
                    "or delete the lock file if that process is gone"
                ) from None
            _take_over(path, holder)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        _held.add(path)
        return
    raise StageLockedError(f"{path.parent}: could not take the lock {path}; try again")


def release(folder: str | os.PathLike) -> None:
    """Drop this process's lock of ``folder`` (only if the file is still ours)."""
    path = Path(folder).resolve() / LOCK_NAME
    if path not in _held:
        return
    _held.discard(path)
    holder = _read(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def release_all() -> None:
    """Drop every lock this process holds."""
    for path in list(_held):
        release(path.parent)


atexit.register(release_all)
