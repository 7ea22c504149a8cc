"""Is the best of many backtests luck? The Deflated Sharpe Ratio and the Probability of
Backtest Overfitting.

- Deflated Sharpe Ratio (Bailey and Lopez de Prado, 2014, "The Deflated Sharpe Ratio:
  Correcting for Selection Bias, Backtest Overfitting and Non-Normality"): the probability that
  the best trial's true Sharpe ratio is above the Sharpe ratio one expects from the best of N
  unskilled trials, given the variance of the trials' Sharpe ratios, the best trial's skewness
  and kurtosis and its track length. All Sharpe ratios here are per period (daily), not
  annualised: the formulas are stated in the units of the observations.
- Probability of Backtest Overfitting (Bailey, Borwein, Lopez de Prado and Zhu, 2017, "The
  Probability of Backtest Overfitting"), by combinatorially symmetric cross-validation (CSCV):
  split the T x N matrix of the trials' returns into S blocks of rows; for every way of taking
  S/2 blocks as in-sample (the rest out-of-sample) pick the trial with the best in-sample
  Sharpe ratio and look at its out-of-sample rank; PBO is the share of splits in which it ranks
  at or below the median out of sample.

Pure numpy/scipy, no IO.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

EULER_MASCHERONI = 0.5772156649015329


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark_sharpe: float, n_obs: int, skewness: float, kurtosis: float
) -> float:
    """P(true SR > benchmark_sharpe) given an observed per-period `sharpe` over `n_obs` returns
    with this skewness and (non-excess) kurtosis (Bailey and Lopez de Prado, 2012)."""
    if n_obs < 2:
        raise ValueError(f"probabilistic_sharpe_ratio: n_obs must be >= 2, got {n_obs}")
    variance = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if variance <= 0:
        raise ValueError(
            f"probabilistic_sharpe_ratio: non-positive variance term {variance:.4g} "
            f"(sharpe {sharpe:.4g}, skewness {skewness:.4g}, kurtosis {kurtosis:.4g})"
        )
    z = (sharpe - benchmark_sharpe) * math.sqrt(n_obs - 1) / math.sqrt(variance)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """The Sharpe ratio expected from the best of `n_trials` unskilled trials whose Sharpe
    ratios have this variance (the false strategy theorem; SR_0 in the DSR paper)."""
    if n_trials < 1:
        raise ValueError(f"expected_max_sharpe: n_trials must be >= 1, got {n_trials}")
    if sharpe_variance < 0:
        raise ValueError(f"expected_max_sharpe: sharpe_variance must be >= 0, got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    g = EULER_MASCHERONI
    z = (1.0 - g) * stats.norm.ppf(1.0 - 1.0 / n_trials) + g * stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * z)


@dataclass(frozen=True)
class DeflatedSharpe:
    """The DSR of one trial and the figures it was computed from (per-period units)."""

    dsr: float
    sharpe: float
    expected_max_sharpe: float
    n_trials: int
    sharpe_variance: float
    n_obs: int
    skewness: float
    kurtosis: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def deflated_sharpe_ratio(
    sharpe: float, n_trials: int, sharpe_variance: float, n_obs: int, skewness: float, kurtosis: float
) -> DeflatedSharpe:
    """DSR from its inputs: PSR with the benchmark set to the expected maximum Sharpe ratio."""
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    dsr = probabilistic_sharpe_ratio(sharpe, sr0, n_obs, skewness, kurtosis)
    return DeflatedSharpe(dsr, float(sharpe), sr0, int(n_trials), float(sharpe_variance), int(n_obs),
                          float(skewness), float(kurtosis))


def sharpe_ratios(returns: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio (mean / sample std) of each column of a T x N return matrix."""
    r = np.asarray(returns, dtype="float64")
    if r.ndim != 2 or r.shape[0] < 2:
        raise ValueError(f"sharpe_ratios: need a T x N matrix with T >= 2, got shape {r.shape}")
    std = r.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, r.mean(axis=0) / std, np.nan)


