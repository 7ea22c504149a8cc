"""Walk-forward backtest: no look-ahead, costs, drift, baselines, recomputable metrics."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from quantlake.params_base import ParamsError
from quantlake.alpha.backtest import (
    CURVES,
    BacktestParams,
    data_known_at,
    feasible_caps,
    resolve_benchmark,
    todays_portfolio,
    walk_forward,
)
from quantlake.alpha.metrics import performance_metrics, returns_from_equity
from quantlake.alpha.returns import returns_matrix, traded_value_matrix
from quantlake.contracts import ContractError

from real_data import real_data_root
DATES = pd.date_range("2023-01-01", periods=240, freq="D", name="date")
BASE = {
    "train_days": 60,
    "test_days": 20,
    "step_days": 20,
    "fee_bps": 10.0,
    "slippage_bps": 5.0,
    "benchmark": "BTC",
    "selection": {
        "train_days": 60, "lookbacks": [20, 40], "min_history_days": 40, "max_volatility": 10.0,
        "max_entropy": 1.0, "min_efficiency": 0.0, "cluster_threshold": 0.3, "max_clusters": 4,
        "top_n": 2, "min_overlap_days": 15,
    },
    "optimize": {"method": "inverse_vol", "max_weight": 1.0, "max_cluster_weight": 1.0},
}


def params(**overrides) -> BacktestParams:
    d = json.loads(json.dumps(BASE))
    for key, value in overrides.items():
        if isinstance(value, dict):
            d.setdefault(key, {}).update(value)
        else:
            d[key] = value
    return BacktestParams.from_params(d)


def market(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two factor groups, a late listing, a symbol with missing days, and the benchmark."""
    rng = np.random.default_rng(seed)
    n = len(DATES)
    f = rng.normal(0.0, 0.03, size=(n, 2))
    cols = {
        "SIM:BTCUSDT": f[:, 0] + rng.normal(0.001, 0.01, n),
        "SIM:ETHUSDT": f[:, 0] + rng.normal(0.0, 0.015, n),
        "SIM:SOLUSDT": f[:, 0] * 1.5 + rng.normal(0.0, 0.02, n),
        "SIM:XMRUSDT": f[:, 1] + rng.normal(0.0, 0.01, n),
        "SIM:ZECUSDT": f[:, 1] + rng.normal(0.0, 0.02, n),
        "SIM:NEWUSDT": np.where(np.arange(n) >= 100, rng.normal(0.002, 0.05, n), np.nan),
    }
    returns = pd.DataFrame(cols, index=DATES)
    returns.iloc[0] = np.nan
    returns.iloc[130:134, returns.columns.get_loc("SIM:ZECUSDT")] = np.nan  # no bars for 4 days
    value = pd.DataFrame(1e6, index=DATES, columns=returns.columns).where(returns.notna())
    return returns, value


@pytest.fixture(scope="module")
def run():
    returns, value = market()
    return returns, value, walk_forward(returns, value, params())


def test_equity_layout(run):
    returns, _, res = run
    t0 = DATES[0] + pd.Timedelta(days=59)
    assert list(res.equity.columns) == list(CURVES)
    assert res.equity.index[0] == t0 and (res.equity.iloc[0] == 1.0).all()
    assert res.equity.index.equals(pd.date_range(t0, DATES[-1], freq="D", name="date"))
    assert list(res.windows["train_end"]) == list(pd.date_range(t0, DATES[-2], freq="20D"))
    assert (res.windows["test_start"] == res.windows["train_end"] + pd.Timedelta(days=1)).all()
    assert (res.windows["test_end"].iloc[:-1].to_numpy() == res.windows["train_end"].iloc[1:].to_numpy()).all()
    assert res.windows["test_end"].iloc[-1] == DATES[-1]
    assert set(res.weights.columns) == {"date", "symbol", "weight"}
    assert set(res.weights["date"]) == set(res.windows["train_end"])


