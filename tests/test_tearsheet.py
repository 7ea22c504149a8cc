"""The tear sheet: its figures (pure), the PNG (deterministic bytes) and the HTML (self-contained)."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from quantlake.alpha.metrics import drawdown_periods, performance_metrics, relative_metrics, returns_from_equity
from quantlake.alpha.tearsheet import OTHER_COLOUR, holding_colours, render_tearsheet
from quantlake.alpha.tearsheet_figures import (
    HEADLINE,
    OTHER,
    TABLE_ROWS,
    TOP_HOLDINGS,
    format_value,
    headline_metrics,
    holdings_long,
    monthly_trading,
    summary_line,
    table_rows,
    tearsheet_figures,
    top_holdings,
)
from quantlake.alpha.tearsheet_html import render_html

CURVES = ("strategy", "equal_weight", "benchmark")


def backtest_like(seed: int = 3, days: int = 500, n_symbols: int = 24):
    """equity (from 1.0), per-curve metrics, daily trading and rebalance weights shaped like walk_forward's."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-03-01", periods=days, freq="D", name="date")
    bench = rng.standard_t(4, size=days) * 0.03 + 0.001
    net = pd.DataFrame(
        {"strategy": 0.5 * bench + rng.normal(0, 0.01, days), "equal_weight": 0.8 * bench + rng.normal(0, 0.005, days), "benchmark": bench},
        index=index,
    )
    start = pd.DataFrame({c: [1.0] for c in CURVES}, index=pd.DatetimeIndex([index[0] - pd.Timedelta(days=1)], name="date"))
    equity = pd.concat([start, (1 + net).cumprod()])
    metrics = {c: performance_metrics(returns_from_equity(equity[c])) for c in CURVES}
    trade = np.where(np.arange(days) % 30 == 0, rng.uniform(0.2, 0.9, days), 0.0)
    trading = pd.DataFrame({"strategy_trade": trade, "strategy_cost": trade * 0.0015,
                            "equal_weight_trade": trade / 3, "equal_weight_cost": trade / 3 * 0.0015}, index=index)
    for c in ("strategy", "equal_weight"):
        metrics[c].update(turnover=float(trade[trade > 0].mean()), annual_turnover=float(trade.sum() / days * 365),
                          total_cost=float(trading[f"{c}_cost"].sum()), n_rebalances=int((trade > 0).sum()))
    rows = []
    symbols = [f"SIM:S{k:02d}USDT" for k in range(n_symbols)]
    for t in index[::30]:
        picked = rng.choice(symbols, size=12, replace=False)
        w = rng.dirichlet(np.ones(12))
        rows += [(t, s, float(x)) for s, x in zip(picked, w)]
    weights = pd.DataFrame(rows, columns=["date", "symbol", "weight"])
    return equity, metrics, trading, weights


@pytest.fixture(scope="module")
def figures():
    equity, metrics, trading, weights = backtest_like()
    return tearsheet_figures(equity, metrics, trading, weights)


def test_headline_metrics_are_the_flat_short_set_in_order():
    _, metrics, _, _ = backtest_like()
    head = headline_metrics(metrics)
    assert list(head) == [k for k, _, _ in HEADLINE]
    assert list(head)[:4] == ["cagr", "sharpe", "max_dd", "turnover"]  # the strategy first
    assert head["cagr"] == metrics["strategy"]["cagr"] and head["bench_max_dd"] == metrics["benchmark"]["max_drawdown"]
    assert all(isinstance(v, float) for v in head.values())
    assert all(len(k) <= 12 for k in head)


def test_full_metrics_add_drawdown_dates_and_relative_figures(figures):
    m = figures.metrics
    equity = figures.equity
    for curve in CURVES:
        worst = drawdown_periods(equity[curve], top=1)[0]
        assert m[curve]["max_drawdown_trough"] == worst["trough"] and m[curve]["max_drawdown_peak"] == worst["peak"]
        assert m[curve]["max_drawdown"] == pytest.approx(worst["depth"], rel=1e-12)
    rel = relative_metrics(returns_from_equity(equity["strategy"]), returns_from_equity(equity["benchmark"]))
    assert m["strategy"]["beta"] == pytest.approx(rel["beta"]) and 0.3 < m["strategy"]["beta"] < 0.7
    assert m["benchmark"]["beta"] == pytest.approx(1.0) and m["benchmark"]["information_ratio"] is None


def test_figures_have_the_panels_the_tear_sheet_shows(figures):
    assert list(figures.drawdown.columns) == list(CURVES) and (figures.drawdown.to_numpy() <= 0).all()
    assert len(figures.worst_drawdowns) == 5
    depths = [p["depth"] for p in figures.worst_drawdowns]
    assert depths == sorted(depths) and depths[0] == pytest.approx(figures.metrics["strategy"]["max_drawdown"])
    assert list(figures.monthly.columns) == list(range(1, 13)) and list(figures.monthly.index) == [2024, 2025]
    assert list(figures.yearly.columns) == list(CURVES)
    assert figures.rolling_sharpe["strategy"].iloc[:89].isna().all() and figures.rolling_sharpe["strategy"].iloc[89:].notna().all()
    assert figures.trading["cost"].sum() == pytest.approx(figures.metrics["strategy"]["total_cost"], rel=1e-12)


def test_monthly_trading_sums_each_month():
    index = pd.date_range("2024-01-30", periods=4, freq="D")
    trading = pd.DataFrame({"strategy_trade": [0.5, 0.1, 0.2, 0.0], "strategy_cost": [0.001, 0.0, 0.0005, 0.0]}, index=index)
    monthly = monthly_trading(trading)
    assert list(monthly.index) == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01")]
    assert monthly["turnover"].tolist() == pytest.approx([0.6, 0.2]) and monthly["cost"].tolist() == pytest.approx([0.001, 0.0005])


