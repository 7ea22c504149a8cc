"""Point-in-time TradingView-style Technical Ratings (the feature store's math).

Rules: `shared/notes/technical_ratings.md`, i.e. TradingView's published `TechnicalRating`
library (v3) with the indicator definitions of Pine's `ta.*` built-ins. Pure functions:
DataFrames in, DataFrames out, no IO, no clock, no randomness.

Output of `technical_ratings` (one row per input bar, in this order, see `OUTPUT_COLUMNS`):

- `timestamp` (int64 ms), then `recommend_all`, `recommend_ma`, `recommend_other`
  (float64 in [-1, 1], NaN while no vote of the group is available);
- the indicator values, float64, NaN during warm-up (`INDICATOR_COLUMNS`), named
  `<indicator>_<params>`. Moving averages: `sma_N`, `ema_N` (N = 10 20 30 50 100 200),
  `hma_9` (Hull), `vwma_20`, Ichimoku `ichimoku_conversion_9_26_52`, `ichimoku_base_9_26_52`
  and the cloud under the current bar `ichimoku_span_a_9_26_52` / `ichimoku_span_b_9_26_52`
  (the leading spans computed 26 bars earlier, which is what the vote reads). Oscillators:
  `rsi_14` (Wilder), `stoch_k_14_3_3`, `stoch_d_14_3_3`, `cci_20` (of close, as the library
  calls `ta.cci(close, 20)`), `adx_14`, `plus_di_14`, `minus_di_14`, `ao_5_34`, `mom_10`,
  `macd_12_26_9` (MACD line), `macd_signal_12_26_9`, `stoch_rsi_k_3_3_14_14`,
  `stoch_rsi_d_3_3_14_14`, `willr_14`, `bull_power_13`, `bear_power_13`, `uo_7_14_28`.

The 26 votes are not stored (they follow from the stored values, the close and one-bar lags):
`technical_votes(bars)` or `votes_from_indicators(stored_rows, close)` return them as float64
columns `vote_*` in {-1, 0, +1}, NaN when undefined, and `ratings_from_votes` averages them.

Conventions (these decide the warm-up and the last bits, and are what the tests pin down):

- Point in time: every value at bar t is computed from bars 0..t only (trailing windows,
  forward recursions, lags); nothing is centred or back-filled. Recomputing on a longer
  history never changes an earlier row, bit for bit (tested).
- Bars are used as given: a missing day is simply absent, so "N bars" means N rows, as on a
  TradingView chart with missing bars. Nothing is interpolated.
- EMA (alpha 2/(N+1)) and Wilder's RMA (alpha 1/N) follow Pine: seeded with the simple mean of
  the first N values, then `alpha * x + (1 - alpha) * previous`. This is also TA-Lib's EMA and
  RSI seeding. If an input series has a gap (NaN inside it), the recursion restarts from a new
  seed once N values are available again, as Pine does.
- One-bar differences (RSI, true range, directional movement, Ultimate Oscillator) are
  undefined on the first bar, so RSI starts at bar 14, +DI/-DI at bar 14 and ADX at bar 27.
- A ratio whose denominator is zero (a flat 14-bar range for Stochastic or Williams %R, zero
  mean deviation for CCI, zero volume for VWMA, no movement at all for RSI or +DI/-DI) is
  undefined (NaN) and its vote is left out, instead of inventing 0 or 100 (TA-Lib writes 0
  there). Pine's `fixnan` on +DI/-DI is not needed: a Wilder average of true ranges only
  reaches 0 while every range so far was 0, where `fixnan` has nothing to carry either.
- A vote is defined only when every value its rule reads is defined (warm-up votes are left
  out of the averages). TradingView's library gates each vote on one representative value
  instead, so during the first bars of a warm-up it may count a 0 vote that we leave out;
  after the warm-up both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

from ..contracts import ContractError, SymbolId, empty_bars

MA_LENGTHS = (10, 20, 30, 50, 100, 200)

RATING_COLUMNS = ("recommend_all", "recommend_ma", "recommend_other")
# The moving averages that vote sign(close - MA).
_SIGN_VOTE_MAS = (*(f"sma_{n}" for n in MA_LENGTHS), *(f"ema_{n}" for n in MA_LENGTHS), "hma_9", "vwma_20")
MA_INDICATOR_COLUMNS = (
    *_SIGN_VOTE_MAS,
    "ichimoku_conversion_9_26_52",
    "ichimoku_base_9_26_52",
    "ichimoku_span_a_9_26_52",
    "ichimoku_span_b_9_26_52",
)
OSCILLATOR_INDICATOR_COLUMNS = (
    "rsi_14",
    "stoch_k_14_3_3",
    "stoch_d_14_3_3",
    "cci_20",
    "adx_14",
    "plus_di_14",
    "minus_di_14",
    "ao_5_34",
    "mom_10",
    "macd_12_26_9",
    "macd_signal_12_26_9",
    "stoch_rsi_k_3_3_14_14",
    "stoch_rsi_d_3_3_14_14",
    "willr_14",
    "bull_power_13",
    "bear_power_13",
    "uo_7_14_28",
)
INDICATOR_COLUMNS = MA_INDICATOR_COLUMNS + OSCILLATOR_INDICATOR_COLUMNS
# The value columns of the feature store, in their fixed order (all float64).
FEATURE_COLUMNS = RATING_COLUMNS + INDICATOR_COLUMNS
OUTPUT_COLUMNS = ("timestamp",) + FEATURE_COLUMNS
LONG_COLUMNS = ("timestamp", "symbol") + FEATURE_COLUMNS

MA_VOTE_COLUMNS = (*(f"vote_{name}" for name in _SIGN_VOTE_MAS), "vote_ichimoku_9_26_52")
OSCILLATOR_VOTE_COLUMNS = (
    "vote_rsi_14",
    "vote_stoch_14_3_3",
    "vote_cci_20",
    "vote_adx_14",
    "vote_ao_5_34",
    "vote_mom_10",
    "vote_macd_12_26_9",
    "vote_stoch_rsi_3_3_14_14",
    "vote_willr_14",
    "vote_bbp_13",
    "vote_uo_7_14_28",
)
VOTE_COLUMNS = MA_VOTE_COLUMNS + OSCILLATOR_VOTE_COLUMNS

# Rating bands of the TradingView help page: > 0.5 strong buy, > 0.1 buy, < -0.1 sell,
# < -0.5 strong sell, otherwise neutral.
STRONG_BOUND = 0.5
WEAK_BOUND = 0.1

_BAR_FIELDS = ("open", "high", "low", "close", "volume")


# --------------------------------------------------------------------------- kernels
# Every kernel maps float64 arrays to float64 arrays of the same length, NaN where undefined,
# and is causal: output[t] reads input[0..t] only, and is computed by the same floating-point
# operations whatever the array length (so a prefix's values never change bit for bit).


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (an undefined ratio is not a signal)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[den == 0] = np.nan
    return out


def _rolling_weighted_sum(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k weights[k] * x[t - k] over the trailing window; NaN if the window is short or holds NaN.

    A shifted-slice loop rather than a running sum: each value is a function of its own window
    only (no drift from adding and removing values over thousands of bars), and its rounding
    does not depend on how long the series is.
    """
    n = len(weights)
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        stop = len(x)
        acc = weights[0] * x[n - 1 : stop]
        for k in range(1, n):
            acc = acc + weights[k] * x[n - 1 - k : stop - k]
        out[n - 1 :] = acc
    return out


