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


def test_t_interval_over_seeds_by_hand():
    from sppd.eval.stats import t_interval

    # mean 86, sd 2, t_{0.975,2} = 4.303: half-width 4.303 * 2 / sqrt(3) = 4.969
    s = t_interval([84.0, 86.0, 88.0])
    assert (s.mean, s.sd, s.n) == (86.0, 2.0, 3)
    assert (round(s.low, 2), round(s.high, 2)) == (81.03, 90.97)
    # two seeds: sd = |a - b| / sqrt(2), t_{0.975,1} = 12.706, half = 12.706 * 1 = 12.71
    two = t_interval([10.0, 12.0])
    assert two.sd == pytest.approx(2**0.5) and two.high - two.mean == pytest.approx(12.706, abs=1e-3)
    one = t_interval([5.0])
    assert (one.sd, one.low, one.high) == (0.0, 5.0, 5.0)
    with pytest.raises(ValueError):
        t_interval([])


def test_t_quantile_beyond_the_table_is_close_to_the_exact_value():
    from sppd.eval.stats import t_quantile_975

    assert t_quantile_975(30) == pytest.approx(2.0423)
    assert t_quantile_975(31) == pytest.approx(2.0395, abs=1e-3)  # exact 2.03951
    assert t_quantile_975(60) == pytest.approx(2.0003, abs=1e-3)  # exact 2.00030
    assert t_quantile_975(100000) == pytest.approx(1.96, abs=1e-3)
    with pytest.raises(ValueError, match="df >= 1"):
        t_quantile_975(0)
