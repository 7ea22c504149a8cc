"""Performance metrics against metrics.md, quantstats and empyrical (P = 365)."""

from __future__ import annotations

import json
import math
import warnings

import empyrical  # test extra: empyrical-reloaded (the numpy-2 fork; same module name)
import numpy as np
import pandas as pd
import pytest
import quantstats.stats as qs_stats  # test extra: quantstats

from quantlake.alpha.metrics import (
    drawdown_curve,
    drawdown_periods,
    monthly_table,
    performance_metrics,
    period_returns,
    relative_metrics,
    returns_from_equity,
    rolling_sharpe,
    rolling_volatility,
)

from real_data import real_data_root
P = 365


def seeded_returns(seed: int, n: int = 730) -> pd.Series:
    rng = np.random.default_rng(seed)
    r = rng.standard_t(4, size=n) * 0.03 + 0.001
    return pd.Series(r, index=pd.date_range("2021-01-01", periods=n, freq="D"), name="r")


def real_btc_returns() -> pd.Series:
    path = real_data_root() / "binance_spot_1d_freqtrade_json/BTC_USDT-1d.json"
    rows = np.asarray(json.loads(path.read_text()), dtype="float64")
    close = pd.Series(rows[:, 4], index=pd.to_datetime(rows[:, 0].astype("int64"), unit="ms"))
    return close.pct_change().dropna()


def reference(r: pd.Series, rf: float) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "cagr": qs_stats.cagr(r, periods=P),
            "volatility": qs_stats.volatility(r, periods=P),
            "sharpe": qs_stats.sharpe(r, rf=rf, periods=P),
            "sortino": qs_stats.sortino(r, rf=rf, periods=P),
            "max_drawdown": qs_stats.max_drawdown(r),
            "calmar": qs_stats.calmar(r, periods=P),
            "hit_rate": qs_stats.win_rate(r),
        }


@pytest.mark.parametrize("source", ["seed1", "seed2", "real_btc"])
def test_matches_quantstats(source):
    r = real_btc_returns() if source == "real_btc" else seeded_returns(int(source[-1]))
    ours = performance_metrics(r)
    for key, expected in reference(r, 0.0).items():
        assert ours[key] == pytest.approx(float(expected), rel=1e-6, abs=1e-9), key


def test_risk_free_is_an_annual_rate_like_quantstats():
    r = seeded_returns(3)
    ours = performance_metrics(r, risk_free=0.04)
    ref = reference(r, 0.04)
    assert ours["sharpe"] == pytest.approx(float(ref["sharpe"]), rel=1e-6)
    assert ours["sortino"] == pytest.approx(float(ref["sortino"]), rel=1e-6)
    assert ours["sharpe"] < performance_metrics(r)["sharpe"]


def test_matches_empyrical():
    r = seeded_returns(4)
    ours = performance_metrics(r)
    assert ours["cagr"] == pytest.approx(empyrical.cagr(r, annualization=P), rel=1e-6)
    assert ours["volatility"] == pytest.approx(empyrical.annual_volatility(r, annualization=P), rel=1e-6)
    assert ours["sharpe"] == pytest.approx(empyrical.sharpe_ratio(r, annualization=P), rel=1e-6)
    assert ours["sortino"] == pytest.approx(empyrical.sortino_ratio(r, annualization=P), rel=1e-6)
    assert ours["max_drawdown"] == pytest.approx(empyrical.max_drawdown(r), rel=1e-6)
    assert ours["calmar"] == pytest.approx(empyrical.calmar_ratio(r, annualization=P), rel=1e-6)


def test_definitions_by_hand():
    r = pd.Series([-0.1, 0.2, 0.0, -0.05, 0.1])
    m = performance_metrics(r)
    equity = np.cumprod(1 + r.to_numpy())
    assert m["n_days"] == 5
    assert m["total_return"] == pytest.approx(equity[-1] - 1)
    assert m["cagr"] == pytest.approx(equity[-1] ** (365 / 5) - 1)
    assert m["volatility"] == pytest.approx(r.std(ddof=1) * math.sqrt(365))
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365))
    downside = math.sqrt((0.1**2 + 0.05**2) / 5)  # over all N days
    assert m["sortino"] == pytest.approx(r.mean() / downside * math.sqrt(365))
    assert m["hit_rate"] == pytest.approx(2 / 4)  # the flat day is not counted
    assert m["best_day"] == 0.2 and m["worst_day"] == -0.1
    # the curve starts at 1.0: the day-1 loss is part of the drawdown (peak 1.08 -> 1.026)
    assert m["max_drawdown"] == pytest.approx(min(-0.1, 0.9 * 1.2 * 0.95 / (0.9 * 1.2) - 1))
    assert m["calmar"] == pytest.approx(m["cagr"] / abs(m["max_drawdown"]))


