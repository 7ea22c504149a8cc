"""window_stats: every column-wise statistic equals signals.py's per-series definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantlake.alpha import signals, window_stats

RTOL = 1e-12


def ragged_panel(seed: int, days: int = 365, symbols: int = 40) -> np.ndarray:
    """days x symbols returns with holes, late listings, short and empty columns, flat and tied values."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(4, size=(days, symbols)) * rng.uniform(0.005, 0.08, symbols)).clip(-0.9, 3.0)
    x[rng.random(x.shape) < 0.05] = np.nan  # scattered missing days
    for j in range(0, symbols, 5):  # late listings
        x[: int(rng.integers(0, days)), j] = np.nan
    x[:, 1] = np.nan  # never traded
    x[:-1, 2] = np.nan  # one day
    x[:-3, 3] = np.nan  # three days: no kurtosis
    x[-3:, 3] = [0.01, -0.02, 0.05]
    x[:-5, 4] = np.nan  # five days: too short for three Hurst lags
    x[-5:, 4] = [0.01, -0.02, 0.05, 0.0, 0.03]
    x[-7:, 5] = [0.01, -0.02, 0.05, 0.0, 0.03, 0.01, -0.01]  # seven days: lags 2..4, just enough
    x[:-7, 5] = np.nan
    x[:, 6] = 0.0  # flat
    x[:, 7] = np.round(x[:, 7], 2)  # many ties (entropy, quantile)
    x[:, 8] = np.where(np.arange(days) % 2 == 0, 0.05, 1 / 1.05 - 1)  # zigzag: two log-price levels
    return x


def per_column(x: np.ndarray, f) -> np.ndarray:
    out = []
    for j in range(x.shape[1]):
        r = x[:, j][~np.isnan(x[:, j])]
        out.append(f(r) if r.size else math.nan)
    return np.array(out, dtype="float64")


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), (actual, expected)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_statistic_equals_the_per_series_definition(seed):
    x = ragged_panel(seed)
    p = window_stats.pack(x)
    log_r = window_stats.log_returns(p)
    assert_same(p[1].astype(float), np.sum(~np.isnan(x), axis=0).astype(float))
    cases = [
        (window_stats.annualised_momentum(p, log_r, 365), lambda r: signals.annualised_momentum(r, 365)),
        (window_stats.annualised_volatility(p, 365), lambda r: signals.annualised_volatility(r, 365)),
        (window_stats.efficiency_ratio(p, log_r), signals.efficiency_ratio),
        (window_stats.skewness(p), signals.skewness),
        (window_stats.excess_kurtosis(p), signals.excess_kurtosis),
        (window_stats.conditional_value_at_risk(p, 0.05), lambda r: signals.conditional_value_at_risk(r, 0.05)),
        (window_stats.conditional_value_at_risk(p, 0.5), lambda r: signals.conditional_value_at_risk(r, 0.5)),
        (window_stats.median(p), np.median),
    ]
    for order in (2, 3, 4, 7):
        cases.append((window_stats.permutation_entropy(p, order), lambda r, o=order: signals.permutation_entropy(r, o)))
    for lag in (3, 4, 20, 60):
        cases.append((window_stats.hurst_exponent(p, log_r, lag), lambda r, k=lag: signals.hurst_exponent(r, k)))
    for actual, f in cases:
        assert_same(actual, per_column(x, f))


def test_undefined_cases_are_nan_like_the_definitions():
    x = ragged_panel(4)
    p = window_stats.pack(x)
    log_r = window_stats.log_returns(p)
    assert np.isnan(window_stats.annualised_momentum(p, log_r, 365)[1])  # no data
    assert np.isnan(window_stats.annualised_volatility(p, 365)[2])  # one return
    assert np.isnan(window_stats.excess_kurtosis(p)[3]) and not np.isnan(window_stats.skewness(p)[3])
    hurst = window_stats.hurst_exponent(p, log_r, 20)
    assert np.isnan(hurst[4]) and not np.isnan(hurst[5])  # 5 returns: lags 2..3; 7 returns: lags 2..4
    assert np.isnan(window_stats.efficiency_ratio(p, log_r)[6]) and np.isnan(window_stats.skewness(p)[6])  # flat
    assert np.isnan(window_stats.hurst_exponent(p, log_r, 20)[8])  # zigzag: std of even lags is 0
    assert window_stats.median(p)[6] == 0.0


