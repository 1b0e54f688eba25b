"""Bootstrap confidence intervals and the markdown table helper."""

import pytest

from sppd.eval.stats import ConfidenceInterval, bootstrap_ci, format_accuracy, markdown_table


def test_constant_values_have_a_zero_width_interval():
    assert bootstrap_ci([1, 1, 1], n_boot=50) == ConfidenceInterval(1.0, 1.0, 1.0, 0.95)


def test_two_values_cover_the_full_range():
    # Resampled means of [0, 1] are 0, .5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and
    # 97.5% quantiles of 2000 draws are 0 and 1.
    ci = bootstrap_ci([False, True], n_boot=2000, seed=1)
    assert (ci.mean, ci.low, ci.high) == (0.5, 0.0, 1.0)


def test_interval_width_matches_the_normal_approximation():
    # 500 of 1000 right: standard error sqrt(.25 / 1000) = .0158, so 95% is about +-.031.
    ci = bootstrap_ci([1] * 500 + [0] * 500, n_boot=500, seed=0)
    assert ci.mean == 0.5
    assert 0.46 < ci.low < 0.48 and 0.52 < ci.high < 0.54


def test_bootstrap_is_seeded():
    values = [1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1, 0] * 5
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], level=1.0)


def test_format_accuracy():
    assert format_accuracy(ConfidenceInterval(0.4523, 0.41, 0.4934, 0.95)) == "45.2 [41.0, 49.3]"


def test_markdown_table():
    rows = [
        {"benchmark": "gsm8k", "method": "MAJ@8", "acc": ConfidenceInterval(0.5, 0.25, 0.75, 0.95)},
        {"benchmark": "math|500", "acc": ConfidenceInterval(1.0, 1.0, 1.0, 0.95), "n": 500},
    ]
    assert markdown_table(rows) == (
        "| benchmark | method | acc | n |\n"
        "|---|---|---:|---|\n"
        "| gsm8k | MAJ@8 | 50.0 [25.0, 75.0] |  |\n"
        "| math\\|500 |  | 100.0 [100.0, 100.0] | 500 |\n"
    )
    assert markdown_table([{"x": 0.123}], float_digits=2) == "| x |\n|---:|\n| 0.12 |\n"
