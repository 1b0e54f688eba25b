"""Benchmark loaders: the paper's evaluation sets by name, user JSONL files, the training mix.

Shipped sets (package data under ``sppd/benchdata``, sources and licenses beside them):

=================  =======  ===============================================  ==================
name               records  file                                             gold
=================  =======  ===============================================  ==================
``gsm8k``          1319     ``gsm8k/test.jsonl``                             after ``####``
``math500``        500      ``math500/test.jsonl``                           ``answer`` field
``gaokao2023en``   385      ``gaokao2023en/test.jsonl``                      ``$...$`` answer
``ocw``            272      ``minerva_math/test.jsonl``                      last box
``olympiadbench``  675      ``olympiadbench/test.jsonl``                     ``final_answer``
``gsm8k_train``    7473     ``gsm8k/train.jsonl``                            after ``####``
``math_train``     7500     ``math/train.jsonl``                             last box
=================  =======  ===============================================  ==================

Counts are checked on every load. A problem whose gold no answer can match (an empty gold, see
:func:`sppd.eval.grading.unwinnable_reason`) is kept, flagged with the reason in its
``unwinnable`` field; :func:`unwinnable_problems` lists them and ``sppd eval`` leaves them out
(two Gaokao records have an empty answer). Other sets (the toy world's test set, a user's file) join the
registry with :func:`register_benchmark`; :func:`load_jsonl_problems` reads any JSONL file with
configurable field names.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

from sppd.errors import SppdError
from sppd.eval.answers import (
    boxed_gold,
    clean_answer,
    gaokao_gold,
    gsm8k_gold,
    olympiadbench_gold,
)
from sppd.eval.grading import unwinnable_reason
from sppd.io import read_lines


@dataclass(frozen=True)
class BenchmarkProblem:
    """One evaluation (or training-prompt) problem with its gold final answer."""

    id: str
    question: str
    gold: str
    source: str
    unwinnable: str = ""
    """Why no answer can be graded right against ``gold`` (e.g. ``"empty gold"``); ``""`` if one can."""


class BenchmarkFormatError(SppdError, ValueError):
    """A benchmark file has a malformed line; the message names file, line and field."""


@dataclass(frozen=True)
class _PackagedSet:
    """Where a shipped set lives and how its records map to problems."""

    name: str
    resource: str  # path under sppd/benchdata
    count: int
    question_field: str
    answer_field: str
    id_field: str | None
    gold_fn: Callable[[Any], str]


def _default_gold(value: Any) -> str:
    """A plain answer field: a string (cleaned of ``$`` and end punctuation) or a number."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"expected a string or a number, got {type(value).__name__}")
    return clean_answer(str(value))