def test_gap_free_rows_give_bit_identical_sums():
    """Rows without a gap reduce like the 1-D definitions (pairwise summation on a contiguous row)."""
    x = np.random.default_rng(5).normal(0.001, 0.03, size=(365, 25))
    p = window_stats.pack(x)
    log_r = window_stats.log_returns(p)
    for actual, f in [
        (window_stats.annualised_momentum(p, log_r, 365), lambda r: signals.annualised_momentum(r, 365)),
        (window_stats.annualised_volatility(p, 365), lambda r: signals.annualised_volatility(r, 365)),
        (window_stats.efficiency_ratio(p, log_r), signals.efficiency_ratio),
        (window_stats.permutation_entropy(p, 3), signals.permutation_entropy),
        (window_stats.median(p), np.median),
    ]:
        assert np.array_equal(actual, per_column(x, f))


def test_pack_moves_observed_values_to_the_front_in_order():
    x = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, 3.0], [4.0, 5.0]])
    values, n, valid = window_stats.pack(x)
    assert n.tolist() == [2, 3]
    assert values[0, :2].tolist() == [2.0, 4.0] and values[1, :3].tolist() == [1.0, 3.0, 5.0]
    assert valid.tolist() == [[True, True, False, False], [True, True, True, False]]


@pytest.mark.parametrize("q", [0.0, 0.05, 0.37, 0.5, 0.95, 1.0])
def test_linear_quantile_is_numpys(q):
    rng = np.random.default_rng(int(q * 100))
    rows = [np.sort(rng.normal(size=k)) for k in (1, 2, 3, 10, 101)]
    width = max(r.size for r in rows)
    padded = np.array([np.r_[r, np.full(width - r.size, np.nan)] for r in rows])
    got = window_stats.linear_quantile(padded, np.array([r.size for r in rows]), q)
    assert got.tolist() == [np.quantile(r, q) for r in rows]


def test_shared_moments_and_in_place_lag_std_give_the_same_floats():
    """volatility/skew/kurtosis from one `central_moments` pass equal their own passes bit for bit;
    the Hurst moves' std (summed down the columns of the transpose) is np.std's to rounding."""
    x = np.random.default_rng(8).standard_t(3, size=(365, 30)) * 0.03
    x[:40, :5] = np.nan  # late listings
    x[200:203, 7] = np.nan  # a gap
    p = window_stats.pack(x)
    moments = window_stats.central_moments(p)
    for shared, alone in [
        (window_stats.annualised_volatility(p, 365, moments), window_stats.annualised_volatility(p, 365)),
        (window_stats.skewness(p, moments), window_stats.skewness(p)),
        (window_stats.excess_kurtosis(p, moments), window_stats.excess_kurtosis(p)),
    ]:
        assert np.array_equal(shared, alone, equal_nan=True)
    path = np.cumsum(np.random.default_rng(9).normal(0, 0.02, size=(12, 366)), axis=1)
    lags = np.arange(2, 21)
    expected = np.array([[np.std(row[k:] - row[:-k]) for k in lags] for row in path])
    np.testing.assert_allclose(window_stats._lag_std(path, lags), expected, rtol=1e-13, atol=0)
    gappy = window_stats._lag_std(path, lags, np.full(12, 365))  # the masked path, every day inside
    np.testing.assert_allclose(gappy, expected, rtol=1e-13, atol=0)


def _lag_std_with_temporaries(path, lags, n):
    """`_lag_std` of rows of different lengths as it was written before the in-place buffer."""
    tau = np.empty((path.shape[0], lags.size))
    for i, k in enumerate(lags):
        moves = path[:, k:] - path[:, :-k]
        inside = np.arange(moves.shape[1])[None, :] < (n + 1 - k)[:, None]
        count = np.maximum(inside.sum(axis=1), 1)
        mean = np.where(inside, moves, 0.0).sum(axis=1) / count
        dev = np.where(inside, moves - mean[:, None], 0.0)
        tau[:, i] = np.sqrt((dev * dev).sum(axis=1) / count)
    return tau


@pytest.mark.parametrize("rows, width", [(400, 365), (37, 40), (1, 30)])
def test_the_lag_std_of_rows_of_different_lengths_keeps_every_bit(rows, width):
    from quantlake.alpha.window_stats import _lag_std

    rng = np.random.default_rng(rows)
    n = rng.integers(0, width, rows)
    n[:1] = width - 1
    steps = rng.normal(0, 0.05, (rows, width))
    steps[np.arange(width)[None, :] >= n[:, None]] = 0.0
    path = np.concatenate([np.zeros((rows, 1)), np.cumsum(steps, axis=1)], axis=1)
    lags = np.arange(2, 21)
    assert np.array_equal(_lag_std(path, lags, n), _lag_std_with_temporaries(path, lags, n), equal_nan=True)
