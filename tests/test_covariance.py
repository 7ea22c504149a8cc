"""observed_covariance (returns with unobserved (NaN) days, never zero padding) and the
pairwise-complete covariance and correlation as matrix products, against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.covariance import LedoitWolf

from quantlake.alpha import covariance
from quantlake.alpha.covariance import (
    PD_FLOOR,
    _observed_lw_intensity,
    estimate_covariance,
    ledoit_wolf_covariance,
    observed_covariance,
    pairwise_corr,
    pairwise_cov,
)


def panel(n_days: int = 300, n_assets: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    common = rng.standard_normal((n_days, 1)) * 0.02
    return common + rng.standard_normal((n_days, n_assets)) * rng.uniform(0.01, 0.05, n_assets)


@pytest.mark.parametrize("method", ["ledoit_wolf", "sample"])
def test_without_missing_days_it_is_the_complete_data_estimator(method):
    x = panel()
    np.testing.assert_array_equal(observed_covariance(x, method), estimate_covariance(x, method))


def test_the_observed_lw_intensity_is_sklearns_on_complete_data():
    for seed, shape in ((1, (300, 5)), (2, (25, 40)), (3, (60, 60))):
        x = panel(*shape, seed=seed)
        observed = np.ones(x.shape, dtype=bool)
        counts = np.full((x.shape[1], x.shape[1]), float(x.shape[0]))
        emp = np.cov(x, rowvar=False, bias=True)
        assert _observed_lw_intensity(x, observed, counts, emp) == pytest.approx(LedoitWolf().fit(x).shrinkage_, abs=1e-12)
        assert _observed_lw_intensity(x, observed, counts, emp) == pytest.approx(ledoit_wolf_covariance(x)[1], abs=1e-12)


def test_sample_is_pandas_pairwise_covariance_over_the_observed_days():
    x = panel()
    x[:150, 0] = np.nan  # listed half-way
    x[200:210, 3] = np.nan  # a halt
    cov = observed_covariance(x, "sample")
    expected = pd.DataFrame(x).cov(min_periods=2).to_numpy()
    np.testing.assert_allclose(cov, expected, rtol=1e-12, atol=0)
    # the young asset's variance is that of the days it traded, not shrunk by zero padding
    assert cov[0, 0] == pytest.approx(np.var(x[150:, 0], ddof=1), rel=1e-12)
    assert pd.DataFrame(x).fillna(0.0).cov().to_numpy()[0, 0] < 0.6 * cov[0, 0]


def test_ledoit_wolf_on_missing_days_shrinks_the_pairwise_biased_covariance():
    x = panel()
    x[:150, 0] = np.nan
    cov = observed_covariance(x, "ledoit_wolf")
    counts = (~np.isnan(x)).T.astype(float) @ (~np.isnan(x)).astype(float)
    emp = pd.DataFrame(x).cov().to_numpy() * (counts - 1) / counts
    mu = np.trace(emp) / 5
    # cov = (1 - a) emp + a mu I for one intensity a in (0, 1)
    off = ~np.eye(5, dtype=bool)
    a = 1.0 - cov[off] / emp[off]
    assert np.ptp(a) < 1e-10 and 0 < a[0] < 1
    np.testing.assert_allclose(np.diag(cov), (1 - a[0]) * np.diag(emp) + a[0] * mu, rtol=1e-12)
    assert np.linalg.eigvalsh(cov)[0] > 0


def test_leading_missing_days_of_a_repeating_series_leave_ledoit_wolf_unchanged():
    # the observed days carry the same moments as the whole window (whole repeats of one
    # block): the estimate must not change, whatever the number of leading missing days
    block = panel(30, 4, seed=4)
    x = np.tile(block, (10, 1))
    full = observed_covariance(x, "ledoit_wolf")
    for blocks in (1, 4, 7):
        y = x.copy()
        y[: 30 * blocks, 2] = np.nan
        np.testing.assert_allclose(observed_covariance(y, "ledoit_wolf"), full, rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("method", ["ledoit_wolf", "sample"])
def test_an_indefinite_pairwise_matrix_is_made_positive_definite_just_enough(method):
    # A~B and B~C observed together move as one, A~C observed together move opposite:
    # no joint distribution has these pairwise correlations, the pairwise matrix is indefinite
    rng = np.random.default_rng(0)
    s = rng.standard_normal(40) * 0.02
    x = np.full((120, 3), np.nan)
    x[:40, 0], x[:40, 1] = s, s
    x[40:80, 1], x[40:80, 2] = s, s
    x[80:, 0], x[80:, 2] = s, -s
    raw = pd.DataFrame(x).cov(min_periods=2).to_numpy()
    assert np.linalg.eigvalsh(raw)[0] < 0
    cov = observed_covariance(x, method)
    lowest = np.linalg.eigvalsh(cov)[0]
    mu = np.trace(cov) / 3
    assert lowest > 0 and np.allclose(cov, cov.T, rtol=0, atol=0)
    assert lowest == pytest.approx(PD_FLOOR * mu, rel=1e-3)  # raised just to the floor, no further
    np.linalg.cholesky(cov)


def test_pairs_never_observed_together_are_uncorrelated():
    x = panel(200, 3)
    x[:100, 0] = np.nan
    x[100:, 1] = np.nan  # assets 0 and 1 never trade on the same day
    cov = observed_covariance(x, "sample")
    assert cov[0, 1] == 0.0 and cov[0, 2] != 0.0
    assert np.linalg.eigvalsh(cov)[0] > 0


def test_errors_name_the_column_and_the_estimator():
    x = panel(50, 3)
    x[2:, 1] = np.nan  # two observations: enough for a variance
    assert np.isfinite(observed_covariance(x, "sample")).all()
    x[1:, 1] = np.nan  # one observation
    with pytest.raises(ValueError, match=r"columns \[1\] have fewer than 2 observed values"):
        observed_covariance(x, "sample")
    x[:, 1] = 0.01
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="unknown covariance estimator 'lw'"):
        observed_covariance(x, "lw")


# --------------------------------------------------------------------------- pairwise_cov / pairwise_corr


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