def test_day_one_loss_counts_as_drawdown():
    assert performance_metrics(pd.Series([-0.2, 0.5]))["max_drawdown"] == pytest.approx(-0.2)


def test_undefined_figures_are_none():
    up = performance_metrics(pd.Series([0.01, 0.02, 0.03]))
    assert up["max_drawdown"] == 0.0 and up["calmar"] is None and up["sortino"] is None
    flat = performance_metrics(pd.Series([0.001] * 10))
    assert flat["sharpe"] is None and flat["volatility"] == pytest.approx(0.0, abs=1e-12)
    zero = performance_metrics(pd.Series([0.0] * 4))
    assert zero["hit_rate"] is None and zero["sharpe"] is None
    one = performance_metrics(pd.Series([0.01]))
    assert one["volatility"] is None and one["sharpe"] is None
    empty = performance_metrics(pd.Series([], dtype="float64"))
    assert empty["n_days"] == 0 and empty["cagr"] is None
    for m in (up, flat, zero, one, empty):
        json.dumps(m, allow_nan=False)


def test_rejects_nan_and_impossible_returns():
    with pytest.raises(ValueError, match="non-finite"):
        performance_metrics(pd.Series([0.01, np.nan]))
    with pytest.raises(ValueError, match="below -100%"):
        performance_metrics(pd.Series([0.01, -1.5]))


def test_returns_from_equity_inverts_compounding():
    r = seeded_returns(5, n=50)
    equity = pd.concat([pd.Series([1.0], index=[r.index[0] - pd.Timedelta(days=1)]), (1 + r).cumprod()])
    back = returns_from_equity(equity)
    np.testing.assert_allclose(back.to_numpy(), r.to_numpy(), rtol=0, atol=1e-13)
    assert back.index.equals(r.index)
    m1, m2 = performance_metrics(back), performance_metrics(r)
    for key in ("cagr", "sharpe", "sortino", "max_drawdown", "calmar"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-10)


# --------------------------------------------------------------------------- tear sheet metrics


def seeded_pair(seed: int, n: int = 730) -> tuple[pd.Series, pd.Series]:
    """A strategy and a benchmark that move together (beta about 0.6)."""
    rng = np.random.default_rng(seed)
    b = rng.standard_t(4, size=n) * 0.03 + 0.001
    r = 0.6 * b + rng.standard_t(4, size=n) * 0.015 + 0.0005
    index = pd.date_range("2021-01-01", periods=n, freq="D")
    return pd.Series(r, index=index, name="r"), pd.Series(b, index=index, name="b")