def test_metrics_recompute_from_the_equity_csv(run):
    _, _, res = run
    text = res.equity.to_csv()
    equity = pd.read_csv(io.StringIO(text), index_col="date", parse_dates=["date"])
    for curve in CURVES:
        again = performance_metrics(returns_from_equity(equity[curve]))
        for key, value in again.items():
            if isinstance(value, float):
                assert res.metrics[curve][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (curve, key)
            else:
                assert res.metrics[curve][key] == value
    json.dumps(res.metrics, allow_nan=False)
    assert res.metrics["strategy"]["n_rebalances"] == len(res.windows)
    windows_sharpe = [performance_metrics(res.returns["strategy"].loc[w.test_start : w.test_end])["sharpe"]
                      for w in res.windows.itertuples()]
    np.testing.assert_allclose(res.windows["sharpe"].astype(float), windows_sharpe, rtol=1e-12)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"synthesis": {"logics": ["long", "short", "trend", "momentum"], "directions": ["long", "short"],
                       "trend_lookback": 10, "momentum_lookback": 5},
         "optimize": {"method": "hrp"}},
    ],
    ids=["long-inverse_vol", "all-logics-hrp"],
)
def test_no_look_ahead(overrides):
    returns, value = market(1)
    p = params(**overrides)
    base = walk_forward(returns, value, p)
    rng = np.random.default_rng(5)
    # a rebalance date (its portfolio must not see the next day) and a day inside a test window
    for cut in (base.windows["train_end"].iloc[3], base.windows["test_start"].iloc[5] + pd.Timedelta(days=7)):
        future = returns.index > cut
        returns2, value2 = returns.copy(), value.copy()
        returns2.loc[future] = rng.normal(0.0, 0.1, size=(int(future.sum()), returns.shape[1]))
        value2.loc[future] = 1.0
        other = walk_forward(returns2, value2, p)
        pd.testing.assert_frame_equal(other.equity.loc[:cut], base.equity.loc[:cut])
        pd.testing.assert_frame_equal(other.trading.loc[:cut], base.trading.loc[:cut])
        early = base.weights["date"] <= cut
        pd.testing.assert_frame_equal(other.weights[other.weights["date"] <= cut], base.weights[early])
        # the perturbation is real: the equity after the cut does change
        after = cut + pd.Timedelta(days=1)
        assert not other.equity.loc[after:].equals(base.equity.loc[after:])
    # The returns OF a rebalance date t are earned by the portfolio held into t (decided at the
    # previous rebalance); the portfolio decided at t's close from them is held from t + 1 only.
    # Perturb them (and everything after): up to and including t, the run must be the run on
    # the data ending at t, in which no portfolio decided at t exists.
    t = base.windows["train_end"].iloc[4]
    from_t = returns.index >= t
    returns3, value3 = returns.copy(), value.copy()
    returns3.loc[from_t] = rng.normal(0.0, 0.1, size=(int(from_t.sum()), returns.shape[1]))
    value3.loc[from_t] = 1.0
    other = walk_forward(returns3, value3, p)
    known = walk_forward(returns3.loc[:t], value3.loc[:t], p)
    assert known.equity.index[-1] == t and t not in set(known.weights["date"])
    pd.testing.assert_frame_equal(other.equity.loc[:t], known.equity)
    pd.testing.assert_frame_equal(other.trading.loc[:t], known.trading)
    before = t - pd.Timedelta(days=1)
    pd.testing.assert_frame_equal(other.equity.loc[:before], base.equity.loc[:before])
    pd.testing.assert_frame_equal(other.weights[other.weights["date"] < t], base.weights[base.weights["date"] < t])
    # the perturbation is real: day t's equity moves (the old portfolio earns t's returns) and
    # the portfolio decided at t sees them
    assert (other.equity.loc[t, ["strategy", "equal_weight", "benchmark"]] != base.equity.loc[t, ["strategy", "equal_weight", "benchmark"]]).all()
    assert not other.weights[other.weights["date"] == t].reset_index(drop=True).equals(
        base.weights[base.weights["date"] == t].reset_index(drop=True))


