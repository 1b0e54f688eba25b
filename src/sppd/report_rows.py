"""The rows of a pipeline run's report: what each evaluated model is, typed, in ``rows.json``.

The pipeline writes one ``ReportRow`` per evaluation next to the eval results; ``report.md`` is
laid out from these rows (which table a row lands in, what its Δ is against), never from the
text of a row's label.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from sppd.io import DataFileError, atomic_write_json
from sppd.types import MarginMode

ROWS_FILE = "rows.json"
ROWS_SCHEMA = 1


class RowKind(StrEnum):
    """What an evaluated model is: a step of the method, an ablation of it, or a control."""

    BASE = "base"  # the policy every stage starts from
    SFT = "sft"  # SFT-PRM (sentence-level warm-up)
    DPO = "dpo"  # DPO-PRM (sentence-level warm-up)
    SPPD = "sppd"  # Stage-1 step-DPO with the configured margin
    STAGE = "stage"  # a later stage: resample with the previous model, step-DPO again
    ABLATION_START = "ablation_start"  # the ablations' common start, evaluated at their N
    ABLATION = "ablation"  # Table 4: one margin mode (``margin``) from the common start
    GAMMA = "gamma"  # Figure 2: the dynamic margin at one ``gamma`` from the common start
    CONTROL = "control"  # the same compute spent on more pretraining


@dataclass(frozen=True)
class ReportRow:
    """One evaluated model of a pipeline run."""

    name: str  # the label shown in report.md and the key of the run's evals
    kind: RowKind
    model: str  # the model folder evaluated
    start: str | None  # the row this one's Δ is against: the model it started from at the same N; None for the base
    n: int  # N of the N-sample methods (MAJ@N, ORM@N) it was evaluated with
    gamma: float | None = None  # GAMMA rows: the margin scale
    margin: MarginMode | None = None  # ABLATION rows: the margin mode

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str) -> ReportRow:
        """A row from its JSON form; a missing, unknown or ill-typed field raises naming ``where``."""
        try:
            row = cls(**data)
            kind, margin = RowKind(row.kind), None if row.margin is None else MarginMode(row.margin)
        except (TypeError, ValueError) as exc:
            raise DataFileError(f"{where}: {exc}") from None
        if not isinstance(row.name, str) or not isinstance(row.n, int):
            raise DataFileError(f"{where}: field 'name' must be a string and 'n' an integer")
        return cls(**{**data, "kind": kind, "margin": margin})


def save_rows(run_dir: Path, rows: list[ReportRow]) -> Path:
    path = Path(run_dir) / ROWS_FILE
    atomic_write_json(path, {"schema": ROWS_SCHEMA, "rows": [r.to_dict() for r in rows]})
    return path


def load_rows(run_dir: Path) -> list[ReportRow]:
    """The rows of the run in ``run_dir``, in the order the pipeline evaluated them."""
    path = Path(run_dir) / ROWS_FILE
    data = json.loads(path.read_text())
    if data.get("schema") != ROWS_SCHEMA:
        raise DataFileError(f"{path}: field 'schema' is {data.get('schema')!r}, this sppd reads {ROWS_SCHEMA}")
    return [ReportRow.from_dict(obj, f"{path}: rows[{i}]") for i, obj in enumerate(data["rows"])]