def _rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_weighted_sum(x, np.ones(n))


def _sma(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_sum(x, n) / n


def _wma(x: np.ndarray, n: int) -> np.ndarray:
    """Linearly weighted mean, newest bar weight n, oldest weight 1 (Pine `ta.wma`)."""
    return _rolling_weighted_sum(x, np.arange(n, 0, -1, dtype=np.float64)) / (n * (n + 1) / 2)


def _rolling_extreme(x: np.ndarray, n: int, reducer) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        out[n - 1 :] = reducer(sliding_window_view(x, n), axis=-1)  # max/min are exact
    return out


def _highest(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_extreme(x, n, np.max)


def _lowest(x: np.ndarray, n: int) -> np.ndarray:
    return _rolling_extreme(x, n, np.min)


def _mean_deviation(x: np.ndarray, n: int, mean: np.ndarray) -> np.ndarray:
    """Pine `ta.dev`: mean absolute deviation of the window around its own mean."""
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        stop, m = len(x), mean[n - 1 :]
        acc = np.abs(x[n - 1 : stop] - m)
        for k in range(1, n):
            acc = acc + np.abs(x[n - 1 - k : stop - k] - m)
        out[n - 1 :] = acc / n
    return out


def _finite_runs(x: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.r_[0, np.isfinite(x).astype(np.int8), 0]))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _smoothed(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Pine's `ta.ema` / `ta.rma` recursion: SMA seed, then alpha * x + (1 - alpha) * previous.

    Each run of finite values is seeded separately (Pine re-seeds after an `na`). The recursion
    runs in `scipy.signal.lfilter` (C), whose step is exactly `alpha * x + (1 - alpha) * prev`.
    """
    out = np.full(x.shape, np.nan)
    decay = 1.0 - alpha
    for start, stop in _finite_runs(x):
        seed_at = start + n - 1
        if seed_at >= stop:
            continue
        out[seed_at] = _sma(x[start : seed_at + 1], n)[-1]
        if seed_at + 1 < stop:
            out[seed_at + 1 : stop], _ = lfilter(
                [alpha], [1.0, -decay], x[seed_at + 1 : stop], zi=[decay * out[seed_at]]
            )
    return out


def _ema(x: np.ndarray, n: int) -> np.ndarray:
    return _smoothed(x, n, 2.0 / (n + 1))


def _rma(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder's moving average (alpha 1/n), as in RSI and ADX."""
    return _smoothed(x, n, 1.0 / n)


# --------------------------------------------------------------------------- indicators


def _donchian_mid(high: np.ndarray, low: np.ndarray, n: int) -> np.ndarray:
    return (_highest(high, n) + _lowest(low, n)) / 2


def _stochastic(close: np.ndarray, high: np.ndarray, low: np.ndarray, n: int) -> np.ndarray:
    """Pine `ta.stoch`: 100 * (close - lowest low) / (highest high - lowest low)."""
    lowest = _lowest(low, n)
    return _divide(100 * (close - lowest), _highest(high, n) - lowest)


def _rsi(close: np.ndarray, n: int) -> np.ndarray:
    change = close - _lag(close, 1)
    gain = _rma(np.maximum(change, 0.0), n)  # np.maximum keeps the first bar's NaN
    loss = _rma(np.maximum(-change, 0.0), n)
    return 100 * _divide(gain, gain + loss)


def _dmi(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int):
    """Pine `ta.dmi(n, n)`: (+DI, -DI, ADX)."""
    up = high - _lag(high, 1)
    down = _lag(low, 1) - low
    undefined = np.isnan(up)
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    plus_dm[undefined] = np.nan
    minus_dm[undefined] = np.nan
    prev_close = _lag(close, 1)  # NaN on the first bar, so the true range starts at bar 1
    true_range = np.maximum(high - low, np.maximum(np.abs(high - prev_close), np.abs(low - prev_close)))
    smoothed_tr = _rma(true_range, n)
    plus_di = _divide(100 * _rma(plus_dm, n), smoothed_tr)
    minus_di = _divide(100 * _rma(minus_dm, n), smoothed_tr)
    di_sum = plus_di + minus_di
    dx = np.abs(plus_di - minus_di) / np.where(di_sum == 0, 1.0, di_sum)
    return plus_di, minus_di, 100 * _rma(dx, n)


def _ultimate_oscillator(high, low, close, lengths=(7, 14, 28)) -> np.ndarray:
    prev_close = _lag(close, 1)
    true_low = np.minimum(low, prev_close)  # NaN on the first bar, as in Pine
    buying_pressure = close - true_low
    true_range = np.maximum(high, prev_close) - true_low
    fast, mid, slow = (
        _divide(_rolling_sum(buying_pressure, n), _rolling_sum(true_range, n)) for n in lengths
    )
    return 100 * (4 * fast + 2 * mid + slow) / 7


def _indicator_values(o, h, l, c, v) -> dict[str, np.ndarray]:
    ind: dict[str, np.ndarray] = {}
    for n in MA_LENGTHS:
        ind[f"sma_{n}"] = _sma(c, n)
    for n in MA_LENGTHS:
        ind[f"ema_{n}"] = _ema(c, n)
    ind["hma_9"] = _wma(2 * _wma(c, 4) - _wma(c, 9), 3)  # Hull: wma(2 wma(n/2) - wma(n), sqrt n)
    ind["vwma_20"] = _divide(_rolling_sum(c * v, 20), _rolling_sum(v, 20))

    conversion = _donchian_mid(h, l, 9)
    base = _donchian_mid(h, l, 26)
    ind["ichimoku_conversion_9_26_52"] = conversion
    ind["ichimoku_base_9_26_52"] = base
    # The leading spans are plotted 26 bars ahead; the cloud under bar t is therefore the pair
    # computed at t - 26, which is all the vote may read at t.
    ind["ichimoku_span_a_9_26_52"] = _lag((conversion + base) / 2, 26)
    ind["ichimoku_span_b_9_26_52"] = _lag(_donchian_mid(h, l, 52), 26)

    rsi = _rsi(c, 14)
    ind["rsi_14"] = rsi
    stoch_k = _sma(_stochastic(c, h, l, 14), 3)
    ind["stoch_k_14_3_3"] = stoch_k
    ind["stoch_d_14_3_3"] = _sma(stoch_k, 3)
    sma_20 = ind["sma_20"]
    ind["cci_20"] = _divide(c - sma_20, 0.015 * _mean_deviation(c, 20, sma_20))
    plus_di, minus_di, adx = _dmi(h, l, c, 14)
    ind["adx_14"] = adx
    ind["plus_di_14"] = plus_di
    ind["minus_di_14"] = minus_di
    hl2 = (h + l) / 2
    ind["ao_5_34"] = _sma(hl2, 5) - _sma(hl2, 34)
    ind["mom_10"] = c - _lag(c, 10)
    macd = _ema(c, 12) - _ema(c, 26)
    ind["macd_12_26_9"] = macd
    ind["macd_signal_12_26_9"] = _ema(macd, 9)
    stoch_rsi_k = _sma(_stochastic(rsi, rsi, rsi, 14), 3)
    ind["stoch_rsi_k_3_3_14_14"] = stoch_rsi_k
    ind["stoch_rsi_d_3_3_14_14"] = _sma(stoch_rsi_k, 3)
    highest_14 = _highest(h, 14)
    ind["willr_14"] = _divide(100 * (c - highest_14), highest_14 - _lowest(l, 14))
    ema_13 = _ema(c, 13)
    ind["bull_power_13"] = h - ema_13
    ind["bear_power_13"] = l - ema_13
    ind["uo_7_14_28"] = _ultimate_oscillator(h, l, c)
    return ind


# --------------------------------------------------------------------------- votes


def _vote(buy: np.ndarray, sell: np.ndarray, *inputs: np.ndarray) -> np.ndarray:
    """+1 / -1 / 0 (buy wins a tie, as in the library), NaN when any input is undefined."""
    out = np.where(buy, 1.0, np.where(sell, -1.0, 0.0))
    for x in inputs:
        out[np.isnan(x)] = np.nan
    return out


def _votes(ind: Mapping[str, np.ndarray], close: np.ndarray) -> dict[str, np.ndarray]:
    votes: dict[str, np.ndarray] = {}
    for name in _SIGN_VOTE_MAS:
        votes[f"vote_{name}"] = np.sign(close - ind[name])

    con, base = ind["ichimoku_conversion_9_26_52"], ind["ichimoku_base_9_26_52"]
    span_a, span_b = ind["ichimoku_span_a_9_26_52"], ind["ichimoku_span_b_9_26_52"]
    votes["vote_ichimoku_9_26_52"] = _vote(
        (span_a > span_b) & (base > span_a) & (con > base) & (close > con),
        (span_a < span_b) & (base < span_a) & (con < base) & (close < con),
        span_a, span_b, base, con,
    )

    def rising_falling(name: str):
        x = ind[name]
        prev = _lag(x, 1)
        return x, prev, x > prev, x < prev

    rsi, rsi_1, up, down = rising_falling("rsi_14")
    votes["vote_rsi_14"] = _vote((rsi < 30) & up, (rsi > 70) & down, rsi, rsi_1)

    k, d = ind["stoch_k_14_3_3"], ind["stoch_d_14_3_3"]
    votes["vote_stoch_14_3_3"] = _vote(
        (k < 20) & (d < 20) & (k > d), (k > 80) & (d > 80) & (k < d), k, d
    )

    cci, cci_1, up, down = rising_falling("cci_20")
    votes["vote_cci_20"] = _vote((cci < -100) & up, (cci > 100) & down, cci, cci_1)

    adx, adx_1, adx_up, _ = rising_falling("adx_14")
    plus_di, minus_di = ind["plus_di_14"], ind["minus_di_14"]
    trending = (adx > 20) & adx_up
    votes["vote_adx_14"] = _vote(
        trending & (plus_di > minus_di), trending & (plus_di < minus_di),
        adx, adx_1, plus_di, minus_di,
    )

    ao = ind["ao_5_34"]
    ao_1, ao_2 = _lag(ao, 1), _lag(ao, 2)
    # Pine's crossover(ao, 0): ao > 0 and ao[1] <= 0. Saucer: above zero, a dip then a rise.
    votes["vote_ao_5_34"] = _vote(
        ((ao > 0) & (ao_1 <= 0)) | ((ao > 0) & (ao_1 > 0) & (ao > ao_1) & (ao_2 > ao_1)),
        ((ao < 0) & (ao_1 >= 0)) | ((ao < 0) & (ao_1 < 0) & (ao < ao_1) & (ao_2 < ao_1)),
        ao, ao_1, ao_2,
    )

    mom, mom_1, up, down = rising_falling("mom_10")
    votes["vote_mom_10"] = _vote(up, down, mom, mom_1)

    macd, signal = ind["macd_12_26_9"], ind["macd_signal_12_26_9"]
    votes["vote_macd_12_26_9"] = _vote(macd > signal, macd < signal, macd, signal)

    trend = ind["ema_50"]
    uptrend, downtrend = close > trend, close < trend
    srk, srd = ind["stoch_rsi_k_3_3_14_14"], ind["stoch_rsi_d_3_3_14_14"]
    votes["vote_stoch_rsi_3_3_14_14"] = _vote(
        downtrend & (srk < 20) & (srd < 20) & (srk > srd),
        uptrend & (srk > 80) & (srd > 80) & (srk < srd),
        trend, srk, srd,
    )

    wr, wr_1, up, down = rising_falling("willr_14")
    votes["vote_willr_14"] = _vote((wr < -80) & up, (wr > -20) & down, wr, wr_1)

    bull, bull_1, _, bull_falling = rising_falling("bull_power_13")
    bear, bear_1, bear_rising, _ = rising_falling("bear_power_13")
    votes["vote_bbp_13"] = _vote(
        uptrend & (bear < 0) & bear_rising,
        downtrend & (bull > 0) & bull_falling,
        trend, bull, bull_1, bear, bear_1,
    )

    uo = ind["uo_7_14_28"]
    votes["vote_uo_7_14_28"] = _vote(uo > 70, uo < 30, uo)
    return votes


def _mean_of_available(columns: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(columns[0])
    count = np.zeros_like(columns[0])
    for x in columns:
        defined = ~np.isnan(x)
        total = total + np.where(defined, x, 0.0)
        count = count + defined
    return _divide(total, count)


def _ratings(votes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    ma = _mean_of_available([votes[c] for c in MA_VOTE_COLUMNS])
    other = _mean_of_available([votes[c] for c in OSCILLATOR_VOTE_COLUMNS])
    return {"recommend_all": _mean_of_available([ma, other]), "recommend_ma": ma, "recommend_other": other}


# --------------------------------------------------------------------------- public API


def _bar_arrays(bars: pd.DataFrame, where: str) -> tuple[np.ndarray, ...]:
    missing = [c for c in ("timestamp", *_BAR_FIELDS) if c not in bars.columns]
    if missing:
        raise ContractError(f"{where}: missing column(s) {missing}")
    ts = bars["timestamp"].to_numpy()
    if ts.dtype != np.int64:
        raise ContractError(f"{where}: column 'timestamp' must be int64 ms, got {ts.dtype}")
    step = np.diff(ts)
    if (step <= 0).any():
        i = int(np.flatnonzero(step <= 0)[0]) + 1
        raise ContractError(
            f"{where}: column 'timestamp' must be sorted and unique (row {i}: {int(ts[i])} "
            f"after {int(ts[i - 1])})"
        )
    arrays = [ts]
    for name in _BAR_FIELDS:
        x = bars[name].to_numpy(dtype=np.float64)
        if not np.isfinite(x).all():
            i = int(np.flatnonzero(~np.isfinite(x))[0])
            raise ContractError(f"{where}: column {name!r} row {i} (timestamp {int(ts[i])}) is not finite: {x[i]!r}")
        arrays.append(x)
    return tuple(arrays)


def _frame(ts: np.ndarray, columns: Mapping[str, np.ndarray], order: tuple[str, ...]) -> pd.DataFrame:
    data = {"timestamp": ts.astype(np.int64, copy=True)}
    data.update({name: np.asarray(columns[name], dtype=np.float64) for name in order})
    return pd.DataFrame(data, columns=["timestamp", *order])


def technical_ratings(bars: pd.DataFrame, *, where: str = "bars") -> pd.DataFrame:
    """Ratings and indicator values for one symbol's daily bars, one row per bar (`OUTPUT_COLUMNS`).

    `bars` has the contract columns (`timestamp` int64 ms sorted and unique, finite
    `open, high, low, close, volume`); other columns are ignored. `where` names the symbol or
    file in error messages. Row t depends only on bars 0..t.
    """
    return _frame(*rating_columns(bars, where=where), FEATURE_COLUMNS)


def rating_columns(bars: pd.DataFrame, *, where: str = "bars") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`technical_ratings` as (timestamps, {feature column: values}): the same arrays, no frame
    (the feature store converts them to Arrow directly)."""
    ts, o, h, l, c, v = _bar_arrays(bars, where)
    ind = _indicator_values(o, h, l, c, v)
    return ts, {**_ratings(_votes(ind, c)), **ind}


def technical_votes(bars: pd.DataFrame, *, where: str = "bars") -> pd.DataFrame:
    """`timestamp` + the 26 votes (`VOTE_COLUMNS`), float64 in {-1, 0, 1}, NaN when undefined.

    Not part of the stored features (they are derivable); for explaining a rating.
    """
    ts, o, h, l, c, v = _bar_arrays(bars, where)
    return _frame(ts, _votes(_indicator_values(o, h, l, c, v), c), VOTE_COLUMNS)


def votes_from_indicators(indicators: pd.DataFrame, close) -> pd.DataFrame:
    """The votes (`VOTE_COLUMNS`) from stored indicator values and the bars' closes.

    `indicators` holds the `INDICATOR_COLUMNS` of consecutive rows of one symbol (e.g. a
    `technical_ratings` output) and `close` the matching closes. "Rising" / "falling" compare
    with the previous row, so the first row has none; the Ichimoku spans already hold the
    values from 26 bars earlier.
    """
    missing = [c for c in INDICATOR_COLUMNS if c not in indicators.columns]
    if missing:
        raise ContractError(f"indicators: missing column(s) {missing}")
    close = np.asarray(close, dtype=np.float64)
    if close.shape != (len(indicators),):
        raise ContractError(f"close has {close.size} values for {len(indicators)} indicator rows")
    ind = {c: indicators[c].to_numpy(dtype=np.float64) for c in INDICATOR_COLUMNS}
    votes = _votes(ind, close)
    return pd.DataFrame({c: votes[c] for c in VOTE_COLUMNS}, columns=list(VOTE_COLUMNS))


def ratings_from_votes(votes: pd.DataFrame) -> pd.DataFrame:
    """`RATING_COLUMNS` from the `VOTE_COLUMNS` (means of the defined votes, NaN if none)."""
    missing = [c for c in VOTE_COLUMNS if c not in votes.columns]
    if missing:
        raise ContractError(f"votes: missing column(s) {missing}")
    ratings = _ratings({c: votes[c].to_numpy(dtype=np.float64) for c in VOTE_COLUMNS})
    return pd.DataFrame({c: ratings[c] for c in RATING_COLUMNS}, columns=list(RATING_COLUMNS))


def ratings_for_symbols(bars_by_symbol: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Long format `LONG_COLUMNS` for a panel, sorted by (symbol, timestamp)."""
    frames = []
    for symbol in sorted(bars_by_symbol):
        SymbolId.parse(symbol, where="ratings_for_symbols")
        frame = technical_ratings(bars_by_symbol[symbol], where=symbol)
        frame.insert(1, "symbol", symbol)
        frames.append(frame)
    if not frames:
        empty = technical_ratings(empty_bars())
        empty.insert(1, "symbol", pd.Series([], dtype=str))
        return empty
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class IncrementalRatings:
    """Result of `technical_ratings_incremental`.

    `frame` always equals `technical_ratings(bars)`. `reused_rows` previous rows were confirmed
    unchanged and `new_rows` rows follow them (`frame.iloc[reused_rows:]` is what is new).
    `diverged_at` is the timestamp of the first previous row that no longer matches (bars
    repaired or removed, or features from another code version), else None.
    """

    frame: pd.DataFrame
    reused_rows: int
    new_rows: int
    diverged_at: int | None


def technical_ratings_incremental(
    bars: pd.DataFrame, previous: pd.DataFrame | None, *, where: str = "bars"
) -> IncrementalRatings:
    """Extend `previous` (an earlier `technical_ratings` output) to cover `bars`, exactly.

    EMA and Wilder recursions depend on the whole history, so a warm-up tail cannot reproduce
    them bit for bit. Correctness first: the indicators are recomputed over all bars (a few
    milliseconds per thousand bars), only the rows after `previous` are new, and `previous` is
    checked against the recomputation (NaN-aware, exact), so stale features are reported in
    `diverged_at` and replaced rather than kept.
    """
    full = technical_ratings(bars, where=where)
    if previous is None or len(previous) == 0:
        return IncrementalRatings(full, 0, len(full), None)
    if tuple(previous.columns) != OUTPUT_COLUMNS:  # another layout: nothing can be reused
        first_ts = int(previous["timestamp"].iloc[0]) if "timestamp" in previous.columns else None
        return IncrementalRatings(full, 0, len(full), first_ts)
    n = min(len(previous), len(full))
    same = previous["timestamp"].to_numpy()[:n] == full["timestamp"].to_numpy()[:n]
    for name in FEATURE_COLUMNS:
        a = previous[name].to_numpy(dtype=np.float64)[:n]
        b = full[name].to_numpy()[:n]
        same &= (a == b) | (np.isnan(a) & np.isnan(b))
    if not same.all():
        first = int(np.flatnonzero(~same)[0])
    elif len(previous) > len(full):
        first = len(full)
    else:
        return IncrementalRatings(full, len(previous), len(full) - len(previous), None)
    return IncrementalRatings(full, first, len(full) - first, int(previous["timestamp"].iloc[first]))


def rating_bands(ratings: np.ndarray | pd.Series) -> np.ndarray:
    """Labels of the TradingView bands: strong_sell, sell, neutral, buy, strong_buy (None for NaN)."""
    x = np.asarray(ratings, dtype=np.float64)
    labels = np.select(
        [x < -STRONG_BOUND, x < -WEAK_BOUND, x > STRONG_BOUND, x > WEAK_BOUND],
        ["strong_sell", "sell", "strong_buy", "buy"],
        "neutral",
    ).astype(object)
    labels[np.isnan(x)] = None
    return labels
