"""The toy world measured where it matters: step pairs from trees the shipped base model samples.

The corpus-level balance test (``test_toy_error_balance.py``) checks the error model; this one runs
the real sample, score (Monte-Carlo values with rollouts, process-judged) and build stages with the
demo's settings on 384 train problems and checks the kept step pairs against issue 13's goals:

- no surface shortcut: the chosen step's first differing character is the smaller one in 50% ± 10%
  of pairs, and no (chosen char, rejected char) kind exceeds 15% of pairs (item 1);
- graded values: at most 40% of pairs have a value gap of exactly 1.0 and the gap's standard
  deviation is at least 0.15 (item 2).

Measured here (world v3, one thread): 180 pairs, chosen-smaller 54.4%, top kind 7.2%, 35.6% at a gap
of 1.0, std 0.166. 384 problems rather than fewer because the shares are noisy: on 192 problems the
same settings gave 61.1% chosen-smaller and 33.3% at 1.0. The 1,024-problem Stage-1 trees of the
3-seed study gave 38.1%, 40.4% and 39.7% at 1.0 (README "The toy world"): the world sits at the
bound, and one seed is just over it; this sample passes with a few points to spare.

It needs the shipped base model (no pretraining in the test suite): slow, about 3-4 minutes on one
thread.
"""

from __future__ import annotations

import statistics
from collections import Counter

import pytest
from test_toy_error_balance import balance, first_difference

from sppd import layout
from sppd.io import StageDir
from sppd.settings import load_run_config
from sppd.stages import build, sample, score
from sppd.toy.pretrain import config_hash
from sppd.toy.shipped import shipped_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    # one thread: the measured numbers above (sampling differs in the last bits across thread counts)
    overrides = [f"run_dir={tmp_path_factory.mktemp('pairs')}", "problems.n=384", "threads=1"]
    cfg = load_run_config("toy", [*overrides, "sample.problems_per_shard=96"])
    if shipped_checkpoint(f"toy-base-{config_hash(cfg.toy)}") is None:
        pytest.fail("the toy config has no shipped base model (sppd toy pretrain -c toy --ship)")
    sample.main(cfg)
    score.main(cfg)
    build.main(cfg)
    return [record for _, record in StageDir(layout.build_out(cfg) / "step_pairs").iter_records()]


def test_pairs_have_no_first_character_shortcut(pairs):
    assert len(pairs) >= 100, len(pairs)
    smaller, top_kind = balance([(p["chosen"], p["rejected"]) for p in pairs])
    assert abs(smaller - 0.5) <= 0.10, smaller
    firsts = Counter(first_difference(p["chosen"], p["rejected"]) for p in pairs)
    assert top_kind <= 0.15, firsts.most_common(3)


def test_pair_values_are_graded(pairs):
    gaps = [p["chosen_value"] - p["rejected_value"] for p in pairs]
    assert min(gaps) > 0.5  # the paper's threshold (build.step_gap)
    assert statistics.pstdev(gaps) >= 0.15, statistics.pstdev(gaps)
    assert sum(g == 1.0 for g in gaps) / len(gaps) <= 0.40
