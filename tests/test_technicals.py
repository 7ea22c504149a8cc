"""Technical Ratings: indicators against TA-Lib on real Binance bars, vote rules on hand-made
values, point-in-time (appending bars never changes a past row), incremental == full."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantlake.contracts import DAY_MS, ContractError
from quantlake.data.technicals import (
    FEATURE_COLUMNS,
    INDICATOR_COLUMNS,
    LONG_COLUMNS,
    MA_VOTE_COLUMNS,
    OSCILLATOR_VOTE_COLUMNS,
    OUTPUT_COLUMNS,
    RATING_COLUMNS,
    VOTE_COLUMNS,
    rating_bands,
    ratings_for_symbols,
    ratings_from_votes,
    technical_ratings,
    technical_ratings_incremental,
    technical_votes,
    votes_from_indicators,
)

import talib  # test dependency: `ta-lib` on PyPI (bundles the C library); never skipped

from real_data import real_data_root


# --------------------------------------------------------------------------- data


def _load_freqtrade(path: Path) -> pd.DataFrame:
    rows = np.array(json.loads(path.read_text()), dtype=np.float64)
    bars = pd.DataFrame(rows[:, 1:], columns=["open", "high", "low", "close", "volume"])
    bars.insert(0, "timestamp", rows[:, 0].astype(np.int64))
    return bars


@pytest.fixture(scope="module")
def real_bars() -> dict[str, pd.DataFrame]:
    return {
        "BINANCE:" + p.name.split("-")[0].replace("_", ""): _load_freqtrade(p)
        for p in sorted((real_data_root() / "binance_spot_1d_freqtrade_json").glob("*_USDT-1d.json"))
    }


@pytest.fixture(scope="module")
def real_ratings(real_bars) -> dict[str, pd.DataFrame]:
    return {sym: technical_ratings(bars, where=sym) for sym, bars in real_bars.items()}


def _synthetic_bars(n: int, seed: int = 7, start_day: int = 17_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.standard_t(3, n) * 0.03))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.005, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.02, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.02, n)))
    return pd.DataFrame(
        {
            "timestamp": (start_day + np.arange(n)).astype(np.int64) * DAY_MS,
            "open": open_, "high": high, "low": low, "close": close,
            "volume": rng.lognormal(10, 1, n),
        }
    )


# --------------------------------------------------------------------------- TA-Lib


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    return np.r_[np.full(k, np.nan), x[:-k]]


def _donchian(h, l, n):
    return (talib.MAX(h, n) + talib.MIN(l, n)) / 2


def _ma_ref(name: str):
    kind, n = name.split("_")
    fn = {"sma": talib.SMA, "ema": talib.EMA}[kind]  # TA-Lib's EMA is SMA-seeded, like Pine's
    return lambda o, h, l, c, v: fn(c, int(n))


# name -> (reference from TA-Lib primitives, first bar compared, scale: "price" or "osc").
# Where TA-Lib has no single function (Hull, VWMA, Ichimoku, AO, Bull/Bear Power) the
# reference is the indicator's definition composed from TA-Lib's WMA/SMA/MAX/MIN/EMA kernels.
# TA-Lib seeds +DI/-DI/ADX with a running sum of 13 values instead of Pine's mean of 14, and
# MACD's fast EMA from a later bar; those differences decay like (13/14)^t and (11/13)^t, so
# they are compared after 500 and 300 bars (and checked from bar 0 against Pine's formulas
# in `test_recursive_indicators_follow_pine_from_the_first_bar`).
TALIB_REFERENCES = {
    **{f"{k}_{n}": (_ma_ref(f"{k}_{n}"), 0, "price") for k in ("sma", "ema") for n in (10, 20, 30, 50, 100, 200)},
    "hma_9": (lambda o, h, l, c, v: talib.WMA(2 * talib.WMA(c, 4) - talib.WMA(c, 9), 3), 0, "price"),
    "vwma_20": (lambda o, h, l, c, v: talib.SMA(c * v, 20) / talib.SMA(v, 20), 0, "price"),
    "ichimoku_conversion_9_26_52": (lambda o, h, l, c, v: _donchian(h, l, 9), 0, "price"),
    "ichimoku_base_9_26_52": (lambda o, h, l, c, v: _donchian(h, l, 26), 0, "price"),
    "ichimoku_span_a_9_26_52": (
        lambda o, h, l, c, v: _lag((_donchian(h, l, 9) + _donchian(h, l, 26)) / 2, 26), 0, "price"),
    "ichimoku_span_b_9_26_52": (lambda o, h, l, c, v: _lag(_donchian(h, l, 52), 26), 0, "price"),
    "rsi_14": (lambda o, h, l, c, v: talib.RSI(c, 14), 0, "osc"),
    "stoch_k_14_3_3": (lambda o, h, l, c, v: talib.STOCH(h, l, c, 14, 3, 0, 3, 0)[0], 0, "osc"),
    "stoch_d_14_3_3": (lambda o, h, l, c, v: talib.STOCH(h, l, c, 14, 3, 0, 3, 0)[1], 0, "osc"),
    # TradingView's library calls ta.cci(close, 20); TA-Lib's CCI of (c, c, c) is the CCI of close.
    "cci_20": (lambda o, h, l, c, v: talib.CCI(c, c, c, 20), 0, "osc"),
    "adx_14": (lambda o, h, l, c, v: talib.ADX(h, l, c, 14), 500, "osc"),
    "plus_di_14": (lambda o, h, l, c, v: talib.PLUS_DI(h, l, c, 14), 500, "osc"),
    "minus_di_14": (lambda o, h, l, c, v: talib.MINUS_DI(h, l, c, 14), 500, "osc"),
    "ao_5_34": (
        lambda o, h, l, c, v: talib.SMA(talib.MEDPRICE(h, l), 5) - talib.SMA(talib.MEDPRICE(h, l), 34), 0, "price"),
    "mom_10": (lambda o, h, l, c, v: talib.MOM(c, 10), 0, "price"),
    "macd_12_26_9": (lambda o, h, l, c, v: talib.MACD(c, 12, 26, 9)[0], 300, "price"),
    "macd_signal_12_26_9": (lambda o, h, l, c, v: talib.MACD(c, 12, 26, 9)[1], 300, "price"),
    # STOCHRSI's fastd is the 3-bar SMA of the raw stochastic of RSI, i.e. Pine's K.
    "stoch_rsi_k_3_3_14_14": (lambda o, h, l, c, v: talib.STOCHRSI(c, 14, 14, 3, 0)[1], 0, "osc"),
    "stoch_rsi_d_3_3_14_14": (lambda o, h, l, c, v: talib.SMA(talib.STOCHRSI(c, 14, 14, 3, 0)[1], 3), 0, "osc"),
    "willr_14": (lambda o, h, l, c, v: talib.WILLR(h, l, c, 14), 0, "osc"),
    "bull_power_13": (lambda o, h, l, c, v: h - talib.EMA(c, 13), 0, "price"),
    "bear_power_13": (lambda o, h, l, c, v: l - talib.EMA(c, 13), 0, "price"),
    "uo_7_14_28": (lambda o, h, l, c, v: talib.ULTOSC(h, l, c, 7, 14, 28), 0, "osc"),
}

# Tight: 1e-11 of the indicator's scale (max |close| of the pair for price-level values, 100
# for oscillators); the differences are rounding only (observed worst: 3.4e-14 of scale, CCI).
TOLERANCE = 1e-11


def test_every_indicator_has_a_talib_reference():
    assert set(TALIB_REFERENCES) == set(INDICATOR_COLUMNS)


def _assert_close_to_reference(sym, name, ours, ref, start, scale):
    compared = ~np.isnan(ref)
    compared[:start] = False
    assert not np.isnan(ours[compared]).any(), f"{sym} {name}: NaN where TA-Lib has a value"
    err = np.abs(ours[compared] - ref[compared])
    worst = err.max(initial=0.0)
    assert worst <= TOLERANCE * scale, f"{sym} {name}: max |ours - TA-Lib| = {worst:.3g} > {TOLERANCE * scale:.3g}"
    return compared.sum()


@pytest.mark.parametrize("name", INDICATOR_COLUMNS)
def test_indicator_matches_talib_on_real_bars(name, real_bars, real_ratings):
    reference, start, scale_kind = TALIB_REFERENCES[name]
    compared = 0
    for sym, bars in real_bars.items():
        o, h, l, c, v = (bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
        scale = 100.0 if scale_kind == "osc" else float(np.abs(c).max())
        ours = real_ratings[sym][name].to_numpy()
        compared += _assert_close_to_reference(sym, name, ours, reference(o, h, l, c, v), start, scale)
    assert compared > 10_000  # the comparison really covered the data


def test_macd_from_its_first_bar_equals_talib_ema_difference(real_bars, real_ratings):
    # Pine's MACD is ema(12) - ema(26) from bar 25, its signal an SMA-seeded EMA(9) of it.
    for sym, bars in real_bars.items():
        c = bars["close"].to_numpy()
        scale = float(c.max())
        macd = talib.EMA(c, 12) - talib.EMA(c, 26)
        ours = real_ratings[sym]
        _assert_close_to_reference(sym, "macd", ours["macd_12_26_9"].to_numpy(), macd, 0, scale)
        _assert_close_to_reference(sym, "signal", ours["macd_signal_12_26_9"].to_numpy(), talib.EMA(macd, 9), 0, scale)


# --------------------------------------------------------------------------- Pine seeding


def _pine_smoothed(x, n, alpha):
    """Pine: sum := na(sum[1]) ? ta.sma(src, n) : alpha * src + (1 - alpha) * sum[1] (a plain loop)."""
    out, prev = np.full(len(x), np.nan), math.nan
    for i in range(len(x)):
        if math.isnan(prev):
            window = x[max(0, i - n + 1): i + 1]
            if len(window) == n and not np.isnan(window).any():
                prev = math.fsum(window) / n
        else:
            prev = alpha * x[i] + (1 - alpha) * prev
        out[i] = prev
    return out


def _pine_dmi(h, l, c, n=14):
    up, down = h - _lag(h, 1), _lag(l, 1) - l
    plus_dm = np.where(np.isnan(up), np.nan, np.where((up > down) & (up > 0), up, 0.0))
    minus_dm = np.where(np.isnan(down), np.nan, np.where((down > up) & (down > 0), down, 0.0))
    pc = _lag(c, 1)
    tr = np.maximum(h - l, np.maximum(np.abs(h - pc), np.abs(l - pc)))
    trur = _pine_smoothed(tr, n, 1 / n)
    plus = 100 * _pine_smoothed(plus_dm, n, 1 / n) / trur
    minus = 100 * _pine_smoothed(minus_dm, n, 1 / n) / trur
    s = plus + minus
    return plus, minus, 100 * _pine_smoothed(np.abs(plus - minus) / np.where(s == 0, 1, s), n, 1 / n)


def _pine_rsi(c, n=14):
    ch = c - _lag(c, 1)
    up = _pine_smoothed(np.maximum(ch, 0), n, 1 / n)
    down = _pine_smoothed(np.maximum(-ch, 0), n, 1 / n)
    return 100 - 100 / (1 + up / down)


@pytest.mark.parametrize("sym", ["BINANCE:BTCUSDT", "BINANCE:DOGEUSDT", "BINANCE:APEUSDT"])
def test_recursive_indicators_follow_pine_from_the_first_bar(sym, real_bars, real_ratings):
    bars, ours = real_bars[sym], real_ratings[sym]
    h, l, c = (bars[k].to_numpy() for k in ("high", "low", "close"))
    plus, minus, adx = _pine_dmi(h, l, c)
    macd = _pine_smoothed(c, 12, 2 / 13) - _pine_smoothed(c, 26, 2 / 27)
    expected = {
        "plus_di_14": plus, "minus_di_14": minus, "adx_14": adx, "rsi_14": _pine_rsi(c),
        "ema_10": _pine_smoothed(c, 10, 2 / 11), "ema_200": _pine_smoothed(c, 200, 2 / 201),
        "macd_12_26_9": macd, "macd_signal_12_26_9": _pine_smoothed(macd, 9, 0.2),
    }
    for name, ref in expected.items():
        got = ours[name].to_numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{sym} {name} warm-up")
        scale = 100.0 if name in ("plus_di_14", "minus_di_14", "adx_14", "rsi_14") else float(c.max())
        np.testing.assert_allclose(got, ref, rtol=0, atol=TOLERANCE * scale, err_msg=f"{sym} {name}")


# First defined bar of each indicator under Pine's conventions (bar 0 = first bar).
FIRST_BAR = {
    **{f"sma_{n}": n - 1 for n in (10, 20, 30, 50, 100, 200)},
    **{f"ema_{n}": n - 1 for n in (10, 20, 30, 50, 100, 200)},
    "hma_9": 10, "vwma_20": 19,
    "ichimoku_conversion_9_26_52": 8, "ichimoku_base_9_26_52": 25,
    "ichimoku_span_a_9_26_52": 25 + 26, "ichimoku_span_b_9_26_52": 51 + 26,
    "rsi_14": 14, "stoch_k_14_3_3": 15, "stoch_d_14_3_3": 17, "cci_20": 19,
    "adx_14": 27, "plus_di_14": 14, "minus_di_14": 14, "ao_5_34": 33, "mom_10": 10,
    "macd_12_26_9": 25, "macd_signal_12_26_9": 33,
    "stoch_rsi_k_3_3_14_14": 29, "stoch_rsi_d_3_3_14_14": 31, "willr_14": 13,
    "bull_power_13": 12, "bear_power_13": 12, "uo_7_14_28": 28,
}


def test_warm_up_lengths_follow_pine(real_ratings):
    assert set(FIRST_BAR) == set(INDICATOR_COLUMNS)
    frame = real_ratings["BINANCE:ETHUSDT"]
    for name, first in FIRST_BAR.items():
        defined = ~np.isnan(frame[name].to_numpy())
        assert not defined[:first].any() and defined[first:].all(), name
    # Ratings exist as soon as one vote does: SMA 10 / EMA 10 vote from bar 9.
    ma = frame["recommend_ma"].to_numpy()
    assert np.isnan(ma[:9]).all() and not np.isnan(ma[9:]).any()
    assert not np.isnan(frame["recommend_all"].to_numpy()[9:]).any()


# --------------------------------------------------------------------------- votes


def _indicators(n: int, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({c: np.full(n, np.nan) for c in INDICATOR_COLUMNS})
    for name, values in columns.items():
        frame[name] = np.asarray(values, dtype=np.float64)
    return frame


def _votes(name: str, n: int, close=None, **columns) -> list[float]:
    close = np.full(n, 100.0) if close is None else close
    return votes_from_indicators(_indicators(n, **columns), close)[name].tolist()


def _same(got: list[float], expected: list[float]) -> bool:
    return np.array_equal(np.array(got), np.array(expected, dtype=np.float64), equal_nan=True)


NAN = math.nan


@pytest.mark.parametrize("ma", ["sma_10", "sma_200", "ema_50", "hma_9", "vwma_20"])
def test_moving_average_votes_sign_of_close_minus_ma(ma):
    got = _votes(f"vote_{ma}", 4, close=np.array([101, 99, 100, 100.0]), **{ma: [100, 100, 100, NAN]})
    assert _same(got, [1, -1, 0, NAN])


def test_ichimoku_vote():
    # rows: buy; sell; buy but close under the conversion line; span B undefined
    got = _votes(
        "vote_ichimoku_9_26_52", 4, close=np.array([13, 6, 11.5, 13.0]),
        ichimoku_span_a_9_26_52=[10, 9, 10, 10], ichimoku_span_b_9_26_52=[9, 10, 9, NAN],
        ichimoku_base_9_26_52=[11, 8, 11, 11], ichimoku_conversion_9_26_52=[12, 7, 12, 12],
    )
    assert _same(got, [1, -1, 0, NAN])


def test_rsi_vote_below_30_rising_above_70_falling():
    got = _votes("vote_rsi_14", 8, rsi_14=[25, 28, 26, 75, 72, 74, 50, 51])
    assert _same(got, [NAN, 1, 0, 0, -1, 0, 0, 0])


def test_stochastic_vote():
    got = _votes("vote_stoch_14_3_3", 6, stoch_k_14_3_3=[15, 15, 25, 85, 85, NAN],
                 stoch_d_14_3_3=[10, 18, 10, 90, 80, 10])
    assert _same(got, [1, 0, 0, -1, 0, NAN])


def test_cci_vote():
    got = _votes("vote_cci_20", 6, cci_20=[-150, -120, -130, 150, 120, 130])
    assert _same(got, [NAN, 1, 0, 0, -1, 0])


def test_adx_vote_needs_a_rising_adx_above_20():
    got = _votes("vote_adx_14", 6, adx_14=[25, 26, 27, 26, 18, 19],
                 plus_di_14=[30, 30, 10, 10, 30, 30], minus_di_14=[10, 10, 30, 30, 10, 10])
    assert _same(got, [NAN, 1, -1, 0, 0, 0])


def test_awesome_oscillator_vote_crosses_and_saucers():
    ao = [-1, 2, 1, 1.5, 3, -0.5, -2, -1, -1.5, 0.5, 0, 0.3]
    expected = [
        NAN, NAN,  # needs ao[1] and ao[2]
        0,   # 1 after 2: falling above zero, no saucer yet
        1,   # bullish saucer: 2 -> 1 -> 1.5 above zero
        0,   # rising, but no dip before it
        -1,  # crosses under zero
        0,   # falling below zero after a rise: no bearish saucer
        0,   # rising below zero
        -1,  # bearish saucer: -2 -> -1 -> -1.5 below zero
        1,   # crosses above zero
        0,   # touches zero
        1,   # crossover from exactly zero (Pine: ao > 0 and ao[1] <= 0)
    ]
    assert _same(_votes("vote_ao_5_34", len(ao), ao_5_34=ao), expected)


def test_momentum_vote_rising_or_falling():
    assert _same(_votes("vote_mom_10", 4, mom_10=[1, 2, 2, 1]), [NAN, 1, 0, -1])


def test_macd_vote_line_against_signal():
    got = _votes("vote_macd_12_26_9", 4, macd_12_26_9=[1, 0, 0.5, NAN], macd_signal_12_26_9=[0, 1, 0.5, 0])
    assert _same(got, [1, -1, 0, NAN])


def test_stoch_rsi_vote_needs_the_ema50_trend():
    got = _votes(
        "vote_stoch_rsi_3_3_14_14", 6, close=np.array([90, 90, 110, 110, 100, 90.0]),
        ema_50=[100, 100, 100, 100, 100, NAN],
        stoch_rsi_k_3_3_14_14=[15, 10, 85, 15, 15, 15], stoch_rsi_d_3_3_14_14=[10, 15, 90, 10, 10, 10],
    )
    # buy in a downtrend; K < D; sell in an uptrend; oversold but uptrend; no trend; no EMA 50
    assert _same(got, [1, 0, -1, 0, 0, NAN])


def test_williams_r_vote():
    got = _votes("vote_willr_14", 6, willr_14=[-85, -82, -90, -15, -18, -10])
    assert _same(got, [NAN, 1, 0, 0, -1, 0])


def test_bull_bear_power_vote():
    got = _votes(
        "vote_bbp_13", 6, close=np.array([110, 110, 110, 90, 90, 110.0]), ema_50=[100] * 6,
        bear_power_13=[-5, -3, -4, -6, -6, 1], bull_power_13=[6, 6, 6, 5, 6, 8],
    )
    # row 1: uptrend, bear < 0 and rising; row 2: bear falling; row 3: downtrend, bull > 0
    # and falling; row 4: bull rising; row 5: uptrend but bear power above zero
    assert _same(got, [NAN, 1, 0, -1, 0, 0])


def test_ultimate_oscillator_vote():
    assert _same(_votes("vote_uo_7_14_28", 4, uo_7_14_28=[75, 50, 25, NAN]), [1, 0, -1, NAN])


def test_ratings_are_means_of_available_votes():
    votes = pd.DataFrame({c: np.full(5, np.nan) for c in VOTE_COLUMNS})
    votes.loc[1, list(MA_VOTE_COLUMNS)] = [1] * 10 + [-1] * 5
    votes.loc[2, list(OSCILLATOR_VOTE_COLUMNS)] = [1] * 6 + [-1] * 2 + [0] * 3
    votes.loc[3, list(MA_VOTE_COLUMNS)] = 1
    votes.loc[3, list(OSCILLATOR_VOTE_COLUMNS)] = -1
    votes.loc[4, list(MA_VOTE_COLUMNS[:3])] = [1, 0, 1]
    votes.loc[4, list(OSCILLATOR_VOTE_COLUMNS[:2])] = [-1, 0]
    r = ratings_from_votes(votes)
    assert list(r.columns) == list(RATING_COLUMNS)
    np.testing.assert_allclose(r["recommend_ma"], [NAN, 1 / 3, NAN, 1, 2 / 3])
    np.testing.assert_allclose(r["recommend_other"], [NAN, NAN, 4 / 11, -1, -0.5])
    np.testing.assert_allclose(r["recommend_all"], [NAN, 1 / 3, 4 / 11, 0, (2 / 3 - 0.5) / 2])


def test_rating_bands():
    got = rating_bands(np.array([-0.8, -0.5, -0.3, -0.1, 0.0, 0.1, 0.3, 0.51, NAN]))
    assert got.tolist() == ["strong_sell", "sell", "sell", "neutral", "neutral", "neutral", "buy", "strong_buy", None]


def test_steady_uptrend_rates_every_moving_average_buy():
    n = 300
    close = 100 * 1.01 ** np.arange(n)
    bars = pd.DataFrame({
        "timestamp": np.arange(n, dtype=np.int64) * DAY_MS, "open": close / 1.01,
        "high": close * 1.002, "low": close / 1.01 / 1.002, "close": close, "volume": np.full(n, 5.0),
    })
    last = technical_ratings(bars).iloc[-1]
    assert last["recommend_ma"] == 1.0
    votes = technical_votes(bars)
    assert (votes[list(MA_VOTE_COLUMNS)].iloc[-1] == 1).all()
    # the votes that technical_votes reports are the ones the stored values imply
    derived = votes_from_indicators(technical_ratings(bars), bars["close"])
    pd.testing.assert_frame_equal(derived, votes[list(VOTE_COLUMNS)], check_exact=True)


def test_stored_ratings_are_the_means_of_the_votes(real_bars, real_ratings):
    sym = "BINANCE:SOLUSDT"
    votes = technical_votes(real_bars[sym])
    ratings = ratings_from_votes(votes)
    pd.testing.assert_frame_equal(ratings, real_ratings[sym][list(RATING_COLUMNS)], check_exact=True)
    defined = votes[list(VOTE_COLUMNS)].to_numpy()
    assert set(np.unique(defined[~np.isnan(defined)])) == {-1.0, 0.0, 1.0}


# --------------------------------------------------------------------------- point in time


@st.composite
def bar_series(draw):
    n = draw(st.integers(1, 320))
    bars = _synthetic_bars(n, seed=draw(st.integers(0, 2**32 - 1)))
    # flat stretches (zero ranges: undefined stochastic / CCI / RSI ratios) and zero volume
    for column_set, value_of in ((["open", "high", "low", "close"], "close"), (["volume"], None)):
        start, length = draw(st.integers(0, n)), draw(st.integers(0, 60))
        rows = slice(start, min(n, start + length))
        for col in column_set:
            bars.loc[rows, col] = bars["close"].iloc[min(start, n - 1)] if value_of else 0.0
    # missing days: timestamps jump, the bar sequence is used as given
    gaps = np.array(draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)), dtype=np.int64)
    bars["timestamp"] = (17_000 + np.cumsum(gaps)) * DAY_MS
    cuts = draw(st.lists(st.integers(0, n), min_size=1, max_size=6, unique=True))
    return bars, cuts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bar_series())
def test_appending_future_bars_never_changes_a_past_row(case):
    bars, cuts = case
    full, full_votes = technical_ratings(bars), technical_votes(bars)
    for cut in cuts:
        past = technical_ratings(bars.iloc[:cut])
        pd.testing.assert_frame_equal(past, full.iloc[:cut].reset_index(drop=True), check_exact=True)
        pd.testing.assert_frame_equal(
            technical_votes(bars.iloc[:cut]), full_votes.iloc[:cut].reset_index(drop=True), check_exact=True
        )
        inc = technical_ratings_incremental(bars, past)
        assert (inc.reused_rows, inc.new_rows, inc.diverged_at) == (cut, len(bars) - cut, None)
        pd.testing.assert_frame_equal(inc.frame, full, check_exact=True)


def test_real_prefixes_are_exact_prefixes(real_bars, real_ratings):
    bars, full = real_bars["BINANCE:BTCUSDT"], real_ratings["BINANCE:BTCUSDT"]
    for cut in (1, 27, 78, 200, 201, 1000, len(bars) - 1):
        pd.testing.assert_frame_equal(technical_ratings(bars.iloc[:cut]), full.iloc[:cut], check_exact=True)


# --------------------------------------------------------------------------- incremental


def test_incremental_equals_full_and_reports_new_rows(real_bars, real_ratings):
    bars, full = real_bars["BINANCE:ETHUSDT"], real_ratings["BINANCE:ETHUSDT"]
    previous = technical_ratings(bars.iloc[:1500])
    inc = technical_ratings_incremental(bars, previous)
    pd.testing.assert_frame_equal(inc.frame, full, check_exact=True)
    assert (inc.reused_rows, inc.new_rows, inc.diverged_at) == (1500, len(bars) - 1500, None)
    fresh = technical_ratings_incremental(bars, None)
    assert (fresh.reused_rows, fresh.new_rows) == (0, len(bars))
    pd.testing.assert_frame_equal(fresh.frame, full, check_exact=True)


def test_incremental_detects_changed_bars_and_rebuilds():
    bars = _synthetic_bars(400)
    previous = technical_ratings(bars.iloc[:300])
    repaired = bars.copy()
    repaired.loc[120, "close"] *= 1.05  # a repaired bar inside the stored history
    inc = technical_ratings_incremental(repaired, previous)
    assert inc.diverged_at == int(bars["timestamp"].iloc[120])
    assert (inc.reused_rows, inc.new_rows) == (120, 280)
    pd.testing.assert_frame_equal(inc.frame, technical_ratings(repaired), check_exact=True)

    shorter = technical_ratings_incremental(bars.iloc[:250], previous)  # bars were dropped
    assert shorter.diverged_at == int(bars["timestamp"].iloc[250])
    pd.testing.assert_frame_equal(shorter.frame, technical_ratings(bars.iloc[:250]), check_exact=True)

    old_layout = technical_ratings_incremental(bars, previous.drop(columns=["uo_7_14_28"]))
    assert old_layout.reused_rows == 0 and old_layout.diverged_at == int(bars["timestamp"].iloc[0])


# --------------------------------------------------------------------------- shape, determinism, errors


def test_output_columns_dtypes_and_one_row_per_bar():
    bars = _synthetic_bars(250)
    out = technical_ratings(bars)
    assert tuple(out.columns) == OUTPUT_COLUMNS == ("timestamp",) + FEATURE_COLUMNS
    assert FEATURE_COLUMNS[:3] == RATING_COLUMNS
    assert out["timestamp"].dtype == np.int64 and (out["timestamp"].to_numpy() == bars["timestamp"].to_numpy()).all()
    assert all(out[c].dtype == np.float64 for c in FEATURE_COLUMNS)
    for c in RATING_COLUMNS:
        x = out[c].dropna()
        assert ((x >= -1) & (x <= 1)).all()
    assert len(technical_ratings(bars.iloc[:0])) == 0


def test_missing_days_use_the_bar_sequence_as_given():
    bars = _synthetic_bars(260).drop(index=[50, 51, 52, 140]).reset_index(drop=True)
    contiguous = bars.assign(timestamp=(17_000 + np.arange(len(bars), dtype=np.int64)) * DAY_MS)
    a, b = technical_ratings(bars), technical_ratings(contiguous)
    pd.testing.assert_frame_equal(a.drop(columns="timestamp"), b.drop(columns="timestamp"), check_exact=True)


def test_panel_long_format_is_sorted_and_deterministic():
    panel = {"BINANCE:ETHUSDT": _synthetic_bars(240, seed=2), "BINANCE:BTCUSDT": _synthetic_bars(300, seed=1),
             "BINANCE:ADAUSDT": _synthetic_bars(5, seed=3)}
    out = ratings_for_symbols(panel)
    assert tuple(out.columns) == LONG_COLUMNS
    assert out["symbol"].tolist() == ["BINANCE:ADAUSDT"] * 5 + ["BINANCE:BTCUSDT"] * 300 + ["BINANCE:ETHUSDT"] * 240
    assert out.equals(out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True))
    again = ratings_for_symbols(dict(reversed(list(panel.items()))))
    pd.testing.assert_frame_equal(out, again, check_exact=True)
    assert out[list(FEATURE_COLUMNS)].to_numpy().tobytes() == again[list(FEATURE_COLUMNS)].to_numpy().tobytes()
    btc = out[out["symbol"] == "BINANCE:BTCUSDT"].drop(columns="symbol").reset_index(drop=True)
    pd.testing.assert_frame_equal(btc, technical_ratings(panel["BINANCE:BTCUSDT"]), check_exact=True)
    empty = ratings_for_symbols({})
    assert tuple(empty.columns) == LONG_COLUMNS and len(empty) == 0


def test_errors_name_the_symbol_and_field():
    bars = _synthetic_bars(30)
    with pytest.raises(ContractError, match=r"BINANCE:XUSDT.*timestamp.*sorted"):
        technical_ratings(bars.iloc[::-1], where="BINANCE:XUSDT")
    with pytest.raises(ContractError, match=r"BINANCE:XUSDT.*'volume'"):
        technical_ratings(bars.drop(columns="volume"), where="BINANCE:XUSDT")
    broken = bars.copy()
    broken.loc[7, "close"] = np.nan
    with pytest.raises(ContractError, match=r"'close' row 7"):
        ratings_for_symbols({"BINANCE:XUSDT": broken})
    with pytest.raises(ContractError, match="invalid symbol id"):
        ratings_for_symbols({"../etc": bars})
    with pytest.raises(ContractError, match="missing column"):
        votes_from_indicators(pd.DataFrame({"rsi_14": [1.0]}), [1.0])
