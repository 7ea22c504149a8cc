"""The figures of a backtest's tear sheet, as plain numbers and frames (no plotting, no IO).

`tearsheet_figures` turns a walk-forward result (equity curves, daily trades and costs, the
weights chosen at each rebalance) into everything the tear sheet shows; `headline_metrics`
is the short, flat set DVC records as `metrics.json`; `full_metrics` the complete per-curve
figures (`performance.json`). Definitions: alpha/metrics.py (shared/notes/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metrics import (
    drawdown_curve,
    drawdown_periods,
    monthly_table,
    period_returns,
    relative_metrics,
    returns_from_equity,
    rolling_sharpe,
    rolling_volatility,
)

ROLLING_DAYS = 90
WORST_DRAWDOWNS = 5
TOP_HOLDINGS = 15
OTHER = "other"
BENCHMARK_CURVE = "benchmark"

# metrics.json: (key, curve, figure), strategy first, then the baselines; benchmark turnover
# is always 0 (buy and hold), so it is left out
HEADLINE = (
    ("cagr", "strategy", "cagr"),
    ("sharpe", "strategy", "sharpe"),
    ("max_dd", "strategy", "max_drawdown"),
    ("turnover", "strategy", "turnover"),
    ("ew_cagr", "equal_weight", "cagr"),
    ("ew_sharpe", "equal_weight", "sharpe"),
    ("ew_max_dd", "equal_weight", "max_drawdown"),
    ("ew_turnover", "equal_weight", "turnover"),
    ("bench_cagr", "benchmark", "cagr"),
    ("bench_sharpe", "benchmark", "sharpe"),
    ("bench_max_dd", "benchmark", "max_drawdown"),
)

# the tear sheet's metrics table: (label, figure, format) with format "pct" | "num" | "date" | "int"
TABLE_ROWS = (
    ("CAGR", "cagr", "pct"),
    ("Volatility", "volatility", "pct"),
    ("Sharpe", "sharpe", "num"),
    ("Sortino", "sortino", "num"),
    ("Calmar", "calmar", "num"),
    ("Max drawdown", "max_drawdown", "pct"),
    ("  peak", "max_drawdown_peak", "date"),
    ("  trough", "max_drawdown_trough", "date"),
    ("  recovered", "max_drawdown_recovered", "date"),
    ("Turnover / rebalance", "turnover", "pct"),
    ("Turnover / year", "annual_turnover", "pct"),
    ("Costs paid", "total_cost", "pct"),
    ("Hit rate (days)", "hit_rate", "pct"),
    ("Beta vs benchmark", "beta", "num"),
    ("Information ratio", "information_ratio", "num"),
    ("Total return", "total_return", "pct"),
    ("Days", "n_days", "int"),
)


def headline_metrics(metrics: dict) -> dict:
    """The flat headline dict (in HEADLINE order) from per-curve metrics {curve: {figure: value}}."""
    return {key: (metrics.get(curve) or {}).get(figure) for key, curve, figure in HEADLINE}


def full_metrics(metrics: dict, equity: pd.DataFrame) -> dict:
    """Per-curve metrics plus the max drawdown's dates and beta / information ratio vs the benchmark."""
    returns = {c: returns_from_equity(equity[c]) for c in equity.columns}
    out = {}
    for curve, figures in metrics.items():
        extra: dict = {}
        if curve in equity.columns:
            worst = drawdown_periods(equity[curve], top=1)
            w = worst[0] if worst else {}
            extra = {
                "max_drawdown_peak": w.get("peak"),
                "max_drawdown_trough": w.get("trough"),
                "max_drawdown_recovered": w.get("recovered"),
            }
            if BENCHMARK_CURVE in returns:
                extra.update(relative_metrics(returns[curve], returns[BENCHMARK_CURVE]))
        out[curve] = {**figures, **extra}
    return out


@dataclass(frozen=True)
class TearsheetFigures:
    equity: pd.DataFrame  # date x curves, from 1.0
    drawdown: pd.DataFrame  # date x curves, <= 0
    metrics: dict  # full_metrics: {curve: {figure: value}}
    worst_drawdowns: list  # of the strategy: drawdown_periods dicts, deepest first
    monthly: pd.DataFrame  # strategy: year x month (1..12)
    yearly: pd.DataFrame  # year x curves
    rolling_sharpe: pd.DataFrame  # date x curves
    rolling_volatility: pd.DataFrame  # date x curves
    trading: pd.DataFrame  # month x {turnover, cost}: the strategy's traded weight and costs per month
    holdings: pd.DataFrame  # rebalance date x (top holdings by name..., "other"): strategy weights


