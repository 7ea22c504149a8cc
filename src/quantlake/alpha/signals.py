"""Per-symbol statistics of a daily return series (the selection's features).

Every function takes the symbol's *observed* simple returns in date order (NaN already
dropped: a missing day is closed up, so shape statistics treat the days around a gap as
adjacent) and returns a float, NaN when the statistic is undefined for the input.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def annualised_momentum(r: np.ndarray, periods_per_year: int) -> float:
    """Mean daily log return x periods: the annualised continuously compounded growth.

    Log returns keep the figure additive and bounded for assets that went up 50x in a year,
    where the compounded form would dominate any score.
    """
    if r.size == 0:
        return math.nan
    return float(np.mean(np.log1p(r)) * periods_per_year)


def annualised_volatility(r: np.ndarray, periods_per_year: int) -> float:
    """Sample standard deviation (ddof=1) of daily returns x sqrt(periods)."""
    if r.size < 2:
        return math.nan
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def efficiency_ratio(r: np.ndarray) -> float:
    """Kaufman's efficiency ratio: |net log move| / total log path length, in [0, 1].

    1 for a straight line, near 0 for a series that goes nowhere through a lot of noise.
    """
    log_r = np.log1p(r)
    path = float(np.sum(np.abs(log_r)))
    if r.size == 0 or path == 0.0:
        return math.nan
    return float(abs(np.sum(log_r)) / path)


def permutation_entropy(x: np.ndarray, order: int = 3, delay: int = 1) -> float:
    """Bandt-Pompe permutation entropy of `x`, normalised to [0, 1] by log(order!).

    Each run of `order` values (spaced `delay` apart) is reduced to the permutation that sorts
    it (ties by position, a stable sort); the entropy of the permutation frequencies is 1 for
    white noise and lower for series with repeating up/down patterns.
    """
    span = (order - 1) * delay + 1
    if order < 2 or x.size < span:
        return math.nan
    windows = sliding_window_view(x, span)[:, ::delay]
    perms = np.argsort(windows, axis=1, kind="stable")
    codes = perms @ (order ** np.arange(order))  # a unique integer per permutation
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)) / math.log(math.factorial(order)))


def hurst_exponent(r: np.ndarray, max_lag: int = 20) -> float:
    """Hurst exponent of the log-price path from the scaling std(x[t+k] - x[t]) ~ k^H.

    Fitted by least squares on log-log over lags 2..max_lag (at most half the series). 0.5 is
    a random walk, above 0.5 trending (persistent), below 0.5 mean-reverting.
    """
    x = np.concatenate(([0.0], np.cumsum(np.log1p(r))))
    lags = np.arange(2, min(max_lag, x.size // 2) + 1)
    if lags.size < 3:
        return math.nan
    tau = np.array([np.std(x[k:] - x[:-k]) for k in lags])
    if np.any(tau <= 0):
        return math.nan
    slope, _ = np.polyfit(np.log(lags), np.log(tau), 1)
    return float(slope)


def skewness(r: np.ndarray) -> float:
    """Sample skewness, bias-corrected G1 (the same as pandas' Series.skew)."""
    n = r.size
    if n < 3 or np.ptp(r) == 0:
        return math.nan
    d = r - r.mean()
    m2, m3 = np.mean(d**2), np.mean(d**3)
    return float(math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2**1.5)


def excess_kurtosis(r: np.ndarray) -> float:
    """Sample excess kurtosis, bias-corrected G2 (the same as pandas' Series.kurt)."""
    n = r.size
    if n < 4 or np.ptp(r) == 0:
        return math.nan
    d = r - r.mean()
    m2, m4 = np.mean(d**2), np.mean(d**4)
    g2 = m4 / m2**2 - 3.0
    return float(((n + 1) * g2 + 6.0) * (n - 1) / ((n - 2) * (n - 3)))


def conditional_value_at_risk(r: np.ndarray, level: float = 0.05) -> float:
    """Expected shortfall: mean of the returns at or below the `level` quantile (a return, <= VaR)."""
    if r.size == 0:
        return math.nan
    var = np.quantile(r, level)
    return float(np.mean(r[r <= var]))
