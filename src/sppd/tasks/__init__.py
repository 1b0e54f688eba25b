"""Tasks: where problems come from (by split) and how answers are judged.

``training_task(cfg)`` gives the task and split of the training prompts, ``benchmark_task(cfg,
name)`` those of an evaluation set; ``find(source)`` the task of a problem's source tag; ``sppd
sources`` prints ``format_sources()``.
"""

from sppd.tasks.base import Equivalence, Judge, Task
from sppd.tasks.registry import ALIASES, benchmark_task, find, format_sources, resolve, task_names, training_task

__all__ = [
    "ALIASES",
    "Equivalence",
    "Judge",
    "Task",
    "benchmark_task",
    "find",
    "format_sources",
    "resolve",
    "task_names",
    "training_task",
]