def test_top_holdings_name_the_largest_and_group_the_rest():
    _, _, _, weights = backtest_like()
    wide = top_holdings(weights)
    assert list(wide.columns[-1:]) == [OTHER] and len(wide.columns) == TOP_HOLDINGS + 1
    assert all(":" not in c for c in wide.columns)  # one exchange: names without the prefix
    totals = weights.groupby("date")["weight"].sum()
    np.testing.assert_allclose(wide.sum(axis=1).to_numpy(), totals.to_numpy(), rtol=1e-12)
    mean = weights.pivot_table(index="date", columns="symbol", values="weight", aggfunc="sum").fillna(0).mean()
    expected = [s.split(":")[1] for s in sorted(mean.index, key=lambda s: (-round(float(mean[s]), 12), s))[:TOP_HOLDINGS]]
    assert list(wide.columns[:-1]) == expected
    # as many symbols as the panel shows: no "other"; two exchanges: names keep their prefix
    few = weights[weights["symbol"].isin(sorted(weights["symbol"].unique())[:TOP_HOLDINGS])]
    assert OTHER not in top_holdings(few).columns
    mixed = weights.assign(symbol=weights["symbol"].where(weights.index % 2 == 0, weights["symbol"].str.replace("SIM:", "X:")))
    assert all(":" in c for c in top_holdings(mixed).columns if c != OTHER)
    assert top_holdings(weights.iloc[:0]).empty


def test_holdings_long_keeps_the_stacking_rank():
    _, _, _, weights = backtest_like()
    wide = top_holdings(weights)
    long = holdings_long(wide)
    assert list(long.columns) == ["date", "rank", "symbol", "weight"]
    assert long.loc[long["symbol"] == OTHER, "rank"].unique().tolist() == [TOP_HOLDINGS]
    assert long.groupby("symbol")["rank"].nunique().max() == 1 and len(long) == wide.size


def test_holding_colours_are_distinct_and_other_is_grey():
    names = [f"S{k}" for k in range(TOP_HOLDINGS)] + [OTHER]
    colours = holding_colours(names)
    assert colours[-1] == OTHER_COLOUR and len(set(colours[:-1])) == TOP_HOLDINGS and OTHER_COLOUR not in colours[:-1]


def test_numbers_read_as_people_read_them():
    assert format_value(0.3980348684085706, "pct") == "39.8%"
    assert format_value(1.4613135637316785, "num") == "1.46"
    assert format_value(None, "num") == "n/a" and format_value(None, "date") == "-" and format_value(math.nan, "pct") == "n/a"
    assert format_value(904, "int") == "904"
    line = summary_line("strategy", {"cagr": 0.3980348684085706, "sharpe": 1.46131, "max_drawdown": -0.33452, "turnover": 0.65132})
    assert line == "strategy: CAGR 39.8%, Sharpe 1.46, max drawdown -33.5%, turnover 65.1%/rebalance"
    assert "turnover" not in summary_line("benchmark", {"cagr": 0.1, "sharpe": 1.0, "max_drawdown": -0.2})


def test_metrics_table_rows_cover_every_figure(figures):
    rows = table_rows(figures.metrics, list(CURVES))
    assert [r[0] for r in rows] == [label for label, _, _ in TABLE_ROWS]
    labels = {r[0]: r[1:] for r in rows}
    for label in ("CAGR", "Volatility", "Sharpe", "Sortino", "Calmar", "Max drawdown", "Turnover / rebalance", "Costs paid",
                  "Hit rate (days)", "Beta vs benchmark", "Information ratio"):
        assert labels[label][0] not in ("n/a", "-"), label
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", labels["  trough"][0])
    assert labels["Turnover / rebalance"][2] == "n/a"  # buy and hold has no rebalance


def test_png_is_byte_identical_across_renders_and_changes_with_the_data(figures):
    first = render_tearsheet(figures, "title")
    assert render_tearsheet(figures, "title") == first
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(first))
    assert image.size == (1200, 2300)
    assert not any(k.lower() in ("software", "creation time", "date") for k in image.info)
    equity, metrics, trading, weights = backtest_like(seed=4)
    assert render_tearsheet(tearsheet_figures(equity, metrics, trading, weights), "title") != first


def test_html_is_self_contained_and_deterministic(figures):
    png = render_tearsheet(figures, "t")
    page = render_html(figures, "quantlake <backtest>", png, {"run_id": "abc"})
    assert page == render_html(figures, "quantlake <backtest>", png, {"run_id": "abc"})
    text = page.decode()
    assert "quantlake &lt;backtest&gt;" in text and "<script" not in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing loaded from the network
    assert "data:image/png;base64," in text
    for heading in ("Performance", "Worst drawdowns", "Monthly returns", "Yearly returns"):
        assert heading in text
    assert text.count("<tr>") >= len(TABLE_ROWS) + 5 + 2


def test_backtest_stage_summary_reads_well_and_ends_with_where_to_look(figures):
    from pathlib import Path

    from quantlake.alpha.stages import backtest_summary

    lines = backtest_summary(figures.metrics, Path("artifacts/backtest"))
    assert len(lines) == 4 and lines[0].startswith("backtest     strategy: CAGR ")
    assert re.fullmatch(r"backtest +strategy: CAGR -?\d+\.\d%, Sharpe -?\d+\.\d\d, max drawdown -\d+\.\d%, turnover \d+\.\d%/rebalance", lines[0])
    assert lines[-1] == ("backtest: tear sheet artifacts/backtest/tearsheet.png (and artifacts/backtest/tearsheet.html); "
                         "data report artifacts/reports/data_audit.html")
