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

from quantlake.alpha.metrics import performance_metrics, returns_from_equity

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
