"""Daily return and traded-value panels built from certified bars (issue 5, item 3).

The panel is a plain date x symbol matrix of simple close-to-close returns. A return is
only defined between two consecutive UTC days that both have a bar: a symbol that skipped a
day gets NaN on the day it resumes (never a multi-day return booked on one day), and NaN on
days it has no bar (never a zero, never a forward-filled price).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

import numpy as np
import pandas as pd

from quantlake.contracts import DAY_MS, ContractError, SymbolId

DATE_INDEX_NAME = "date"


def returns_matrix(bars: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Simple daily returns, index the union of all bar days (named "date"), sorted symbols."""
    return _panel(bars, _close_to_close_returns)


def traded_value_matrix(bars: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """close * volume (quote-currency traded value), same shape as `returns_matrix`."""
    return _panel(bars, _traded_value)


def to_day(value: Any) -> pd.Timestamp:
    """A UTC calendar day as the panel labels it: tz-naive midnight (from a date, str, Timestamp)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = value.isoformat()
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize()


def _close_to_close_returns(ts: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    close = frame["close"].to_numpy("float64")
    out = np.full(close.shape, np.nan)
    if close.size > 1:
        adjacent = np.diff(ts) == DAY_MS  # both this day and the previous calendar day have a bar
        out[1:] = np.where(adjacent, close[1:] / close[:-1] - 1.0, np.nan)
    return out


def _traded_value(ts: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    return frame["close"].to_numpy("float64") * frame["volume"].to_numpy("float64")


def _panel(bars: Mapping[str, pd.DataFrame], values) -> pd.DataFrame:
    columns: dict[str, pd.Series] = {}
    for name in sorted(bars):
        symbol = str(SymbolId.parse(name, where="bars mapping"))
        frame = bars[name]
        ts = _checked_timestamps(symbol, frame)
        dates = pd.DatetimeIndex(pd.to_datetime(ts, unit="ms"), name=DATE_INDEX_NAME).as_unit("ns")
        columns[symbol] = pd.Series(np.asarray(values(ts, frame), dtype="float64"), index=dates)
    if not columns:
        return pd.DataFrame(index=pd.DatetimeIndex([], name=DATE_INDEX_NAME), dtype="float64")
    out = pd.DataFrame(columns).sort_index()
    out.index = pd.DatetimeIndex(out.index, name=DATE_INDEX_NAME).as_unit("ns")
    return out.astype("float64")


def _checked_timestamps(symbol: str, frame: pd.DataFrame) -> np.ndarray:
    missing = [c for c in ("timestamp", "close", "volume") if c not in frame.columns]
    if missing:
        raise ContractError(f"bars of {symbol}: missing column(s) {missing}")
    ts = frame["timestamp"].to_numpy()
    if ts.dtype != np.dtype("int64"):
        raise ContractError(f"bars of {symbol}: column 'timestamp' must be int64 ms, got {ts.dtype}")
    if np.any(ts % DAY_MS != 0):
        raise ContractError(f"bars of {symbol}: timestamp not at 00:00 UTC at row {int(np.argmax(ts % DAY_MS != 0))}")
    if ts.size > 1 and np.any(np.diff(ts) <= 0):
        row = int(np.argmax(np.diff(ts) <= 0)) + 1
        raise ContractError(f"bars of {symbol}: timestamps not strictly increasing at row {row}")
    return ts
