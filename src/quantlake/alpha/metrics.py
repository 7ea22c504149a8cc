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

Against a benchmark b (same days; `relative_metrics`):

- beta = cov(r, b) / var(b) (both ddof=1; quantstats `greeks`, empyrical `beta`)
- tracking_error = std(r - b, ddof=1) * sqrt(P)
- information_ratio = mean(r - b) / std(r - b, ddof=1) * sqrt(P): annualised, i.e. quantstats'
  `information_ratio` (a per-day figure) times sqrt(P)

Over time (the tear sheet's panels):

- rolling Sharpe / volatility over a window of W days: the Sharpe and volatility above on each
  trailing window of W returns (quantstats `rolling_sharpe` / `rolling_volatility` with P = 365)
- monthly / yearly returns: compounded within each calendar month / year
- drawdown periods: a period starts on the first day below the running peak and ends on the
  day the curve is back at the peak (`recovered`, None while under water); its depth is the
  lowest E / peak - 1 inside it (quantstats `drawdown_details`, with the curve starting at 1.0)

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


def relative_metrics(returns: pd.Series, benchmark: pd.Series, periods_per_year: int = PERIODS_PER_YEAR) -> dict:
    """beta, tracking_error and information_ratio of `returns` against `benchmark` (same index)."""
    r, b = _checked(returns), _checked(benchmark.reindex(returns.index))
    if r.size < 2:
        return dict.fromkeys(("beta", "tracking_error", "information_ratio"))
    cov = np.cov(r, b, ddof=1)
    active = r - b
    te = float(np.std(active, ddof=1))
    return {
        "beta": float(cov[0, 1] / cov[1, 1]) if cov[1, 1] > _ZERO_DISPERSION**2 else None,
        "tracking_error": _finite(te * math.sqrt(periods_per_year)),
        "information_ratio": _ratio(float(np.mean(active)), te, math.sqrt(periods_per_year)),
    }


def drawdown_curve(equity: pd.Series) -> pd.Series:
    """E / running peak - 1 (<= 0), the peak starting at 1.0 as in `max_drawdown`."""
    values = equity.to_numpy("float64")
    return pd.Series(values / np.maximum.accumulate(np.maximum(values, 1.0)) - 1.0, index=equity.index, name=equity.name)


def drawdown_periods(equity: pd.Series, top: int = 5) -> list[dict]:
    """The `top` deepest drawdown periods, deepest first: peak, start, trough, recovered, depth, days.

    `peak` is the last day at the running high before the period (None when the period starts
    on the first row), `days` counts the calendar days under water (from `start` to the day
    before `recovered`, or to the last day while still under water), as quantstats does.
    """
    dd = drawdown_curve(equity)
    under = dd.to_numpy() < 0
    periods, i, n = [], 0, len(dd)
    while i < n:
        if not under[i]:
            i += 1
            continue
        j = i
        while j < n and under[j]:
            j += 1
        window = dd.iloc[i:j]
        recovered = dd.index[j] if j < n else None
        periods.append(
            {
                "peak": _day(dd.index[i - 1]) if i > 0 else None,
                "start": _day(dd.index[i]),
                "trough": _day(window.idxmin()),
                "recovered": _day(recovered) if recovered is not None else None,
                "depth": float(window.min()),
                "days": _days_between(dd.index[i], dd.index[j - 1], j - i),
            }
        )
        i = j
    return sorted(periods, key=lambda p: (p["depth"], p["start"]))[:top]


def rolling_sharpe(returns: pd.Series, window: int = 90, periods_per_year: int = PERIODS_PER_YEAR) -> pd.Series:
    """Annualised Sharpe of each trailing `window` of returns (NaN until the window is full)."""
    roll = returns.astype("float64").rolling(window)
    std = roll.std(ddof=1)
    return (roll.mean() / std.where(std > _ZERO_DISPERSION) * math.sqrt(periods_per_year)).rename(returns.name)


def rolling_volatility(returns: pd.Series, window: int = 90, periods_per_year: int = PERIODS_PER_YEAR) -> pd.Series:
    """Annualised volatility of each trailing `window` of returns (NaN until the window is full)."""
    return (returns.astype("float64").rolling(window).std(ddof=1) * math.sqrt(periods_per_year)).rename(returns.name)


def period_returns(returns: pd.Series, freq: str) -> pd.Series:
    """Compounded return of each calendar period: freq "M" (month) or "Y" (year), labelled by its period."""
    if freq not in ("M", "Y"):
        raise ValueError(f"period_returns: freq must be 'M' or 'Y', got {freq!r}")
    growth = (1.0 + returns.astype("float64")).groupby(returns.index.to_period(freq)).prod()
    return (growth - 1.0).rename(returns.name)


def monthly_table(returns: pd.Series) -> pd.DataFrame:
    """Year x month (1..12) table of compounded monthly returns, NaN for months without data."""
    monthly = period_returns(returns, "M")
    table = pd.DataFrame({"year": monthly.index.year, "month": monthly.index.month, "r": monthly.to_numpy()})
    return table.pivot(index="year", columns="month", values="r").reindex(columns=range(1, 13))


def returns_from_equity(equity: pd.Series) -> pd.Series:
    """Daily returns of an equity curve whose first row is the 1.0 starting point."""
    values = equity.to_numpy("float64")
    return pd.Series(values[1:] / values[:-1] - 1.0, index=equity.index[1:], name=equity.name)


def _day(ts):
    return ts.date().isoformat() if isinstance(ts, pd.Timestamp) else ts


def _days_between(first, last, rows: int) -> int:
    if isinstance(first, pd.Timestamp) and isinstance(last, pd.Timestamp):
        return int((last - first).days) + 1
    return rows


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
