"""Statistics of the evaluation: paired bootstrap intervals, relative gains, the operating
point. Pure functions over numpy arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """``(samples, n)`` row indices drawn with replacement. Reusing one draw for every
    compressor and metric of a rate keeps all their intervals paired on the same resamples."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def paired_ci(diff: np.ndarray, idx: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences ``diff`` (one per
    row) over the resamples ``idx`` (from ``bootstrap_indices``): ``(low, high)``."""
    if diff.size == 0:
        return math.nan, math.nan
    means = diff[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    diff: np.ndarray, *, samples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """``paired_ci`` with its own resamples: the interval of ``diff.mean()``."""
    diff = np.asarray(diff, dtype=np.float64)
    return paired_ci(diff, bootstrap_indices(diff.size, samples, seed), confidence)


def relative_gain(candidate: float, reference: float) -> float:
    """``(candidate - reference) / |reference|``: +0.1 is 10% better. A zero reference
    gives +inf, 0 or -inf by the sign of the difference."""
    delta = candidate - reference
    if reference == 0:
        return 0.0 if delta == 0 else math.copysign(math.inf, delta)
    return delta / abs(reference)


def recommended_rate(
    points: Sequence[tuple[float, float, float]], max_quality_loss: float
) -> float | None:
    """The smallest rate whose score stays within ``max_quality_loss`` of the uncompressed
    prompt's, counting the interval: ``points`` are ``(rate, uncompressed mean, lower CI
    bound of trained - uncompressed)``; a rate qualifies when that bound is at least
    ``-max_quality_loss * |uncompressed mean|``. None when no rate does."""
    ok = [
        rate
        for rate, full, low in points
        if math.isfinite(low) and low >= -max_quality_loss * abs(full)
    ]
    return min(ok) if ok else None
