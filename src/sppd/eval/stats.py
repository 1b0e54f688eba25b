"""Statistics for reporting: bootstrap confidence intervals of accuracy, Student-t intervals over
seeds, and markdown tables.

Pure Python (``random`` with a fixed seed), so an interval is reproducible on any machine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfidenceInterval:
    """A mean with its bootstrap interval ``[low, high]`` at ``level`` (e.g. 0.95)."""

    mean: float
    low: float
    high: float
    level: float


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method) of already sorted values."""
    position = q * (len(sorted_values) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


def bootstrap_ci(
    values: Sequence[float | bool], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> ConfidenceInterval:
    """Percentile-bootstrap interval of the mean of ``values`` (e.g. per-problem correctness).

    Resamples ``len(values)`` items with replacement ``n_boot`` times with ``random.Random(seed)``
    and takes the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled means.
    """
    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    if n_boot < 1 or not 0.0 < level < 1.0:
        raise ValueError("need n_boot >= 1 and 0 < level < 1")
    data = [float(v) for v in values]
    n = len(data)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(data, k=n)) / n for _ in range(n_boot))
    alpha = (1.0 - level) / 2.0
    return ConfidenceInterval(
        mean=sum(data) / n,
        low=_quantile(means, alpha),
        high=_quantile(means, 1.0 - alpha),
        level=level,
    )


# Two-sided 95% quantiles t_{0.975, df} of Student's t for df = 1..30 (standard tables); above 30 the
# Cornish-Fisher expansion below is within 1e-3 of the exact value, without needing scipy.
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959964


def t_quantile_975(df: int) -> float:
    """t_{0.975} with ``df`` degrees of freedom: the half-width factor of a 95% interval."""
    if df < 1:
        raise ValueError(f"t_quantile_975 needs df >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample standard deviation and 95% Student-t interval of one number over ``n`` seeds."""

    mean: float
    sd: float
    low: float
    high: float
    n: int


def t_interval(values: Sequence[float]) -> SeedSummary:
    """``mean ± t_{0.975, n-1} · sd / sqrt(n)`` over ``values`` (n >= 2; one value: sd 0, interval = it)."""
    if not values:
        raise ValueError("t_interval needs at least one value")
    n, mean = len(values), sum(values) / len(values)
    if n == 1:
        return SeedSummary(mean, 0.0, mean, mean, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return SeedSummary(mean, sd, mean - half, mean + half, n)


def format_accuracy(ci: ConfidenceInterval, digits: int = 1) -> str:
    """``"45.2 [41.0, 49.3]"``: mean and interval as percentages."""
    return f"{100 * ci.mean:.{digits}f} [{100 * ci.low:.{digits}f}, {100 * ci.high:.{digits}f}]"


def _cell(value: object, float_digits: int) -> str:
    if isinstance(value, ConfidenceInterval):
        return format_accuracy(value, float_digits)
    if isinstance(value, float):
        return f"{value:.{float_digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str] | None = None,
    float_digits: int = 1,
) -> str:
    """A GitHub markdown table of metric rows.

    ``columns`` defaults to the keys in order of first appearance; a missing cell is empty.
    Floats get ``float_digits`` decimals; a :class:`ConfidenceInterval` is shown as percentages
    via :func:`format_accuracy`; ``|`` in text is escaped. Numeric columns are right-aligned.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if not columns:
        raise ValueError("markdown_table needs at least one column")
    numeric = {
        c: bool(rows) and all(isinstance(r.get(c), (int, float, ConfidenceInterval)) for r in rows) for c in columns
    }
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if numeric[c] else "---" for c in columns) + "|",
    ]
    for row in rows:
        cells = [_cell(row[c], float_digits) if c in row else "" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
