"""Performance metrics of a daily return series (definitions: shared/notes/metrics.md).

Crypto trades every day, so annualisation uses 365 periods. With N daily simple returns r and
equity E_t = prod(1 + r) starting at 1.0:

- total_return = E_N - 1;  CAGR = E_N ^ (P / N) - 1
- volatility = std(r, ddof=1) * sqrt(P)
- Sharpe = mean(r - rf) / std(r - rf, ddof=1) * sqrt(P)
- Sortino = mean(r - rf) / sqrt(mean(min(r - rf, 0)^2)) * sqrt(P) (downside over all N days)
- max_drawdown = min(E / cummax(E) - 1) on the curve that starts at 1.0 (<= 0)
- Calmar = CAGR / |max_drawdown|
- hit_rate = #(r > 0) / #(r != 0): days without a move are not counted (quantstats' win rate)

`risk_free` is an annual rate, turned into a per-day rate as (1 + rf) ^ (1 / P) - 1 (as
quantstats does). A figure that is undefined for the input (no drawdown for Calmar, zero
dispersion for Sharpe, ...) is None, never NaN or infinity, so the dict is JSON-ready.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

PERIODS_PER_YEAR = 365
# A sample standard deviation this small is rounding noise of a constant series: treat as 0.
_ZERO_DISPERSION = 1e-14


def performance_metrics(
    returns: pd.Series, periods_per_year: int = PERIODS_PER_YEAR, risk_free: float = 0.0
) -> dict:
    """cagr, volatility, sharpe, sortino, max_drawdown, calmar, hit_rate and friends."""
    r = _checked(returns)
    n = int(r.size)
    p = periods_per_year
    out: dict = {"n_days": n}
    if isinstance(returns.index, pd.DatetimeIndex) and n:
        out["start"] = returns.index[0].date().isoformat()
        out["end"] = returns.index[-1].date().isoformat()
    if n == 0:
        return out | dict.fromkeys(
            ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar", "hit_rate",
             "best_day", "worst_day")
        )
    equity = np.cumprod(1.0 + r)
    final = float(equity[-1])
    excess = r - ((1.0 + risk_free) ** (1.0 / p) - 1.0)
    std = float(np.std(r, ddof=1)) if n > 1 else math.nan
    std_excess = float(np.std(excess, ddof=1)) if n > 1 else math.nan
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
    drawdown = float(np.min(equity / np.maximum.accumulate(np.maximum(equity, 1.0)) - 1.0))
    cagr = final ** (p / n) - 1.0 if final >= 0 else None
    moved = int(np.count_nonzero(r))
    out.update(
        total_return=final - 1.0,
        cagr=cagr,
        volatility=_finite(std * math.sqrt(p)),
        sharpe=_ratio(float(np.mean(excess)), std_excess, math.sqrt(p)),
        sortino=_ratio(float(np.mean(excess)), downside, math.sqrt(p)),
        max_drawdown=drawdown,
        calmar=cagr / abs(drawdown) if cagr is not None and drawdown < 0 else None,
        hit_rate=int(np.count_nonzero(r > 0)) / moved if moved else None,
        best_day=float(np.max(r)),
        worst_day=float(np.min(r)),
    )
    return {k: _finite(v) if isinstance(v, float) else v for k, v in out.items()}


def returns_from_equity(equity: pd.Series) -> pd.Series:
    """Daily returns of an equity curve whose first row is the 1.0 starting point."""
    values = equity.to_numpy("float64")
    return pd.Series(values[1:] / values[:-1] - 1.0, index=equity.index[1:], name=equity.name)


def _checked(returns: pd.Series) -> np.ndarray:
    r = np.asarray(returns, dtype="float64")
    bad = ~np.isfinite(r)
    if bad.any():
        where = returns.index[int(np.argmax(bad))]
        raise ValueError(f"returns {returns.name or ''}: non-finite value at {where}; metrics need a complete series")
    if (r < -1.0).any():
        where = returns.index[int(np.argmax(r < -1.0))]
        raise ValueError(f"returns {returns.name or ''}: return below -100% at {where}")
    return r


def _ratio(numerator: float, denominator: float, scale: float) -> float | None:
    if not math.isfinite(denominator) or denominator <= _ZERO_DISPERSION:
        return None
    return numerator / denominator * scale


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
