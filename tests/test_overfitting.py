"""Deflated Sharpe Ratio and PBO (CSCV) against the papers' figures and hand-computed cases."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from quantlake.alpha.overfitting import (
    deflated_sharpe_of_best,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)


def test_dsr_reproduces_the_papers_worked_example():
    # Bailey & Lopez de Prado (2014), section "A numerical example": annualised SR 2.5 over
    # 5 years of daily data (T = 1250, 250 days a year), N = 100 trials whose annualised Sharpe
    # ratios have variance 0.5, skewness -3, kurtosis 10 -> SR_0 = 0.1132 (daily) and DSR = 0.9004.
    result = deflated_sharpe_ratio(
        sharpe=2.5 / math.sqrt(250), n_trials=100, sharpe_variance=0.5 / 250, n_obs=1250, skewness=-3, kurtosis=10
    )
    assert result.expected_max_sharpe == pytest.approx(0.1132, abs=5e-5)
    assert result.dsr == pytest.approx(0.9004, abs=5e-5)


def test_psr_is_one_half_at_the_benchmark_and_moves_with_the_sharpe_ratio():
    assert probabilistic_sharpe_ratio(0.1, 0.1, 500, 0.0, 3.0) == pytest.approx(0.5)
    assert probabilistic_sharpe_ratio(0.11, 0.1, 500, 0.0, 3.0) > 0.5 > probabilistic_sharpe_ratio(0.09, 0.1, 500, 0.0, 3.0)
    # Normal returns: z = (SR - SR*) sqrt(T - 1) / sqrt(1 + SR^2 / 2)
    z = (0.1 - 0.0) * math.sqrt(499) / math.sqrt(1 + 0.1**2 / 2)
    assert probabilistic_sharpe_ratio(0.1, 0.0, 500, 0.0, 3.0) == pytest.approx(stats.norm.cdf(z))


def test_expected_max_sharpe_grows_with_trials_and_spread():
    assert expected_max_sharpe(1, 0.01) == 0.0
    assert expected_max_sharpe(10, 0.01) < expected_max_sharpe(100, 0.01) < expected_max_sharpe(1000, 0.01)
    assert expected_max_sharpe(100, 0.0) == 0.0
    assert expected_max_sharpe(100, 0.04) == pytest.approx(2 * expected_max_sharpe(100, 0.01))
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 0.01)


def test_dsr_of_best_uses_the_trials_spread_and_the_best_trials_moments():
    rng = np.random.default_rng(3)
    r = rng.standard_t(5, size=(730, 12)) * 0.02 + np.linspace(0, 0.002, 12)
    best, result = deflated_sharpe_of_best(r)
    sr = r.mean(axis=0) / r.std(axis=0, ddof=1)
    assert best == int(np.argmax(sr))
    x = r[:, best]
    m = x - x.mean()
    skew = (m**3).mean() / (m**2).mean() ** 1.5
    kurt = (m**4).mean() / (m**2).mean() ** 2
    sr0 = math.sqrt(np.var(sr, ddof=1)) * (
        (1 - 0.5772156649015329) * stats.norm.ppf(1 - 1 / 12) + 0.5772156649015329 * stats.norm.ppf(1 - 1 / (12 * math.e))
    )
    z = (sr[best] - sr0) * math.sqrt(729) / math.sqrt(1 - skew * sr[best] + (kurt - 1) / 4 * sr[best] ** 2)
    assert result.n_trials == 12 and result.n_obs == 730
    assert result.skewness == pytest.approx(skew) and result.kurtosis == pytest.approx(kurt)
    assert result.expected_max_sharpe == pytest.approx(sr0)
    assert result.dsr == pytest.approx(stats.norm.cdf(z))


def test_the_same_sharpe_ratio_is_deflated_harder_after_more_trials():
    args = dict(sharpe=0.08, sharpe_variance=0.001, n_obs=1000, skewness=-0.5, kurtosis=6.0)
    few, many = deflated_sharpe_ratio(n_trials=5, **args), deflated_sharpe_ratio(n_trials=500, **args)
    assert many.dsr < few.dsr
    assert deflated_sharpe_ratio(n_trials=1, **args).dsr == pytest.approx(
        probabilistic_sharpe_ratio(0.08, 0.0, 1000, -0.5, 6.0))


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample():
    # Two trials, two blocks of two rows: A wins block 0 and loses block 1, B the opposite.
    a = [0.03, 0.01, -0.01, -0.03]
    b = [-0.01, -0.03, 0.03, 0.01]
    result = probability_of_backtest_overfitting(np.column_stack([a, b]), n_blocks=2)
    assert result.n_splits == 2
    assert result.pbo == 1.0
    np.testing.assert_allclose(result.logits, [math.log(0.5), math.log(0.5)])  # omega = 1/3


def test_pbo_is_zero_when_one_trial_dominates_everywhere():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.01, size=(64, 1))
    good = base + 0.02 + rng.normal(0, 0.001, size=(64, 1))
    r = np.column_stack([good, base, base - 0.001, base * 0.5])
    result = probability_of_backtest_overfitting(r, n_blocks=8)
    assert result.n_splits == math.comb(8, 4)
    assert result.pbo == 0.0
    np.testing.assert_allclose(result.logits, math.log(4 / 5 / (1 / 5)))  # rank 4 of 4: omega = 4/5


def _naive_pbo(r, s):
    rows = r.shape[0] // s
    blocks = [r[i * rows:(i + 1) * rows] for i in range(s)]
    logits = []
    for train in itertools.combinations(range(s), s // 2):
        ins = np.vstack([blocks[i] for i in train])
        oos = np.vstack([blocks[i] for i in range(s) if i not in train])
        sr_in = ins.mean(0) / ins.std(0, ddof=1)
        sr_out = oos.mean(0) / oos.std(0, ddof=1)
        w = int(np.argmax(sr_in))
        omega = stats.rankdata(sr_out)[w] / (r.shape[1] + 1)
        logits.append(math.log(omega / (1 - omega)))
    return np.mean(np.array(logits) <= 0), np.array(logits)


def test_pbo_matrix_kernel_equals_a_naive_loop_over_splits():
    rng = np.random.default_rng(11)
    r = rng.normal(0.0003, 0.02, size=(203, 9))  # 203 rows: the last 203 mod 10 rows are dropped
    pbo, logits = _naive_pbo(r, 10)
    result = probability_of_backtest_overfitting(r, n_blocks=10)
    assert result.pbo == pytest.approx(pbo)
    np.testing.assert_allclose(result.logits, logits, rtol=1e-10)


def test_pbo_of_pure_noise_is_near_one_half():
    rng = np.random.default_rng(5)
    result = probability_of_backtest_overfitting(rng.normal(0, 0.02, size=(1600, 50)), n_blocks=16)
    assert 0.3 < result.pbo < 0.7


@pytest.mark.parametrize("blocks", [1, 3, 0])
def test_pbo_rejects_odd_or_too_few_blocks(blocks):
    with pytest.raises(ValueError, match="n_blocks"):
        probability_of_backtest_overfitting(np.zeros((40, 3)), n_blocks=blocks)


def test_pbo_rejects_too_few_rows_and_a_single_trial():
    with pytest.raises(ValueError, match="cannot make"):
        probability_of_backtest_overfitting(np.ones((10, 3)), n_blocks=8)
    with pytest.raises(ValueError, match="N >= 2"):
        probability_of_backtest_overfitting(np.ones((40, 1)), n_blocks=2)
