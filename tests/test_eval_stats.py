"""taco.eval.stats and taco.eval.keys: bootstrap intervals with known answers, gains, the
operating point, the flat metric keys."""

from __future__ import annotations

import math

import numpy as np
import pytest

from taco.eval import keys, stats


def test_bootstrap_of_two_values_has_the_exact_percentiles() -> None:
    # Resampling {0, 1} twice: the mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so
    # the 2.5th percentile is 0 and the 97.5th is 1 (with any reasonable number of draws).
    low, high = stats.bootstrap_ci(np.array([0.0, 1.0]), samples=4000, seed=1)
    assert (low, high) == (0.0, 1.0)


def test_bootstrap_matches_the_normal_interval_of_a_mean() -> None:
    # 200 paired differences of +1/-1 around +0.2: the mean's sd is sqrt((1 - 0.2^2)/200),
    # so the 95% interval is 0.2 ± 1.96 * 0.0693 = [0.064, 0.336] (bootstrap within 0.02).
    diff = np.array([1.0] * 120 + [-1.0] * 80)
    low, high = stats.bootstrap_ci(diff, samples=4000, seed=0)
    half = 1.96 * math.sqrt((1 - 0.2**2) / 200)
    assert low == pytest.approx(0.2 - half, abs=0.02)
    assert high == pytest.approx(0.2 + half, abs=0.02)
    assert stats.bootstrap_ci(diff, samples=4000, seed=0) == (low, high)  # seeded


def test_constant_differences_give_a_point_interval_and_shared_draws_pair() -> None:
    idx = stats.bootstrap_indices(5, 500, seed=3)
    assert stats.paired_ci(np.full(5, 0.25), idx) == (0.25, 0.25)
    a, b = np.array([0.1, 0.5, 0.3, 0.9, 0.2]), np.array([0.0, 0.4, 0.2, 0.8, 0.1])
    assert stats.paired_ci(a - b, idx) == pytest.approx((0.1, 0.1))  # paired: no spread
    assert math.isnan(stats.paired_ci(np.zeros(0), stats.bootstrap_indices(0, 10, 0))[0])


def test_relative_gain() -> None:
    assert stats.relative_gain(0.55, 0.5) == pytest.approx(0.1)
    assert stats.relative_gain(-2.2, -2.0) == pytest.approx(-0.1)  # log-lik: lower is worse
    assert stats.relative_gain(0.0, 0.0) == 0.0
    assert stats.relative_gain(0.1, 0.0) == math.inf


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([(0.33, 0.4, -0.05), (0.5, 0.4, -0.01)], 0.5),  # 0.33 loses up to 12.5%: too much
        ([(0.33, 0.4, -0.019), (0.5, 0.4, -0.01)], 0.33),  # within 5% (0.02) at both
        ([(0.33, 0.4, -0.1), (0.5, 0.4, -0.1)], None),  # no rate qualifies
        ([(0.5, 0.4, math.nan)], None),  # no interval: nothing is recommended
    ],
)
def test_recommended_rate(points: list, expected: float | None) -> None:
    assert stats.recommended_rate(points, 0.05) == expected


def test_keys_spell_and_parse() -> None:
    assert keys.key("code", 0.33, "trained", "bleu") == "code/rate_0.33/trained/bleu"
    assert keys.key("code", 0.5, "truncate", "achieved_rate") == (
        "code/rate_0.5/truncate/achieved_rate"
    )
    assert keys.ci_key("qa", 0.25, "truncate", "f1", "ci_low") == (
        "qa/rate_0.25/trained_vs_truncate/f1/ci_low"
    )
    metrics = {
        keys.key("qa", 0.5, "trained", "f1"): 0.4,
        keys.key("qa", 0.25, "truncate", "f1"): 0.3,
        keys.ci_key("qa", 0.5, "truncate", "f1", "delta"): 0.1,
        keys.recommended_key("qa"): None,
    }
    assert keys.rates_of(metrics, "qa") == [0.25, 0.5]
    assert keys.compressors_of(metrics, "qa", 0.5) == ["trained"]
    assert keys.tasks_of(metrics) == {"qa"}
    with pytest.raises(keys.MetricsError, match=r"metrics are for qa, not base\.task 'code'"):
        keys.check_task(metrics, "code", "metrics.json")
