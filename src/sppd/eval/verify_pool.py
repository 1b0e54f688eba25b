"""math-verify in a pool of killable worker processes, each call under a wall-clock deadline.

Split from ``sppd.eval.grading`` (which decides *what* to ask math-verify) because this is the
process plumbing: fresh interpreters talking over socket pairs, deadlines, replacement of
workers that hang or die. ``GradePath``/``GradeResult`` live here because workers report them.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection, wait


class GradePath(StrEnum):
    """Which part of the grader decided an answer."""

    FAST = "fast"  # both sides plain numbers; compared exactly (decimals to 6 places)
    EXACT = "exact"  # same canonical string
    VERIFY = "verify"  # math-verify in a worker process
    TIMEOUT = "timeout"  # math-verify exceeded timeout_s; the worker was killed -> wrong
    CRASH = "crash"  # the worker died twice on the pair (e.g. memory cap, C-level abort) -> wrong
    EMPTY = "empty"  # gold or prediction is empty -> wrong
    TOO_LONG = "too_long"  # longer than max_answer_chars -> wrong, never parsed
    REJECTED = "rejected"  # a form math-verify misreads (Python "2**3") -> wrong, never parsed


@dataclass(frozen=True)
class GradeResult:
    """The verdict on one (gold, prediction) pair and why."""

    correct: bool
    path: GradePath
    reason: str


# --------------------------------------------------------------------------- worker processes

_READY = "ready"
_STARTUP_TIMEOUT_S = 120.0  # importing sympy on a loaded 2-core machine can take seconds
_MAX_STARTUP_FAILURES = 3


def _worker_main(fd: int, memory_limit_mb: int | None) -> None:
    """Worker process: receive (task_id, gold, pred, alarm_s), send (task_id, correct, reason).

    It runs until the parent kills it or goes away (EOF on the socket).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    if memory_limit_mb is not None:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.disable(logging.CRITICAL)  # math-verify logs every timeout and parse failure
    from math_verify import parse, verify

    # The same gold is graded against N samples, and popular answers repeat: parse each once.
    @functools.lru_cache(maxsize=2048)
    def parse_cached(text: str, alarm_s: int) -> list:
        return parse(f"${text}$", parsing_timeout=alarm_s)

    verify(parse("$x+1$"), parse("$1+x$"))  # build the grammar now, not inside a timed task
    conn = Connection(fd)
    conn.send(_READY)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        task_id, gold, pred, alarm_s = message
        conn.send((task_id, *_verify_pair(parse_cached, verify, gold, pred, alarm_s)))


def _verify_pair(parse, verify, gold: str, pred: str, alarm_s: int) -> tuple[bool, str]:
    """math-verify on one pair inside a worker (its main thread, so its own alarms work too)."""
    try:
        gold_parsed = parse(gold, alarm_s)
        if not gold_parsed:
            return False, "math-verify could not parse the gold answer"
        pred_parsed = parse(pred, alarm_s)
        if not pred_parsed:
            return False, "math-verify could not parse the prediction"
        same = verify(gold_parsed, pred_parsed, timeout_seconds=alarm_s)
        return bool(same), "math-verify: " + ("equivalent" if same else "not equivalent")
    except BaseException as exc:  # noqa: BLE001 - math-verify's TimeoutException is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return False, f"math-verify raised {type(exc).__name__}"


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: Connection
    started_at: float
    ready: bool = False
    task: int | None = None
    deadline: float = math.inf


def _start_worker(memory_limit_mb: int | None) -> _Worker:
    """A fresh interpreter running :func:`_worker_main`, talking over a socket pair.

    A plain subprocess rather than ``multiprocessing``'s spawn: it is just as isolated from the
    parent (torch, threads) but never re-imports the parent's ``__main__``, so grading works from
    unguarded scripts and notebooks too.
    """
    parent_sock, child_sock = socket.socketpair()
    # Like multiprocessing's spawn, the child gets the parent's sys.path, so it imports this very
    # sppd (and math-verify) however the parent found them.
    code = (
        "import json, sys; sys.path[:] = json.loads(sys.argv[3]); "
        "from sppd.eval.verify_pool import _worker_main; "
        "_worker_main(int(sys.argv[1]), None if sys.argv[2] == 'none' else int(sys.argv[2]))"
    )
    memory = "none" if memory_limit_mb is None else str(memory_limit_mb)
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(child_sock.fileno()), memory, json.dumps(sys.path)],
        pass_fds=(child_sock.fileno(),),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # e.g. GMP's "overflow" message before it aborts
    )
    child_sock.close()  # so the parent sees EOF when the worker dies
    return _Worker(process, Connection(parent_sock.detach()), time.monotonic())


def _stop_worker(worker: _Worker) -> None:
    if worker.process.poll() is None:
        worker.process.kill()
    worker.process.wait(timeout=10)
    worker.conn.close()


