"""Task names -> tasks, and the rules for which split a stage reads.

A name is a task (``toy``, ``gsm8k``, ``math``, the shipped test sets, ``mix``), an alias that
pins one split of a task (``toy-val`` = toy/val; ``gsm8k_train`` and ``math_train``, the shipped
benchmark names of the train files), any other registered benchmark (a test-only task), or a path
to a JSONL file (one split, ``file``).

Training prompts (``problems.*``, read by ``sppd sample`` and the pipeline's sampling) default to a
task's ``train`` split and never read a ``test`` split unless ``problems.allow_test_split`` is set:
sampling the evaluation problems would train on them. Evaluation (``eval.benchmarks``) reads a
task's ``test`` split unless the name pins another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sppd.config import ConfigError
from sppd.tasks.base import TEST_SPLIT, Task
from sppd.tasks.mathsets import FILE_SPLIT, SHIPPED, is_path, jsonl_task, mix_task, shipped_task
from sppd.tasks.toy import toy_task

if TYPE_CHECKING:  # sppd.settings pulls in torch; `sppd sources` needs no config
    from sppd.settings import RunConfig

# name -> task built from the run config (the toy world is configurable; None: defaults)
_TASKS: dict[str, Callable[[RunConfig | None], Task]] = {
    "toy": lambda cfg: toy_task(cfg.toy.world if cfg else None),
    **{name: (lambda cfg, name=name: shipped_task(name, SHIPPED[name])) for name in SHIPPED},
    "mix": lambda cfg: mix_task(),
}
# name -> (task, split): names that existing configs use for one split of a task
ALIASES: dict[str, tuple[str, str]] = {
    "toy-val": ("toy", "val"),
    "gsm8k_train": ("gsm8k", "train"),
    "math_train": ("math", "train"),
    "minerva_math": ("ocw", "test"),
}


def task_names() -> list[str]:
    """Every task name and alias (a JSONL path is accepted too)."""
    return list(_TASKS) + list(ALIASES)


def resolve(name: str, cfg: RunConfig | None = None, key: str = "problems.source") -> tuple[Task, str | None]:
    """The task ``name`` means and the split it pins (None: the caller's rule picks one)."""
    if name in ALIASES:
        task_name, split = ALIASES[name]
        return _TASKS[task_name](cfg), split
    if name in _TASKS:
        return _TASKS[name](cfg), None
    from sppd.eval.benchmarks import available_benchmarks

    if name in available_benchmarks():  # registered by a plugin: an evaluation set
        return shipped_task(name, {TEST_SPLIT: name}), None
    if name and is_path(name):
        if cfg is None:
            return jsonl_task(name), None
        p = cfg.problems
        return jsonl_task(name, p.question_field, p.answer_field, p.id_field), None
    raise ConfigError(
        f"config key {key!r}: unknown source {name!r}; valid: {', '.join(task_names())} or a path to a .jsonl file"
    )


def find(name: str) -> Task | None:
    """The task of a problem's ``source`` tag, or None when it names none (e.g. a JSONL file's stem)."""
    try:
        return resolve(name)[0]
    except ConfigError:
        return None


def training_task(cfg: RunConfig) -> tuple[Task, str]:
    """The task and split of the training prompts (``problems.*``); a test split needs permission."""
    p = cfg.problems
    task, pinned = resolve(p.source, cfg, "problems.source")
    if pinned and p.split and p.split != pinned:
        raise ConfigError(
            f"config key 'problems.split': {p.split!r}, but problems.source {p.source!r} is {task.name}'s "
            f"{pinned!r} split; set problems.source={task.name}"
        )
    split = p.split or pinned or _training_split(task)
    task.check_split(split, "problems.split")
    if split == TEST_SPLIT and not p.allow_test_split:
        raise ConfigError(
            f"config key 'problems.split': {task.name!r} split {split!r} is held out for evaluation; "
            "training on it leaks the test set (use a train split, see `sppd sources`, or set "
            "problems.allow_test_split=true)"
        )
    return task, split


def _training_split(task: Task) -> str:
    """``train``, else a task's only split (a JSONL file's, or a test-only set's: refused above)."""
    if "train" in task.splits:
        return "train"
    if len(task.splits) == 1:
        return task.splits[0]
    raise ConfigError(f"config key 'problems.split': task {task.name!r} needs one of {', '.join(task.splits)}")


def benchmark_task(cfg: RunConfig, name: str, key: str = "eval.benchmarks") -> tuple[Task, str]:
    """The task and split an evaluation name reads: the pinned split, else ``test``, else its only one."""
    task, pinned = resolve(name, cfg, key)
    split = pinned or (TEST_SPLIT if TEST_SPLIT in task.splits else task.splits[0])
    task.check_split(split, key)
    return task, split


def format_sources() -> str:
    """What ``sppd sources`` prints: every task with its splits and problem counts."""
    rows = []
    for name in _TASKS:
        task = _TASKS[name](None)
        cells = [f"{split} {_count(task, split)}" for split in task.splits]
        note = "generated on demand (toy.world); any problems.n" if task.synthetic else ""
        rows.append((name, "  ".join(cells), note))
    rows.append(("<path>.jsonl", f"{FILE_SPLIT} -", "your file: problems.question_field / answer_field / id_field"))
    width = max(len(r[0]) for r in rows) + 2
    col = max(len(r[1]) for r in rows) + 2
    lines = [f"{name:{width}s}{cells:{col}s}{note}".rstrip() for name, cells, note in rows]
    lines.append("")
    lines.append("aliases: " + ", ".join(f"{a} = {t}/{s}" for a, (t, s) in ALIASES.items()))
    lines.append(
        "training prompts (problems.source/split) default to the train split; a test split needs "
        "problems.allow_test_split=true. eval.benchmarks read the test split."
    )
    return "\n".join(lines)


def _count(task: Task, split: str) -> str:
    n = task.count(split)
    return "-" if n is None else str(n)
