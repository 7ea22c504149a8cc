"""Binance's 12-field kline layout, parsed in one place for every source that reads it.

A kline is `[open time, open, high, low, close, volume, close time, quote-asset volume,
number of trades, taker-buy base volume, taker-buy quote volume, unused]`. The REST API sends
prices and volumes as strings; the public archives and users' CSV files hold the same twelve
fields as text. Facts this module relies on (and nothing more):

* a kline is identified by its open time; the close time is *not* always open + 1 day - 1 ms
  (the 2018-02-08 daily bars closed at 00:28 UTC after an outage), so it is only used to tell
  whether a bar had closed when it was served;
* timestamps are milliseconds, except in archives from 2025 on (and REST with
  `timeUnit=MICROSECOND`), which use microseconds; users' files also hold seconds (and pandas
  writes nanoseconds). Each value's unit is told by its magnitude (`epoch_to_ms`): the ranges
  do not overlap for any day from 1973-03-03 to the year 5138, so a file mixing units is read
  whole, and a value too small to tell (before 1973 in seconds) is refused naming the cell;
* the unused 12th field is not always "0" and is never read.

Output: the contract's OHLCV frame (`contracts.OHLCV_COLUMNS`), sorted and unique by open time,
otherwise unsanitized (ingestion owns the quality gates).
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..contracts import DAY_MS, OHLCV_COLUMNS, ContractError, date_to_ms

KLINE_FIELDS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
)
# Epoch units by magnitude: seconds < 1e11 <= milliseconds < 1e14 <= microseconds < 1e17 <=
# nanoseconds. Seconds stay below 1e11 until the year 5138 and milliseconds pass it in 1973
# (likewise one unit up), so the ranges cannot be confused for any day from 1973-03-03 on.
SECONDS_BELOW = 10**11
MICROSECOND_THRESHOLD = 10**14
NANOSECOND_THRESHOLD = 10**17
# Below this, a value is 1973-03-03 in seconds or 1970-01-02 in milliseconds: no unit can be told.
MIN_EPOCH = 10**8
_USED = {"open_time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5, "close_time": 6}


def epoch_to_ms(
    values: np.ndarray, *, field: str = "timestamp", where: str = "", first_row: int = 0, row_label: str = "row"
) -> np.ndarray:
    """Epoch milliseconds from seconds, milliseconds, microseconds or nanoseconds, each value's
    unit told by its magnitude; a value below `MIN_EPOCH` is a `ContractError` naming the cell."""
    v = np.asarray(values, dtype="int64")
    small = np.flatnonzero(v < MIN_EPOCH)
    if len(small):
        i = int(small[0])
        raise ContractError(
            f"{where}: {row_label} {first_row + i}: field {field!r}: {int(v[i])} is too small to tell its unit "
            f"(epoch seconds, milliseconds, microseconds or nanoseconds of a day after 1973-03-03 expected)"
        )
    out = np.where(v < SECONDS_BELOW, v * 1000, v)
    out = np.where(v >= MICROSECOND_THRESHOLD, v // 1000, out)
    return np.where(v >= NANOSECOND_THRESHOLD, v // 1_000_000, out)


def parse_kline_rows(rows: Any, *, where: str, first_row: int = 0) -> pd.DataFrame:
    """Parse a JSON kline array (list of 12-field lists) into a kline frame.

    The kline frame has `open_time`, `close_time` (int64 epoch ms) and the OHLCV values
    (float64). Any row that is not a list of 12 fields, or a field that is not a number, is a
    `ContractError` naming `where`, the row and the field.
    """
    if not isinstance(rows, list):
        raise ContractError(f"{where}: expected a JSON array of klines, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != len(KLINE_FIELDS):
            got = f"{len(row)} fields" if isinstance(row, (list, tuple)) else type(row).__name__
            raise ContractError(f"{where}: row {first_row + i}: expected a kline of {len(KLINE_FIELDS)} fields, got {got}")
    columns = list(zip(*rows)) if rows else [()] * len(KLINE_FIELDS)
    return _kline_frame(columns, where=where, first_row=first_row)


def read_kline_csv(data: bytes | str, *, where: str) -> pd.DataFrame:
    """Parse a CSV in the kline layout into a kline frame.

    Accepts the archives' headerless 12 columns, the same with a header row, and a leading
    date column (`Date` + 12 fields, as some downloaders write). Cells are read as text and
    converted by Python's float(), exactly like the REST strings, so every reader of the same
    numbers gets the same bits.
    """
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    try:
        table = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        return _kline_frame([()] * len(KLINE_FIELDS), where=where, first_row=0)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ContractError(f"{where}: not a readable CSV: {exc}") from exc
    first = 0
    if len(table) and not _is_integer_text(table.iat[0, table.shape[1] - 12 if table.shape[1] >= 12 else 0]):
        first = 1  # a header row
    ncols = table.shape[1]
    if ncols == len(KLINE_FIELDS) + 1 and (first == 0 or str(table.iat[0, 0]).strip().lower() in ("date", "datetime", "day")):
        table = table.iloc[:, 1:]
    elif ncols != len(KLINE_FIELDS):
        raise ContractError(f"{where}: expected {len(KLINE_FIELDS)} kline columns (optionally after a date column), got {ncols}")
    body = table.iloc[first:]
    columns = [body.iloc[:, j].to_numpy(dtype=object) for j in range(len(KLINE_FIELDS))]
    # Errors name the file's line, counted from 1 as a text editor does (a header is line 1).
    return _kline_frame(columns, where=where, first_row=first + 1, row_label="line")


def klines_to_bars(klines: pd.DataFrame, *, closed_before_ms: int | None = None, unique: bool = True) -> pd.DataFrame:
    """Contract bars from a kline frame.

    A kline whose close time is at or after `closed_before_ms` (the server's clock when it
    answered) had not closed and is dropped. Bars are keyed by open time and sorted; with
    `unique`, of duplicates the last one served wins (a later page is newer information),
    otherwise conflicting duplicates are kept in order for the quality gates (`sort_bars`).
    """
    if closed_before_ms is not None:
        klines = klines[klines["close_time"].to_numpy() < closed_before_ms]
    bars = klines.rename(columns={"open_time": "timestamp"})[list(OHLCV_COLUMNS)]
    return sort_unique(bars) if unique else sort_bars(bars)


def sort_unique(bars: pd.DataFrame) -> pd.DataFrame:
    """Sorted by timestamp, one row per timestamp (the last occurrence wins), fresh index."""
    bars = bars.sort_values("timestamp", kind="mergesort")
    bars = bars.drop_duplicates("timestamp", keep="last")
    return bars.reset_index(drop=True)


def sort_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Sorted by timestamp (stable: rows of one day keep their order), identical rows merged.

    Conflicting rows for one day stay, so that ingestion's quality gates keep the first and
    quarantine the others (rule `duplicate_timestamp`) instead of one being dropped unseen.
    """
    bars = bars.sort_values("timestamp", kind="mergesort").drop_duplicates(keep="first")
    return bars.reset_index(drop=True)