def test_a_days_return_enters_that_days_equity_linearly():
    # the exposure held on day d is fixed before d's return is known, so the strategy's
    # return on d is linear in the symbols' returns on d (a signal peeking at d would bend it)
    returns, value = market(3)
    p = params(synthesis={"logics": ["long", "short", "trend", "momentum"], "directions": ["long", "short"],
                          "trend_lookback": 10, "momentum_lookback": 5}, optimize={"method": "hrp"})
    base = walk_forward(returns, value, p)
    day = base.windows["test_start"].iloc[4] + pd.Timedelta(days=5)
    shock = np.where(np.arange(returns.shape[1]) % 2 == 0, 0.3, -0.3)

    def shocked(scale: float) -> pd.DataFrame:
        r = returns.copy()
        r.loc[day] = r.loc[day] + scale * shock
        return walk_forward(r, value, p).returns

    one, two = shocked(1.0), shocked(2.0)
    before = base.returns.index < day
    pd.testing.assert_frame_equal(one.loc[before], base.returns.loc[before])
    d1 = one.at[day, "strategy"] - base.returns.at[day, "strategy"]
    d2 = two.at[day, "strategy"] - base.returns.at[day, "strategy"]
    assert abs(d1) > 1e-3
    assert d2 == pytest.approx(2 * d1, rel=1e-9)


def test_costs_are_turnover_times_bps_on_the_rebalance_day(run):
    returns, value, res = run
    free = walk_forward(returns, value, params(fee_bps=0.0, slippage_bps=0.0))
    rate = (10.0 + 5.0) / 10_000
    diff = free.returns - res.returns  # costs never change the gross path (weights are fractions)
    rebalance_days = set(res.windows["test_start"])
    for day, row in diff.iterrows():
        if day in rebalance_days:
            turnover = res.windows.loc[res.windows["test_start"] == day, "turnover"].item()
            assert row["strategy"] == pytest.approx(turnover * rate, abs=1e-15)
            ew = res.windows.loc[res.windows["test_start"] == day, "equal_weight_turnover"].item()
            assert row["equal_weight"] == pytest.approx(ew * rate, abs=1e-15)
        else:
            assert row["strategy"] == pytest.approx(0.0, abs=1e-15)  # long-only: drift costs nothing
            assert row["equal_weight"] == pytest.approx(0.0, abs=1e-15)
    assert (diff["benchmark"] == 0).all()
    assert res.windows["turnover"].iloc[0] == pytest.approx(1.0)  # the first day buys from cash
    assert res.windows["turnover"].iloc[1:].gt(0).all()
    assert res.metrics["strategy"]["total_cost"] == pytest.approx(res.windows["turnover"].sum() * rate)


def test_turnover_is_against_drifted_weights(run):
    returns, _, res = run
    w1 = res.windows.iloc[1]
    prev = res.weights[res.weights["date"] == res.windows["train_end"].iloc[0]].set_index("symbol")["weight"]
    new = res.weights[res.weights["date"] == w1.train_end].set_index("symbol")["weight"]
    # drift the first portfolio through its test window by hand
    held = returns.loc[res.windows["test_start"].iloc[0] : res.windows["test_end"].iloc[0], prev.index].fillna(0.0)
    w = prev.copy()
    for _, r in held.iterrows():
        w = w * (1 + r) / (1 + (w * r).sum())
    symbols = sorted(set(w.index) | set(new.index))
    expected = (new.reindex(symbols).fillna(0) - w.reindex(symbols).fillna(0)).abs().sum()
    assert w1.turnover == pytest.approx(expected, rel=1e-12)


