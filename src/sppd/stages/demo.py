"""``sppd demo`` (``make demo``): the pipeline on the toy world, then the main table on screen."""

from __future__ import annotations

import time
from pathlib import Path

from sppd.settings import RunConfig
from sppd.stages import pipeline


def main(cfg: RunConfig) -> dict:
    start = time.perf_counter()
    result = pipeline.main(cfg)
    report = Path(result["report"]).read_text()
    section = report.split("## ", 2)[1] if "## " in report else report
    print("\n## " + section.strip())
    print(f"\nFull report: {result['report']}  (wall time {(time.perf_counter() - start) / 60:.1f} min)")
    return result