def clip_days(bars: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """The bars whose open time falls on a UTC day in [start, end]."""
    ts = bars["timestamp"].to_numpy()
    keep = (ts >= date_to_ms(start)) & (ts < date_to_ms(end) + DAY_MS)
    return bars[keep].reset_index(drop=True)


# --------------------------------------------------------------------------- numbers


def to_floats(values: Sequence[Any], *, field: str, where: str, first_row: int = 0, row_label: str = "row") -> np.ndarray:
    """float64 values, or a `ContractError` naming `where`, the first bad row and `field`."""
    arr = np.asarray(values, dtype=object)
    try:
        return arr.astype(np.float64)  # Python float(): correctly rounded, same as json numbers
    except (TypeError, ValueError):
        pass
    for i, value in enumerate(arr):
        try:
            if isinstance(value, bool):
                raise TypeError
            float(value)
        except (TypeError, ValueError):
            raise ContractError(f"{where}: {row_label} {first_row + i}: field {field!r}: {value!r} is not a number") from None
    raise AssertionError("unreachable")  # pragma: no cover


def to_ints(values: Sequence[Any], *, field: str, where: str, first_row: int = 0, row_label: str = "row") -> np.ndarray:
    """int64 values (integral numbers or their text), or a `ContractError` naming the bad cell."""
    if all(type(v) is int for v in values):  # the JSON fast path
        return np.asarray(values, dtype="int64")
    out = np.empty(len(values), dtype="int64")
    for i, value in enumerate(values):
        try:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, (int, np.integer)):
                out[i] = value
                continue
            text = str(value).strip()
            try:
                out[i] = int(text)
            except ValueError:
                number = float(text)  # "1502928000000.0" from a spreadsheet round trip
                if not np.isfinite(number) or number != int(number):
                    raise
                out[i] = int(number)
        except (TypeError, ValueError, OverflowError):
            raise ContractError(f"{where}: {row_label} {first_row + i}: field {field!r}: {value!r} is not an integer epoch time") from None
    return out


# --------------------------------------------------------------------------- helpers


def _kline_frame(columns: Sequence[Sequence[Any]], *, where: str, first_row: int, row_label: str = "row") -> pd.DataFrame:
    data = {}
    for name, j in _USED.items():
        if name in ("open_time", "close_time"):
            ints = to_ints(columns[j], field=name, where=where, first_row=first_row, row_label=row_label)
            data[name] = epoch_to_ms(ints, field=name, where=where, first_row=first_row, row_label=row_label)
        else:
            data[name] = to_floats(columns[j], field=name, where=where, first_row=first_row, row_label=row_label)
    return pd.DataFrame(data)


def _is_integer_text(value: Any) -> bool:
    """An epoch number, also as a spreadsheet writes it ("1502928000000.0"): not a header cell."""
    whole, _, fraction = str(value).strip().partition(".")
    return whole.isdigit() and fraction.strip("0") == ""


__all__ = [
    "KLINE_FIELDS",
    "MICROSECOND_THRESHOLD",
    "SECONDS_BELOW",
    "NANOSECOND_THRESHOLD",
    "MIN_EPOCH",
    "epoch_to_ms",
    "parse_kline_rows",
    "read_kline_csv",
    "klines_to_bars",
    "sort_unique",
    "sort_bars",
    "clip_days",
    "to_floats",
    "to_ints",
]