def test_weights_drift_and_missing_days_keep_their_weight(run):
    returns, _, res = run
    rate = 15 / 10_000
    for w in res.windows.itertuples():
        weights = res.weights[res.weights["date"] == w.train_end].set_index("symbol")["weight"]
        held = returns.loc[w.test_start : w.test_end, weights.index]
        current = weights.copy()
        expected = []
        for i, (_, r) in enumerate(held.iterrows()):
            r = r.fillna(0.0)  # a symbol without a bar contributes 0 and keeps its weight
            gross = float((current * r).sum())
            expected.append(gross - (w.turnover * rate if i == 0 else 0.0))
            current = current * (1 + r) / (1 + gross)
        np.testing.assert_allclose(res.returns.loc[w.test_start : w.test_end, "strategy"], expected, rtol=0, atol=1e-14)
    # the missing-days symbol was held through its gap in at least one window
    gap = returns.index[130:134]
    assert (res.weights.loc[res.weights["date"].between(gap[0] - pd.Timedelta(days=20), gap[0]), "symbol"] == "SIM:ZECUSDT").any()


def test_baselines(run):
    returns, _, res = run
    t0 = res.equity.index[0]
    btc = returns.loc[returns.index > t0, "SIM:BTCUSDT"].fillna(0.0)
    np.testing.assert_allclose(res.equity["benchmark"].iloc[1:], (1 + btc).cumprod(), rtol=1e-13)
    rate = 15 / 10_000
    for w in res.windows.itertuples():
        pool = returns.loc[w.train_end].dropna().index  # traded on the rebalance date
        first = returns.loc[w.test_start, pool].fillna(0.0).mean()
        assert res.returns.at[w.test_start, "equal_weight"] == pytest.approx(first - w.equal_weight_turnover * rate, abs=1e-15)
    assert "SIM:NEWUSDT" not in returns.loc[res.windows["train_end"].iloc[0]].dropna().index  # not listed yet
    assert res.windows["equal_weight_turnover"].iloc[0] == pytest.approx(1.0)


def test_short_and_signal_atoms_pay_for_their_daily_trades():
    returns, value = market(2)
    p = params(synthesis={"logics": ["short", "trend"], "directions": ["long", "short"], "trend_lookback": 10})
    res = walk_forward(returns, value, p)
    rebalance = res.trading.index.isin(res.windows["test_start"])
    between = res.trading.loc[~rebalance, "strategy_trade"]
    assert (between > 0).mean() > 0.5  # shorts are topped up every day, trends flip
    np.testing.assert_allclose(res.trading["strategy_cost"], res.trading["strategy_trade"] * 15 / 10_000, rtol=1e-15)
    assert res.metrics["strategy"]["annual_turnover"] > res.windows["turnover"].sum() / (len(res.trading) / 365)


def test_todays_portfolio_is_the_backtests_rebalance(run):
    returns, value, res = run
    p = params()
    for w in res.windows.iloc[[0, 4, -1]].itertuples():
        today = todays_portfolio(returns, value, w.train_end.date(), p)
        recorded = res.weights[res.weights["date"] == w.train_end].set_index("symbol")["weight"]
        pd.testing.assert_series_equal(today.weights, recorded, check_names=False, rtol=0, atol=0)
        truncated = todays_portfolio(returns.loc[: w.train_end], value.loc[: w.train_end], w.train_end, p)
        pd.testing.assert_series_equal(truncated.weights, today.weights)
        assert today.atom_weights.sum() == pytest.approx(1.0)
        assert today.selection.as_of == w.train_end


def test_deterministic(run):
    returns, value, res = run
    again = walk_forward(returns, value, params())
    pd.testing.assert_frame_equal(again.equity, res.equity)
    pd.testing.assert_frame_equal(again.weights, res.weights)
    assert json.dumps(again.metrics) == json.dumps(res.metrics)


