"""The eval stage's judge is built from ``eval.grade_timeout_s`` and ``eval.grade_workers``."""

import time

from sppd.judging import MathJudge, toy_judge
from sppd.records import Problem
from sppd.settings import EvalConfig, RunConfig
from sppd.stages.eval import bench_judge


def test_eval_settings_reach_the_judge():
    cfg = RunConfig(eval=EvalConfig(grade_timeout_s=0.25, grade_workers=3))
    judge = bench_judge(cfg, "math500")
    try:
        assert isinstance(judge, MathJudge)
        assert (judge.grader.config.timeout_s, judge.grader.config.workers) == (0.25, 3)
    finally:
        judge.close()
    assert bench_judge(cfg, "toy") is toy_judge


def test_a_tiny_grade_timeout_is_honoured():
    judge = bench_judge(RunConfig(eval=EvalConfig(grade_timeout_s=0.3, grade_workers=1)), "math500")
    try:
        judge([(Problem("p", "q", "x"), "\\boxed{x+0}")])  # start the worker before timing
        start = time.monotonic()
        ((answer, correct),) = judge([(Problem("p", "q", "5"), "\\boxed{2^{2^{2^{2^{2^{2^{99}}}}}}}")])
        elapsed = time.monotonic() - start
    finally:
        judge.close()
    assert answer == "2^{2^{2^{2^{2^{2^{99}}}}}}" and not correct
    assert elapsed < 0.3 + 3.0  # the 5 s default would not be over yet