def tearsheet_figures(
    equity: pd.DataFrame, metrics: dict, trading: pd.DataFrame, weights: pd.DataFrame, window: int = ROLLING_DAYS
) -> TearsheetFigures:
    """Every figure of the tear sheet. `trading`: date x {strategy_trade, strategy_cost, ...};
    `weights`: long (date, symbol, weight) at each rebalance."""
    returns = pd.DataFrame({c: returns_from_equity(equity[c]) for c in equity.columns})
    strategy = returns[equity.columns[0]]
    return TearsheetFigures(
        equity=equity,
        drawdown=pd.DataFrame({c: drawdown_curve(equity[c]) for c in equity.columns}),
        metrics=full_metrics(metrics, equity),
        worst_drawdowns=drawdown_periods(equity[equity.columns[0]], top=WORST_DRAWDOWNS),
        monthly=monthly_table(strategy),
        yearly=pd.DataFrame({c: period_returns(returns[c], "Y") for c in returns.columns}).rename_axis("year"),
        rolling_sharpe=pd.DataFrame({c: rolling_sharpe(returns[c], window) for c in returns.columns}),
        rolling_volatility=pd.DataFrame({c: rolling_volatility(returns[c], window) for c in returns.columns}),
        trading=monthly_trading(trading),
        holdings=top_holdings(weights),
    )


def monthly_trading(trading: pd.DataFrame, curve: str = "strategy") -> pd.DataFrame:
    """Traded weight (sum |trade|) and costs (fractions of equity) of `curve` per calendar month."""
    if trading.empty:
        return pd.DataFrame(columns=["turnover", "cost"], dtype="float64")
    frame = pd.DataFrame({"turnover": trading[f"{curve}_trade"], "cost": trading[f"{curve}_cost"]})
    monthly = frame.groupby(frame.index.to_period("M")).sum()
    monthly.index = monthly.index.to_timestamp()
    return monthly


def top_holdings(weights: pd.DataFrame, top: int = TOP_HOLDINGS) -> pd.DataFrame:
    """Rebalance date x (the `top` symbols by mean |weight|, then "other" = the rest summed).

    Symbols are named without their exchange prefix when every symbol shares one exchange.
    Ties in mean weight are broken by name, so the order (and the colours) are stable.
    """
    if weights.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], name="date"))
    wide = weights.pivot_table(index="date", columns="symbol", values="weight", aggfunc="sum").fillna(0.0).sort_index()
    wide.index = pd.DatetimeIndex(wide.index, name="date")
    mean = wide.abs().mean()
    order = sorted(mean.index, key=lambda s: (-round(float(mean[s]), 12), s))
    shown = wide[order[:top]].copy()
    rest = wide[order[top:]].sum(axis=1)
    if (rest.abs() > 1e-12).any():
        shown[OTHER] = rest
    exchanges = {s.split(":", 1)[0] for s in order if ":" in s}
    if len(exchanges) == 1:
        shown.columns = [c.split(":", 1)[-1] for c in shown.columns]
    return shown


def holdings_long(holdings: pd.DataFrame) -> pd.DataFrame:
    """`top_holdings` as long rows (date, rank, symbol, weight), by rank then date: the plot's CSV.

    `rank` is the column's place (0 = the largest average holding, "other" last): the stacking order.
    """
    if holdings.empty:
        return pd.DataFrame(columns=["date", "rank", "symbol", "weight"])
    long = holdings.rename_axis("date").reset_index().melt(id_vars="date", var_name="symbol", value_name="weight")
    long["rank"] = long["symbol"].map({name: k for k, name in enumerate(holdings.columns)})
    return long.loc[:, ["date", "rank", "symbol", "weight"]]


def format_value(value, kind: str) -> str:
    """A figure as people read it: 39.8%, 1.46, 2024-05-01, n/a."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a" if kind != "date" else "-"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "num":
        return f"{value:.2f}"
    if kind == "int":
        return f"{int(value):,}"
    return str(value)


def table_rows(metrics: dict, curves: list[str]) -> list[list[str]]:
    """The metrics table as text: one row per TABLE_ROWS entry, one column per curve."""
    return [[label, *(format_value((metrics.get(c) or {}).get(key), kind) for c in curves)] for label, key, kind in TABLE_ROWS]


DRAWDOWN_HEADER = ("depth", "peak", "trough", "recovered", "days")


def drawdown_rows(periods: list[dict]) -> list[list[str]]:
    """The worst drawdowns as text rows under DRAWDOWN_HEADER ("days" = calendar days under water)."""
    return [[format_value(p["depth"], "pct"), p["peak"] or "-", p["trough"], p["recovered"] or "not yet", str(p["days"])]
            for p in periods]


def summary_line(name: str, figures: dict) -> str:
    """`strategy: CAGR 39.8%, Sharpe 1.46, max drawdown -33.5%, turnover 65.1%/rebalance`."""
    parts = [
        f"CAGR {format_value(figures.get('cagr'), 'pct')}",
        f"Sharpe {format_value(figures.get('sharpe'), 'num')}",
        f"max drawdown {format_value(figures.get('max_drawdown'), 'pct')}",
    ]
    if figures.get("turnover") is not None:
        parts.append(f"turnover {format_value(figures['turnover'], 'pct')}/rebalance")
    return f"{name}: " + ", ".join(parts)