def test_params_and_errors():
    with pytest.raises(ParamsError, match="step_days .* must not exceed"):
        params(step_days=30, test_days=20)
    with pytest.raises(ParamsError, match=r"backtest.selection.topn: unknown key"):
        params(selection={"topn": 1})
    with pytest.raises(ParamsError, match=r"backtest.fees: unknown key \(did you mean fee_bps\?\)"):
        params(fees=1)
    returns, value = market()
    with pytest.raises(ContractError, match="warm-up days"):
        walk_forward(returns.iloc[:50], value.iloc[:50], params())
    assert resolve_benchmark(["X:ETHUSDT", "X:BTCUSDT"], "BTC") == "X:BTCUSDT"
    assert resolve_benchmark(["X:ETHUSDT", "X:BTCUSDT"], "X:ETHUSDT") == "X:ETHUSDT"
    with pytest.raises(ContractError, match="ambiguous"):
        resolve_benchmark(["X:BTCUSDT", "Y:BTCUSDC"], "BTC")
    with pytest.raises(ContractError, match="matches no symbol"):
        resolve_benchmark(["X:ETHUSDT"], "BTC")


def test_caps_are_raised_only_as_far_as_needed():
    assert feasible_caps(np.array([5, 5]), 0.2, 0.6) == (0.2, 0.6)  # feasible: untouched
    assert feasible_caps(np.array([2, 2]), 0.2, 0.3) == (0.25, 0.5)  # 4 atoms: 1/4 each
    mw, cc = feasible_caps(np.array([1, 3]), 0.3, 0.5)  # the lone atom holds 0.3, the rest 0.7
    assert mw == 0.3 and cc == pytest.approx(0.7)
    assert feasible_caps(np.array([1]), 0.2, 0.3) == (1.0, 1.0)


def test_too_few_atoms_for_the_caps_still_invest_fully():
    returns, value = market(4)
    p = params(selection={"top_n": 1, "max_clusters": 2}, optimize={"method": "inverse_vol", "max_weight": 0.2})
    res = walk_forward(returns, value, p)
    assert (res.windows["max_weight"] >= 0.2).all() and (res.windows["max_weight"] > 0.2).any()
    sums = res.weights.groupby("date")["weight"].sum()
    np.testing.assert_allclose(sums, 1.0, rtol=1e-12)
    caps = res.windows.set_index("train_end")["max_weight"]
    assert (res.weights.groupby("date")["weight"].max() <= caps.reindex(sums.index) + 1e-12).all()
    doc = todays_portfolio(returns, value, res.windows["train_end"].iloc[-1], p).to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["caps"]["max_weight"] == res.windows["max_weight"].iloc[-1]


def test_no_portfolio_beats_cash_so_the_strategy_holds_cash():
    returns, value = market(6)
    falling = returns - 0.02  # every symbol loses 2 % a day on average
    res = walk_forward(falling, value, params(optimize={"method": "max_sharpe"}))
    assert not res.windows["invested"].any()
    assert res.windows["cash_because"].str.contains("max_sharpe").all()
    assert (res.equity["strategy"] == 1.0).all() and (res.trading["strategy_trade"] == 0).all()
    assert res.metrics["strategy"]["n_cash_windows"] == len(res.windows)
    assert (res.weights["weight"] == 0).all()  # the selected symbols are listed with no weight
    with pytest.raises(ParamsError, match="optimization.method: unknown method 'sharp'"):
        params(optimize={"method": "sharp"})


def test_data_known_at_fills_the_calendar():
    returns, _ = market()
    holed = returns.drop(index=returns.index[[10, 11]])
    known = data_known_at(holed, returns.index[20])
    assert known.index.equals(returns.index[:21]) and known.iloc[[10, 11]].isna().all().all()