class VerifyPool:
    """Worker processes running math-verify, each task under a wall-clock deadline.

    A worker past its deadline is killed and replaced; so is one that dies. A task whose worker
    died is tried once more on another worker (a crash can be the worker's bad luck, e.g. the OOM
    killer, rather than the answer's); a second death grades it wrong. Workers start on the first
    :meth:`run` and are replaced in the background while the others keep working.
    """

    def __init__(self, size: int, memory_limit_mb: int | None) -> None:
        self._size = size
        self._memory_limit_mb = memory_limit_mb
        self._workers: list[_Worker] = []
        self._startup_failures = 0

    def _replace(self, worker: _Worker) -> None:
        _stop_worker(worker)
        self._workers[self._workers.index(worker)] = _start_worker(self._memory_limit_mb)

    def close(self) -> None:
        """Stop every worker. Killing is safe (workers hold no state) and never waits on a hang."""
        for worker in self._workers:
            _stop_worker(worker)
        self._workers = []

    def run(self, pairs: list[tuple[str, str]], timeout_s: float) -> list[GradeResult]:
        """Verify (gold, pred) pairs in parallel; a pair past ``timeout_s`` is graded wrong."""
        while len(self._workers) < self._size:
            self._workers.append(_start_worker(self._memory_limit_mb))
        # math-verify's own alarms (whole seconds) end most Python-level slowness gracefully,
        # without a respawn; the kill at timeout_s is the guarantee.
        alarm_s = max(1, math.floor(timeout_s / 2))
        results: list[GradeResult | None] = [None] * len(pairs)
        pending = deque(range(len(pairs)))
        crashed: set[int] = set()  # tasks whose worker died once already
        try:
            while pending or any(w.task is not None for w in self._workers):
                self._dispatch(pending, pairs, timeout_s, alarm_s)
                self._collect(results, pending, crashed)
                self._enforce_deadlines(results, timeout_s)
        except BaseException:
            self.close()  # workers may hold tasks of this batch; never let them leak into the next
            raise
        return [r for r in results if r is not None]

    def _dispatch(self, pending: deque, pairs: list, timeout_s: float, alarm_s: int) -> None:
        for worker in self._workers:
            if not pending or not worker.ready or worker.task is not None:
                continue
            task = pending.popleft()
            try:
                worker.conn.send((task, pairs[task][0], pairs[task][1], alarm_s))
            except OSError:  # died while idle: not this task's fault, so queue it again
                pending.appendleft(task)
                self._replace(worker)
                continue
            worker.task, worker.deadline = task, time.monotonic() + timeout_s

    def _collect(self, results: list, pending: deque, crashed: set[int]) -> None:
        """Wait for the next message or deadline, and record what arrived."""
        deadlines = [w.deadline for w in self._workers if w.task is not None]
        deadlines += [w.started_at + _STARTUP_TIMEOUT_S for w in self._workers if not w.ready]
        wait_s = max(0.0, min(deadlines, default=time.monotonic()) - time.monotonic())
        by_conn = {w.conn: w for w in self._workers if w.task is not None or not w.ready}
        for conn in wait(list(by_conn), timeout=wait_s):
            worker = by_conn[conn]
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._on_worker_death(worker, results, pending, crashed)
                continue
            if message == _READY:
                worker.ready = True
                self._startup_failures = 0
            elif worker.task is not None:
                task_id, correct, reason = message
                results[task_id] = GradeResult(correct, GradePath.VERIFY, reason)
                worker.task, worker.deadline = None, math.inf

    def _on_worker_death(self, worker: _Worker, results: list, pending: deque, crashed: set[int]) -> None:
        if not worker.ready:
            # One death at startup can be bad luck (the OOM killer); several in a row is a broken
            # environment (math-verify missing, memory cap too low), which must not loop forever.
            code = worker.process.wait(timeout=10)
            self._startup_failures += 1
            if self._startup_failures >= _MAX_STARTUP_FAILURES:
                raise RuntimeError(
                    f"math-verify workers keep failing to start (last exit code {code}); "
                    "is math-verify installed, and is memory_limit_mb large enough?"
                )
            self._replace(worker)
            return
        if worker.task is not None:
            code = worker.process.wait(timeout=10)
            if worker.task in crashed:
                reason = f"math-verify worker died twice on this pair (last exit code {code})"
                results[worker.task] = GradeResult(False, GradePath.CRASH, reason)
            else:
                crashed.add(worker.task)
                pending.appendleft(worker.task)  # next on another worker; this one is replaced
        self._replace(worker)

    def _enforce_deadlines(self, results: list, timeout_s: float) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.task is not None and now >= worker.deadline:
                reason = f"math-verify exceeded {timeout_s:g}s; worker killed"
                results[worker.task] = GradeResult(False, GradePath.TIMEOUT, reason)
                self._replace(worker)
            elif not worker.ready and now >= worker.started_at + _STARTUP_TIMEOUT_S:
                self._replace(worker)
                raise RuntimeError("math-verify worker did not start in time")