def _math500_gold(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value.strip()


_PACKAGED = (
    # name, file under benchdata, count, question field, answer field, id field, gold extraction
    _PackagedSet("gsm8k", "gsm8k/test.jsonl", 1319, "question", "answer", None, gsm8k_gold),
    _PackagedSet("math500", "math500/test.jsonl", 500, "problem", "answer", "unique_id", _math500_gold),
    _PackagedSet("gaokao2023en", "gaokao2023en/test.jsonl", 385, "question", "answer", None, gaokao_gold),
    _PackagedSet("ocw", "minerva_math/test.jsonl", 272, "problem", "solution", "idx", boxed_gold),
    _PackagedSet(
        "olympiadbench",
        "olympiadbench/test.jsonl",
        675,
        "question",
        "final_answer",
        "id",
        olympiadbench_gold,
    ),
    _PackagedSet("gsm8k_train", "gsm8k/train.jsonl", 7473, "question", "answer", None, gsm8k_gold),
    _PackagedSet("math_train", "math/train.jsonl", 7500, "problem", "solution", "unique_id", boxed_gold),
)

_REGISTRY: dict[str, Callable[[], list[BenchmarkProblem]]] = {}


def register_benchmark(name: str, loader: Callable[[], list[BenchmarkProblem]]) -> None:
    """Make ``load_benchmark(name)`` call ``loader``; a name can be registered once."""
    if name in _REGISTRY:
        raise ValueError(f"benchmark {name!r} is already registered")
    _REGISTRY[name] = loader


def available_benchmarks() -> list[str]:
    """Names accepted by :func:`load_benchmark`."""
    return sorted(_REGISTRY)


def load_benchmark(name: str) -> list[BenchmarkProblem]:
    """Problems of a registered benchmark, e.g. ``load_benchmark("math500")``."""
    if name not in _REGISTRY:
        known = ", ".join(available_benchmarks())
        raise KeyError(f"unknown benchmark {name!r}; available: {known}")
    return _REGISTRY[name]()


def unwinnable_problems(name: str) -> list[BenchmarkProblem]:
    """The problems of a registered benchmark that no answer can win (their ``unwinnable`` says why)."""
    return [p for p in load_benchmark(name) if p.unwinnable]


def _load_packaged(spec: _PackagedSet) -> list[BenchmarkProblem]:
    resource = resources.files("sppd") / "benchdata"
    for part in spec.resource.split("/"):
        resource = resource / part
    problems = _parse_lines(
        resource.read_text(encoding="utf-8").splitlines(),
        str(resource),
        spec.question_field,
        spec.answer_field,
        spec.id_field,
        spec.gold_fn,
        spec.name,
    )
    if len(problems) != spec.count:
        raise ValueError(
            f"benchmark {spec.name!r}: expected {spec.count} problems, found {len(problems)} "
            f"in {resource}; the packaged data is damaged or was replaced"
        )
    return problems


for _spec in _PACKAGED:
    register_benchmark(_spec.name, partial(_load_packaged, _spec))


def load_jsonl_problems(
    path: str | Path,
    question_field: str = "question",
    answer_field: str = "answer",
    id_field: str | None = None,
    gold_fn: Callable[[Any], str] | None = None,
    source: str | None = None,
) -> list[BenchmarkProblem]:
    """Problems from a JSONL file, one JSON object per line (blank lines are skipped).

    ``gold_fn`` turns the answer field's value into the gold (default: the value as a cleaned
    string, e.g. pass :func:`sppd.eval.answers.boxed_gold` for full solutions). Without
    ``id_field`` a problem's id is ``"<source>/<record index>"``, with it ``"<source>/<id>"``.
    A malformed line raises :class:`BenchmarkFormatError` naming file, line number and field.
    """
    path = Path(path)
    lines = [line.rstrip("\r\n") for _, line in read_lines(path)]  # bytes that are not UTF-8: file:line
    return _parse_lines(
        lines,
        str(path),
        question_field,
        answer_field,
        id_field,
        gold_fn or _default_gold,
        source or path.stem,
    )


class _FieldError(Exception):
    """A problem with one field of one record; located (file, line) by the caller."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def _parse_lines(
    lines: list[str],
    where: str,
    question_field: str,
    answer_field: str,
    id_field: str | None,
    gold_fn: Callable[[Any], str],
    source: str,
) -> list[BenchmarkProblem]:
    """Problems from JSONL lines; errors name ``where`` (the file), the line and the field."""
    problems: list[BenchmarkProblem] = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = _json_object(line)
            question = _field(record, question_field)
            if not isinstance(question, str):
                kind = type(question).__name__
                raise _FieldError(question_field, f"expected a string, got {kind}")
            try:
                gold = gold_fn(_field(record, answer_field))
            except (TypeError, ValueError) as exc:
                raise _FieldError(answer_field, str(exc)) from exc
            raw_id = _field(record, id_field) if id_field is not None else len(problems)
        except _FieldError as exc:
            named = f" field {exc.field!r}:" if exc.field else ""
            raise BenchmarkFormatError(f"{where}:{line_no}:{named} {exc}") from exc
        # Ids are prefixed with the source so they stay unique across benchmarks.
        problems.append(BenchmarkProblem(f"{source}/{raw_id}", question, gold, source, unwinnable_reason(gold)))
    return problems


def _json_object(line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _FieldError(None, f"invalid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise _FieldError(None, "expected a JSON object")
    return record


def _field(record: dict, name: str) -> Any:
    if name not in record:
        raise _FieldError(name, "missing")
    return record[name]


def training_prompt_mix(n: int = 10000, gsm8k_frac: float = 0.4, seed: int = 0) -> list[BenchmarkProblem]:
    """The paper's training prompts: ``n`` problems, ``gsm8k_frac`` from GSM8K train, the rest
    from MATH train, drawn without replacement and shuffled; the same seed gives the same list.

    ``round(n * gsm8k_frac)`` GSM8K problems are taken (4000 of the default 10000).
    """
    if n < 0 or not 0.0 <= gsm8k_frac <= 1.0:
        raise ValueError("need n >= 0 and 0 <= gsm8k_frac <= 1")
    gsm8k, math_train = load_benchmark("gsm8k_train"), load_benchmark("math_train")
    n_gsm8k = round(n * gsm8k_frac)
    n_math = n - n_gsm8k
    if n_gsm8k > len(gsm8k) or n_math > len(math_train):
        raise ValueError(
            f"asked for {n_gsm8k} GSM8K and {n_math} MATH problems; only {len(gsm8k)} and {len(math_train)} exist"
        )
    rng = random.Random(seed)
    mix = rng.sample(gsm8k, n_gsm8k) + rng.sample(math_train, n_math)
    rng.shuffle(mix)
    return mix