def test_real_binance_walk_forward_with_hrp():
    folder = real_data_root() / "binance_spot_1d_freqtrade_json"
    bars = {}
    for base in ("BTC", "ETH", "BNB", "ADA", "XRP", "LTC", "LINK", "TRX"):
        rows = np.asarray(json.loads((folder / f"{base}_USDT-1d.json").read_text()), dtype="float64")
        keep = (rows[:, 0] >= pd.Timestamp("2019-01-01").value // 1_000_000) & (rows[:, 0] < pd.Timestamp("2020-12-31").value // 1_000_000)
        rows = rows[keep]
        bars[f"BINANCE:{base}USDT"] = pd.DataFrame(
            {"timestamp": rows[:, 0].astype("int64"), "open": rows[:, 1], "high": rows[:, 2],
             "low": rows[:, 3], "close": rows[:, 4], "volume": rows[:, 5]}
        )
    returns, value = returns_matrix(bars), traded_value_matrix(bars)
    p = BacktestParams.from_params(
        {"train_days": 180, "test_days": 60, "step_days": 60,
         "selection": {"train_days": 180, "lookbacks": [60, 120], "min_history_days": 150, "max_clusters": 3},
         "optimize": {"method": "hrp", "max_weight": 0.6}}
    )
    res = walk_forward(returns, value, p)
    assert res.equity.index[0] == pd.Timestamp("2019-06-29")
    btc = (1 + returns.loc["2019-06-30":, "BINANCE:BTCUSDT"]).prod()
    assert res.equity["benchmark"].iloc[-1] == pytest.approx(btc, rel=1e-12)
    assert (res.weights.groupby("date")["weight"].max() <= 0.6 + 1e-12).all()
    assert all(math.isfinite(res.metrics[c]["sharpe"]) for c in CURVES)


def test_any_number_of_workers_gives_byte_identical_results(run):
    returns, value, one = run  # params() runs one worker
    assert params().workers == 0 and BacktestParams().workers == 0  # the default: one per core
    p = params(workers=1)
    single = walk_forward(returns, value, p)
    for workers in (2, 3):
        many = walk_forward(returns, value, params(workers=workers))
        for name in ("equity", "returns", "weights", "atom_weights", "windows", "trading"):
            pd.testing.assert_frame_equal(getattr(many, name), getattr(single, name), check_exact=True)
        assert json.dumps(many.metrics) == json.dumps(single.metrics)
    pd.testing.assert_frame_equal(one.weights, single.weights, check_exact=True)
    with pytest.raises(ParamsError, match="backtest.workers must be >= 0"):
        params(workers=-1)


def test_walk_forwards_sharing_a_rankings_memo_give_the_same_results(monkeypatch):
    """A sweep's points on the same inputs share the selection's rankings: the second point
    (another top_n and optimizer) ranks no date again and its results equal a fresh run's."""
    from quantlake.alpha import selection

    returns, value = market(3)
    rankings: dict = {}
    first = walk_forward(returns, value, params(workers=2), rankings=rankings)  # ranked in the pool's workers
    assert len(rankings) == len(first.windows)  # ... and brought back into the memo
    calls = []
    real_rank = selection._rank
    monkeypatch.setattr(selection, "_rank", lambda *a: calls.append(a[2]) or real_rank(*a))
    other = params(workers=1, selection={"top_n": 1}, optimize={"method": "equal_weight"})
    shared = walk_forward(returns, value, other, rankings=rankings)
    assert calls == []
    fresh = walk_forward(returns, value, other)
    assert len(calls) == len(fresh.windows)
    for name in ("equity", "weights", "atom_weights", "windows", "trading"):
        pd.testing.assert_frame_equal(getattr(shared, name), getattr(fresh, name), check_exact=True)
    again = walk_forward(returns, value, params(workers=1), rankings=rankings)
    pd.testing.assert_frame_equal(again.weights, first.weights, check_exact=True)
    changed = params(workers=1, selection={"lookbacks": [20, 30]})  # another ranking: not a hit
    calls.clear()
    walk_forward(returns, value, changed, rankings=rankings)
    assert len(calls) == len(first.windows)