def deflated_sharpe_of_best(returns: np.ndarray) -> tuple[int, DeflatedSharpe]:
    """The best trial (highest per-period Sharpe) of a T x N matrix of the trials' daily returns
    and its DSR, with N = the number of trials, their Sharpe ratios' variance (ddof=1) and the
    best trial's own skewness and kurtosis (non-excess, population moments as in the paper)."""
    r = np.asarray(returns, dtype="float64")
    if not np.isfinite(r).all():
        raise ValueError("deflated_sharpe_of_best: the trials' returns must be finite (align them first)")
    sr = sharpe_ratios(r)
    if np.isnan(sr).all():
        raise ValueError("deflated_sharpe_of_best: every trial has zero dispersion")
    best = int(np.nanargmax(sr))
    n_trials = r.shape[1]
    finite = sr[np.isfinite(sr)]
    variance = float(np.var(finite, ddof=1)) if finite.size > 1 else 0.0
    x = r[:, best]
    skew = float(stats.skew(x, bias=True))
    kurt = float(stats.kurtosis(x, fisher=False, bias=True))
    return best, deflated_sharpe_ratio(float(sr[best]), n_trials, variance, r.shape[0], skew, kurt)


@dataclass(frozen=True)
class BacktestOverfitting:
    """CSCV result: PBO, the logits of every split and the split count."""

    pbo: float
    logits: np.ndarray
    n_splits: int
    n_blocks: int

    def to_dict(self) -> dict:
        finite = self.logits[np.isfinite(self.logits)]
        return {
            "pbo": self.pbo,
            "n_splits": self.n_splits,
            "n_blocks": self.n_blocks,
            "logit_median": float(np.median(finite)) if finite.size else None,
        }


def probability_of_backtest_overfitting(returns: np.ndarray, n_blocks: int = 16) -> BacktestOverfitting:
    """PBO of a T x N matrix of the trials' returns by CSCV with `n_blocks` (even) row blocks.

    Rows are cut into `n_blocks` contiguous blocks of equal size (the last T mod S rows are
    dropped, as in the paper's equal partition). Performance is the per-period Sharpe ratio.
    The out-of-sample relative rank of the in-sample winner is omega = rank / (N + 1) with
    rank 1 the worst (ties take their average rank); logit = ln(omega / (1 - omega)); PBO is the
    share of the C(S, S/2) splits whose logit is <= 0. Per-block sums make every split a sum of
    block statistics, so all splits are evaluated as two matrix products.
    """
    r = np.asarray(returns, dtype="float64")
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"probability_of_backtest_overfitting: need T x N with N >= 2 trials, got {r.shape}")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"probability_of_backtest_overfitting: n_blocks must be even and >= 2, got {n_blocks}")
    rows = r.shape[0] // n_blocks
    if rows < 2:
        raise ValueError(
            f"probability_of_backtest_overfitting: {r.shape[0]} rows cannot make {n_blocks} blocks of >= 2 rows"
        )
    if not np.isfinite(r).all():
        raise ValueError("probability_of_backtest_overfitting: the trials' returns must be finite")
    blocks = r[: rows * n_blocks].reshape(n_blocks, rows, r.shape[1])
    sums, squares = blocks.sum(axis=1), (blocks**2).sum(axis=1)
    train = np.array(
        [[b in c for b in range(n_blocks)] for c in itertools.combinations(range(n_blocks), n_blocks // 2)],
        dtype="float64",
    )
    is_sharpe = _block_sharpe(train @ sums, train @ squares, rows * n_blocks // 2)
    oos_sharpe = _block_sharpe((1 - train) @ sums, (1 - train) @ squares, rows * n_blocks // 2)
    winners = np.nanargmax(np.where(np.isnan(is_sharpe), -np.inf, is_sharpe), axis=1)
    logits = np.array([_logit(oos, w) for oos, w in zip(oos_sharpe, winners)])
    return BacktestOverfitting(float(np.mean(logits <= 0)), logits, len(train), n_blocks)


def _block_sharpe(sums: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    mean = sums / n
    var = (squares - n * mean**2) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 1e-300, mean / np.sqrt(np.maximum(var, 0.0)), np.nan)


def _logit(oos: np.ndarray, winner: int) -> float:
    values = np.where(np.isnan(oos), -np.inf, oos)
    rank = stats.rankdata(values, method="average")[winner]
    omega = rank / (values.size + 1)
    return float(math.log(omega / (1.0 - omega)))
