"""Grading throughput (answers/s) on MATH500-style answers, with and without the fast path.

Pairs: every MATH500 gold against (a) itself, (b) an equivalent rewrite and (c) a wrong answer.
Both graders run in the same process on the same pairs, with their workers started before the
clock starts. Throughput is printed for the plain-number pairs (where the fast path decides
alone), for the rest (canonical-string matches and math-verify) and for all, with the ratio.

Run: ``python benchmarks/bench_grading.py [--workers 2] [--limit 500]`` (about 15-30 s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from sppd.eval.benchmarks import load_benchmark
from sppd.eval.canonical import parse_plain_number
from sppd.eval.grading import Grader, GradeResult


def rewrite(gold: str) -> str:
    """An equivalent answer written differently (string edits only, nothing evaluated)."""
    number = parse_plain_number(gold)
    if number is not None and not number.percent:
        value = number.value
        return f"{value.numerator}/{value.denominator}" if value.denominator != 1 else f"{value}.0"
    if not any(ch in gold for ch in "x=,"):
        return f"x = {gold}"  # math-verify accepts "x = 5" for 5
    return "\\displaystyle " + gold  # same maths, different string


def perturb(gold: str) -> str:
    """A wrong answer close to the gold."""
    number = parse_plain_number(gold)
    if number is not None:
        return str(number.value + 1)
    return f"{gold} + 1" if "," not in gold else gold + ", 0"


def make_pairs(limit: int) -> list[tuple[str, str]]:
    golds = [p.gold for p in load_benchmark("math500")][:limit]
    equal = [(g, g) for g in golds]
    return equal + [(g, rewrite(g)) for g in golds] + [(g, perturb(g)) for g in golds]


def is_plain(pair: tuple[str, str]) -> bool:
    return all(parse_plain_number(side) is not None for side in pair)


def timed(grader: Grader, subsets: dict[str, list]) -> tuple[dict[str, float], list[GradeResult]]:
    """Seconds per subset (same grader, workers started before the clock) and all results."""
    grader.grade_many([("x+1", "1+x")] * grader.config.workers)
    seconds, results = {}, []
    for name, pairs in subsets.items():
        start = time.perf_counter()
        results += grader.grade_many(pairs)
        seconds[name] = time.perf_counter() - start
    return seconds, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=500, help="MATH500 golds to use")
    parser.add_argument("--timeout-s", type=float, default=5.0)
    args = parser.parse_args()
    pairs = make_pairs(args.limit)
    subsets = {
        "plain numbers": [p for p in pairs if is_plain(p)],
        "other": [p for p in pairs if not is_plain(p)],
    }
    settings = {"workers": args.workers, "timeout_s": args.timeout_s}
    with Grader(use_fast_path=True, **settings) as fast:
        fast_s, fast_results = timed(fast, subsets)
    with Grader(use_fast_path=False, **settings) as slow:
        slow_s, slow_results = timed(slow, subsets)
    fast_s["all"], slow_s["all"] = sum(fast_s.values()), sum(slow_s.values())
    sizes = {name: len(p) for name, p in subsets.items()} | {"all": len(pairs)}
    print(f"MATH500 golds x {{equal, rewritten, wrong}}; workers {args.workers}, timeout {args.timeout_s:g} s")
    print(f"{'pairs':<15}{'n':>6}{'fast on (ans/s)':>18}{'fast off (ans/s)':>18}{'speed-up':>10}")
    for name, n in sizes.items():
        on, off = n / fast_s[name], n / slow_s[name]
        print(f"{name:<15}{n:>6}{on:>18.1f}{off:>18.1f}{slow_s[name] / fast_s[name]:>9.1f}x")
    disagree = sum(f.correct != s.correct for f, s in zip(fast_results, slow_results, strict=True))
    print(f"paths (fast on): {dict(Counter(str(r.path) for r in fast_results))}")
    print(
        f"correct: fast on {sum(r.correct for r in fast_results)}, "
        f"fast off {sum(r.correct for r in slow_results)}, verdicts differing: {disagree}"
    )
    result = {
        "name": "grading",
        "command": f"python benchmarks/bench_grading.py --limit {args.limit} --workers {args.workers}",
        "ratios": [
            {
                "what": "answers/s with fast path / without (all MATH500-style pairs)",
                "value": round(slow_s["all"] / fast_s["all"], 2),
                "goal": "> 1, identical verdicts",
            },
            {"what": "verdicts differing between the two paths", "value": disagree, "goal": "0"},
        ],
    }
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
