"""Pairwise-complete covariance and correlation as matrix products, against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantlake.alpha import covariance
from quantlake.alpha.covariance import pairwise_corr, pairwise_cov


def random_panel(rng: np.random.Generator) -> np.ndarray:
    """Returns-like columns with random NaN patterns, constant and partly constant columns."""
    days, k = int(rng.integers(1, 80)), int(rng.integers(1, 14))
    x = rng.normal(0.0, rng.uniform(0.005, 0.1, k), size=(days, k)) + rng.normal(0, 0.002, k)
    x[rng.random(x.shape) < rng.uniform(0.0, 0.7)] = np.nan
    if k > 2:
        x[:, 1] = 0.1  # constant wherever observed (its mean is not exactly 0.1 in floating point)
    if k > 3:
        x[: days // 2, 2] = -0.03  # constant on the first half: flat on some overlaps only
    if k > 5:
        x[:, 4] = 3.0 * x[:, 3] + 0.01  # perfectly correlated
        x[:, 5] = -x[:, 3]  # perfectly anti-correlated
    return x


def assert_like_pandas(actual: np.ndarray, expected: pd.DataFrame, atol: float) -> None:
    e = expected.to_numpy()
    assert np.array_equal(np.isnan(actual), np.isnan(e)), (actual, e)
    np.testing.assert_allclose(actual, e, rtol=1e-12, atol=atol)
    assert np.array_equal(actual, actual.T, equal_nan=True)


@pytest.mark.parametrize("seed", range(8))
def test_equal_to_pandas_on_random_panels(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        x = random_panel(rng)
        mp = int(rng.integers(1, 12))
        # pandas' Welford sums and these products round differently: ~1e-16 of the sums of squares
        assert_like_pandas(pairwise_cov(x, mp), pd.DataFrame(x).cov(min_periods=mp), atol=1e-15)
        assert_like_pandas(pairwise_corr(x, mp), pd.DataFrame(x).corr(min_periods=mp), atol=1e-12)


def test_no_missing_value_path_equals_the_masked_path(monkeypatch):
    x = np.random.default_rng(9).normal(0.001, 0.03, size=(120, 30))
    x[:, 7] = 0.02
    fast = pairwise_corr(x, 30), pairwise_cov(x, 30)
    assert_like_pandas(fast[0], pd.DataFrame(x).corr(min_periods=30), atol=1e-12)
    assert_like_pandas(fast[1], pd.DataFrame(x).cov(min_periods=30), atol=1e-15)
    y = np.vstack([x, np.full((1, 30), np.nan)])  # one empty day forces the masked products
    np.testing.assert_allclose(pairwise_corr(y, 30), fast[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(pairwise_cov(y, 30), fast[1], rtol=1e-13, atol=1e-18)


def test_column_blocks_give_the_same_matrix(monkeypatch):
    rng = np.random.default_rng(10)
    x = rng.normal(0, 0.02, size=(90, 11))
    x[rng.random(x.shape) < 0.3] = np.nan
    whole = pairwise_corr(x, 5), pairwise_cov(x, 5)
    monkeypatch.setattr(covariance, "_PAIRWISE_BLOCK", 4)
    np.testing.assert_array_equal(pairwise_corr(x, 5), whole[0])
    np.testing.assert_array_equal(pairwise_cov(x, 5), whole[1])


def test_min_periods_boundary():
    x = np.array([[0.01, 0.02], [0.03, -0.01], [-0.02, 0.04], [0.05, np.nan], [np.nan, 0.0]])  # 3 shared days
    for mp, defined in ((3, True), (4, False)):
        for f in (pairwise_corr, pairwise_cov):
            assert np.isfinite(f(x, mp)[0, 1]) == defined
    assert pairwise_corr(x, 4)[0, 0] == 1.0  # each column has 4 days of its own
    assert np.isnan(pairwise_corr(x, 5)[0, 0])
    assert np.isnan(pairwise_cov(x[[0]], 1)).all()  # one day: ddof=1 leaves nothing


def test_constant_columns_like_pandas():
    x = np.array([[0.1, 0.01, 7.0], [0.1, 0.03, 7.0], [0.1, -0.02, np.nan], [0.1, 0.05, 7.0]])
    corr, cov = pairwise_corr(x, 1), pairwise_cov(x, 1)
    assert np.isnan(corr[0]).all() and np.isnan(corr[:, 2]).all() and corr[1, 1] == 1.0
    assert cov[0, 1] == 0.0 and cov[0, 0] == 0.0 and cov[2, 2] == 0.0
    assert_like_pandas(corr, pd.DataFrame(x).corr(min_periods=1), atol=1e-12)
    assert_like_pandas(cov, pd.DataFrame(x).cov(min_periods=1), atol=1e-15)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="min_periods must be an integer >= 1, got 0"):
        pairwise_corr(np.zeros((3, 2)), 0)
    with pytest.raises(ValueError, match="min_periods"):
        pairwise_cov(np.zeros((3, 2)), 2.5)
    with pytest.raises(ValueError, match=r"2-D .*shape \(3,\)"):
        pairwise_cov(np.zeros(3), 1)