def test_beta_and_information_ratio_match_quantstats_and_empyrical():
    r, b = seeded_pair(11)
    ours = relative_metrics(r, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ours["beta"] == pytest.approx(float(qs_stats.greeks(r, b, periods=P)["beta"]), rel=1e-6)
        assert ours["beta"] == pytest.approx(float(empyrical.beta(r, b)), rel=1e-6)
        # quantstats' information ratio is per day; ours is annualised with P = 365
        assert ours["information_ratio"] == pytest.approx(float(qs_stats.information_ratio(r, b)) * math.sqrt(P), rel=1e-6)
        assert ours["information_ratio"] == pytest.approx(float(empyrical.excess_sharpe(r, b)) * math.sqrt(P), rel=1e-6)
    assert ours["tracking_error"] == pytest.approx((r - b).std(ddof=1) * math.sqrt(P), rel=1e-12)
    assert 0.4 < ours["beta"] < 0.8


def test_relative_metrics_undefined_cases_are_none():
    r, _ = seeded_pair(12, n=20)
    same = relative_metrics(r, r)
    assert same["beta"] == pytest.approx(1.0) and same["information_ratio"] is None and same["tracking_error"] == 0.0
    flat = relative_metrics(r, pd.Series(0.001, index=r.index))
    assert flat["beta"] is None
    assert relative_metrics(r.iloc[:1], r.iloc[:1]) == {"beta": None, "tracking_error": None, "information_ratio": None}


def test_rolling_sharpe_and_volatility_match_quantstats():
    r = seeded_returns(13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_sharpe = qs_stats.rolling_sharpe(r, rolling_period=90, periods_per_year=P)
        ref_vol = qs_stats.rolling_volatility(r, rolling_period=90, periods_per_year=P)
    ours_sharpe, ours_vol = rolling_sharpe(r, 90), rolling_volatility(r, 90)
    assert ours_sharpe.iloc[:89].isna().all() and ours_vol.iloc[:89].isna().all()  # window not full yet
    assert ours_sharpe.iloc[89:].notna().all()
    np.testing.assert_allclose(ours_sharpe.iloc[89:], ref_sharpe.iloc[89:], rtol=1e-9)
    np.testing.assert_allclose(ours_vol.iloc[89:], ref_vol.iloc[89:], rtol=1e-9)
    # the last value is the full-sample Sharpe of the last 90 days
    assert ours_sharpe.iloc[-1] == pytest.approx(performance_metrics(r.iloc[-90:])["sharpe"], rel=1e-9)


def test_monthly_and_yearly_returns_match_quantstats():
    r = seeded_returns(14)
    table = monthly_table(r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = qs_stats.monthly_returns(r, eoy=True, compounded=True)
    assert list(table.index) == [2021, 2022] and list(table.columns) == list(range(1, 13))
    np.testing.assert_allclose(table.to_numpy(), ref.iloc[:, :12].to_numpy(dtype="float64"), rtol=1e-9, atol=1e-15)
    yearly = period_returns(r, "Y")
    np.testing.assert_allclose(yearly.to_numpy(), ref["EOY"].to_numpy(dtype="float64"), rtol=1e-9)
    # a partial year: months without data are NaN (not 0 as in quantstats)
    part = monthly_table(r.loc["2021-03-10":"2021-05-31"])
    assert part.loc[2021, [3, 4, 5]].notna().all() and part.loc[2021, [1, 2, 6, 12]].isna().all()
    assert part.loc[2021, 4] == pytest.approx(float((1 + r.loc["2021-04"]).prod() - 1))
    with pytest.raises(ValueError, match="freq"):
        period_returns(r, "W")


def test_drawdown_periods_match_quantstats_drawdown_details():
    r = seeded_returns(15)
    r.iloc[0] = abs(r.iloc[0])  # quantstats starts its curve on day 1; ours at the 1.0 before it
    equity = pd.concat([pd.Series([1.0], index=[r.index[0] - pd.Timedelta(days=1)]), (1 + r).cumprod()])
    ours = drawdown_periods(equity, top=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = qs_stats.drawdown_details(qs_stats.to_drawdown_series(r)).sort_values("max drawdown").head(5)
    assert [p["start"] for p in ours] == list(ref["start"])
    assert [p["trough"] for p in ours] == list(ref["valley"])
    assert [p["days"] for p in ours] == list(ref["days"])
    np.testing.assert_allclose([p["depth"] * 100 for p in ours], ref["max drawdown"].to_numpy(), rtol=1e-9)
    assert ours[0]["depth"] == pytest.approx(performance_metrics(r)["max_drawdown"], rel=1e-12)
    for p in ours:  # the peak is the day before the start, the recovery the day after the last day under water
        assert pd.Timestamp(p["peak"]) == pd.Timestamp(p["start"]) - pd.Timedelta(days=1)
        if p["recovered"]:
            assert equity[p["recovered"]] >= equity[p["peak"]] > equity[p["trough"]]


def test_drawdown_periods_by_hand():
    index = pd.date_range("2024-01-01", periods=8, freq="D")
    equity = pd.Series([1.0, 0.9, 0.95, 1.0, 1.2, 0.6, 0.9, 1.1], index=index)
    first, second = drawdown_periods(equity, top=5)
    assert first == {"peak": "2024-01-05", "start": "2024-01-06", "trough": "2024-01-06", "recovered": None,
                     "depth": pytest.approx(-0.5), "days": 3}
    assert second == {"peak": "2024-01-01", "start": "2024-01-02", "trough": "2024-01-02", "recovered": "2024-01-04",
                      "depth": pytest.approx(-0.1), "days": 2}
    assert drawdown_periods(equity, top=1) == [first]
    # a loss on the first row counts (the curve starts at 1.0) and has no peak day inside the data
    day_one = drawdown_periods(pd.Series([0.8, 1.1], index=index[:2]))
    assert day_one[0]["peak"] is None and day_one[0]["depth"] == pytest.approx(-0.2)
    assert drawdown_periods(pd.Series([1.0, 1.1, 1.2], index=index[:3])) == []
    np.testing.assert_allclose(drawdown_curve(equity).to_numpy(), [0, -0.1, -0.05, 0, 0, -0.5, -0.25, 1.1 / 1.2 - 1])
