"""The backtest's accounting (issue 11): gaps, delistings, pools with a bar, the universe hook.

Markets here are built from bars (`returns_matrix` / `traded_value_matrix`), as the pipeline
does, so a missing day is a missing bar and not a hand-made NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantlake.alpha.backtest import OptimizationParams, optimize_atoms, todays_portfolio, walk_forward
from quantlake.alpha.optimize import optimize_weights
from quantlake.alpha.returns import returns_matrix, traded_value_matrix
from quantlake.alpha.selection import select_assets
from quantlake.alpha.synthesis import SynthesisParams, synthesize
from quantlake.params_base import ParamsError
from quantlake.contracts import DAY_MS, ContractError
from test_backtest import DATES, market, params

T0 = DATES[0] + pd.Timedelta(days=59)  # first rebalance date of `params()` (60 warm-up days)
STEP = pd.Timedelta(days=20)


def bars_market(seed: int = 0, no_bars: dict[str, list[pd.Timestamp]] | None = None) -> dict[str, pd.DataFrame]:
    """`market(seed)` as bars: prices compounding its returns, without the days in `no_bars`.

    `no_bars["*"]` are exchange-wide missing days (no symbol has a bar).
    """
    returns, _ = market(seed)
    no_bars = no_bars or {}
    out = {}
    for symbol in returns.columns:
        r = returns[symbol]
        listed = r.notna() | (r.index == r.index[0]) | r.shift(-1).notna()  # NEW lists the day before its first return
        close = 100.0 * (1.0 + r.fillna(0.0)).cumprod()
        drop = set(no_bars.get("*", [])) | set(no_bars.get(symbol, []))
        keep = listed & ~r.index.isin(sorted(drop))
        days = r.index[keep]
        c = close[keep].to_numpy()
        out[symbol] = pd.DataFrame(
            {"timestamp": days.as_unit("ms").asi8.astype("int64"), "open": c, "high": c, "low": c, "close": c,
             "volume": np.full(len(c), 1e4)}
        )
    assert all(int(f["timestamp"].iloc[0]) % DAY_MS == 0 for f in out.values())
    return out


def panels(bars: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return returns_matrix(bars), traded_value_matrix(bars)


def closes(bars: dict[str, pd.DataFrame], symbol: str) -> pd.Series:
    f = bars[symbol]
    return pd.Series(f["close"].to_numpy(), index=pd.to_datetime(f["timestamp"].to_numpy(), unit="ms"))


def has_bar(bars: dict[str, pd.DataFrame], symbol: str, day: pd.Timestamp) -> bool:
    return bool((bars[symbol]["timestamp"] == day.value // 1_000_000).any())  # .value: always ns


# --------------------------------------------------------------------------- gaps


def test_benchmark_equity_is_the_price_ratio_across_an_exchange_wide_gap():
    outage = [T0 + 2 * STEP + pd.Timedelta(days=5), T0 + 3 * STEP - pd.Timedelta(days=1)]  # inside / before a rebalance
    bars = bars_market(0, {"*": outage, "SIM:BTCUSDT": [T0 + 4 * STEP + pd.Timedelta(days=3)]})
    res = walk_forward(*panels(bars), params())
    btc = closes(bars, "SIM:BTCUSDT")
    start = btc[res.equity.index[0]]
    traded = res.equity.index[res.equity.index.isin(btc.index)]
    np.testing.assert_allclose(res.equity.loc[traded, "benchmark"], btc[traded] / start, rtol=1e-12)
    assert res.equity["benchmark"].iloc[-1] == pytest.approx(btc.iloc[-1] / start, rel=1e-12)
    # a day without a bar books nothing; the day trading resumes books the whole move
    for day in outage:
        assert res.returns.at[day, "benchmark"] == 0.0
        after = day + pd.Timedelta(days=1)
        assert 1 + res.returns.at[after, "benchmark"] == pytest.approx(btc[after] / btc[day - pd.Timedelta(days=1)], rel=1e-12)


def test_equal_weight_is_never_in_cash_while_symbols_trade():
    # rebalances on the day after an exchange-wide missing day, and on such a day itself
    outage = [T0 + 3 * STEP - pd.Timedelta(days=1), T0 + 5 * STEP]
    bars = bars_market(1, {"*": outage})
    returns, value = panels(bars)
    res = walk_forward(returns, value, params())
    assert {T0 + 3 * STEP, T0 + 5 * STEP} <= set(res.windows["train_end"])
    ew = res.returns["equal_weight"]
    traded = ew.index.isin(returns.index)  # days with bars
    assert (ew[traded] != 0).all()
    assert (res.windows["equal_weight_turnover"] > 0).all()
    rate = 15 / 10_000
    for t in (T0 + 3 * STEP, T0 + 5 * STEP):
        w = res.windows.set_index("train_end").loc[t]
        last_bars = t if t in returns.index else t - pd.Timedelta(days=1)  # the last market close
        pool = [s for s in returns.columns if has_bar(bars, s, last_bars)]
        assert len(pool) == returns.shape[1] - (0 if has_bar(bars, "SIM:NEWUSDT", last_bars) else 1)
        first = returns.loc[w.test_start, pool].mean()
        assert ew[w.test_start] == pytest.approx(first - w.equal_weight_turnover * rate, abs=1e-15)


# --------------------------------------------------------------------------- ghosts and delistings


def test_no_weight_on_a_symbol_without_a_bar_and_delisted_positions_close_at_their_last_price():
    # ETH stops trading mid-way (a delisting), SOL halts across a rebalance and comes back
    last_eth = T0 + 4 * STEP + pd.Timedelta(days=6)
    halt = list(pd.date_range(T0 + 6 * STEP - pd.Timedelta(days=3), T0 + 6 * STEP + pd.Timedelta(days=2)))
    bars = bars_market(2, {"SIM:ETHUSDT": list(DATES[DATES > last_eth]), "SIM:SOLUSDT": halt})
    returns, value = panels(bars)
    p = params(optimize={"method": "equal_weight"}, selection={"top_n": 3})
    res = walk_forward(returns, value, p)
    live = res.weights[res.weights["weight"] != 0]
    assert len(live) and all(has_bar(bars, s, d) for d, s in zip(live["date"], live["symbol"]))
    eth_held = res.weights[(res.weights["symbol"] == "SIM:ETHUSDT") & (res.weights["weight"] > 0)]
    assert eth_held["date"].max() == T0 + 4 * STEP  # held into its delisting, never after
    t = T0 + 5 * STEP  # ETH has no bar: its position was closed out at its last price
    window = res.windows.set_index("train_end").loc[t]
    assert window.closed_out > 0
    # ... and so was SOL's, halted on the next rebalance date; nothing else is ever closed out
    assert set(res.windows.loc[res.windows["closed_out"] > 0, "train_end"]) == {t, T0 + 6 * STEP}
    assert window.equal_weight_closed_out > 0  # the baseline held ETH too
    # from its last day on it earned nothing: the strategy equals the other holdings' P&L
    held = res.weights[res.weights["date"] == T0 + 4 * STEP].set_index("symbol")["weight"]
    r = returns.loc[T0 + 4 * STEP + pd.Timedelta(days=1) : t, held.index].fillna(0.0)
    w, growth = held.copy(), []
    for _, row in r.iterrows():
        g = float((w * row).sum())
        growth.append(g)
        w = w * (1 + row) / (1 + g)
    got = res.returns.loc[r.index, "strategy"].to_numpy()
    np.testing.assert_allclose(got[1:], growth[1:], atol=1e-14)  # day 1 also pays that window's cost
    # a haircut costs exactly its share of the closed-out exposure on the next window's first day
    cut = walk_forward(returns, value, params(optimize={"method": "equal_weight"}, selection={"top_n": 3}, delisting_haircut=0.3))
    pd.testing.assert_frame_equal(cut.weights, res.weights)
    day = window.test_start
    assert 1 + cut.returns.at[day, "strategy"] == pytest.approx(1 + res.returns.at[day, "strategy"] - 0.3 * window.closed_out, rel=1e-12)
    before = cut.returns.index < day
    pd.testing.assert_frame_equal(cut.returns.loc[before], res.returns.loc[before])
    # the close-out is not a trade: the turnover at t counts the symbols that trade only
    assert cut.windows["turnover"].equals(res.windows["turnover"])


def test_a_halted_symbol_is_vetoed_from_selection_with_the_reason():
    halt = list(pd.date_range(T0 + 2 * STEP - pd.Timedelta(days=2), T0 + 2 * STEP + pd.Timedelta(days=1)))
    bars = bars_market(3, {"SIM:XMRUSDT": halt})
    returns, value = panels(bars)
    t = T0 + 2 * STEP
    portfolio = todays_portfolio(returns, value, t, params())
    assert "SIM:XMRUSDT" not in portfolio.selection.selected and "SIM:XMRUSDT" not in portfolio.weights.index
    assert portfolio.selection.vetoes["SIM:XMRUSDT"].startswith(f"no bar on {t.date()}: not trading")
    before = todays_portfolio(returns, value, t - pd.Timedelta(days=3), params())
    assert "SIM:XMRUSDT" not in before.selection.vetoes  # it traded then


# --------------------------------------------------------------------------- the universe hook


def test_an_eligible_mask_restricts_every_pool():
    returns, value = market(4)
    base = walk_forward(returns, value, params())
    calendar = pd.date_range(returns.index[0], returns.index[-1], freq="D")
    everyone = pd.DataFrame(True, index=calendar, columns=returns.columns)
    same = walk_forward(returns, value, params(), eligible=everyone)
    pd.testing.assert_frame_equal(same.equity, base.equity)
    pd.testing.assert_frame_equal(same.weights, base.weights)
    mask = everyone.copy()
    mask.loc[: T0 + 3 * STEP, "SIM:BTCUSDT"] = False  # joins the universe later
    mask.loc[T0 + 2 * STEP :, "SIM:SOLUSDT"] = False  # leaves it
    res = walk_forward(returns, value, params(), eligible=mask)
    live = res.weights[res.weights["weight"] != 0]
    assert live.apply(lambda row: bool(mask.at[row["date"], row["symbol"]]), axis=1).all()
    rate = 15 / 10_000
    for w in res.windows.itertuples():
        pool = [s for s in returns.columns if mask.at[w.train_end, s] and np.isfinite(value.at[w.train_end, s])]
        first = returns.loc[w.test_start, pool].fillna(0.0).mean()
        assert res.returns.at[w.test_start, "equal_weight"] == pytest.approx(first - w.equal_weight_turnover * rate, abs=1e-15)
    t = T0 + 2 * STEP
    today = todays_portfolio(returns, value, t, params(), eligible=mask)
    recorded = res.weights[res.weights["date"] == t].set_index("symbol")["weight"]
    pd.testing.assert_series_equal(today.weights, recorded, check_names=False)
    assert today.selection.vetoes["SIM:BTCUSDT"] == f"not in the point-in-time universe on {t.date()}"
    assert "SIM:SOLUSDT" in today.selection.vetoes
    with pytest.raises(ContractError, match="eligible universe has no row for"):
        select_assets(returns, value, returns.index[-1], params().selection, eligible=mask.iloc[:-1])
    with pytest.raises(ContractError, match="values must be bool"):
        select_assets(returns, value, t, params().selection, eligible=mask.astype("float64"))


def test_the_recipe_optimizes_on_observed_days_not_zero_padded_ones():
    returns, _ = market(5)
    t = returns.index[-1]
    symbols = ["SIM:BTCUSDT", "SIM:XMRUSDT", "SIM:NEWUSDT"]  # NEW trades 140 of the 240 days
    atoms = synthesize(returns, symbols, SynthesisParams())
    clusters = pd.Series([0, 1, 2], index=symbols)
    start = returns.index[0]
    weights, _ = optimize_atoms(atoms, clusters, start, t, OptimizationParams(method="hrp", max_weight=1.0, max_cluster_weight=1.0))
    window = atoms.returns.loc[start:t]
    assert window.isna().any().any()
    expected = optimize_weights(window, "hrp", clusters=atoms.symbol_of.map(clusters))
    pd.testing.assert_series_equal(weights, expected.rename("weight"), check_exact=True)
    padded = optimize_weights(window.fillna(0.0), "hrp", clusters=atoms.symbol_of.map(clusters))
    assert padded["SIM:NEWUSDT|long|long"] > weights["SIM:NEWUSDT|long|long"] + 0.02


def test_delisting_haircut_is_a_share_in_0_1():
    assert params(delisting_haircut=0.0).delisting_haircut == 0.0 and params(delisting_haircut=1.0).delisting_haircut == 1.0
    for bad in (-0.01, 1.01):
        with pytest.raises(ParamsError, match=r"backtest.delisting_haircut must be in \[0, 1\]"):
            params(delisting_haircut=bad)


def test_the_universe_is_read_point_in_time():
    returns, value = market(4)
    calendar = pd.date_range(returns.index[0], returns.index[-1], freq="D")
    rng = np.random.default_rng(9)
    mask = pd.DataFrame(rng.random((len(calendar), returns.shape[1])) > 0.3, index=calendar, columns=returns.columns)
    base = walk_forward(returns, value, params(), eligible=mask)
    cut = T0 + 3 * STEP
    later = mask.copy()
    later.loc[later.index > cut] = ~later.loc[later.index > cut]  # a different future universe
    other = walk_forward(returns, value, params(), eligible=later)
    pd.testing.assert_frame_equal(other.equity.loc[:cut], base.equity.loc[:cut])
    pd.testing.assert_frame_equal(other.weights[other.weights["date"] <= cut], base.weights[base.weights["date"] <= cut])
    assert not other.weights.equals(base.weights)  # the future universe does matter after the cut


def test_holding_does_not_depend_on_the_memory_layout_of_its_inputs():
    """The same numbers in C or Fortran order give the same bits (a strided row would take
    another BLAS dot kernel)."""
    from quantlake.alpha.holding import Book

    rng = np.random.default_rng(21)
    atom_returns = rng.normal(0.0, 0.03, size=(30, 17))
    positions = np.ones((30, 17))
    symbols = np.arange(17)
    weights = rng.dirichlet(np.ones(17))
    outs = []
    for order in ("C", "F"):
        book = Book(np.zeros(17))
        outs.append(book.hold(np.asarray(atom_returns, order=order), np.asarray(positions, order=order), symbols,
                              np.asarray(atom_returns, order=order), weights, 0.0015, np.ones(17, dtype=bool)))
        outs.append(book.exposure)
    (c_days, c_exposure), (f_days, f_exposure) = outs[:2], outs[2:]
    for c_side, f_side in zip(c_days, f_days):  # net, trades, costs per day
        np.testing.assert_array_equal(c_side, f_side)
    np.testing.assert_array_equal(c_exposure, f_exposure)
