"""Daily return and traded-value panels built from certified bars (issue 5, item 3).

The panel is a plain date x symbol matrix of simple close-to-close returns, each bar's close
over the symbol's previous bar's close. A symbol that skipped days (a halt, a missing day,
the exchange-wide outage of a whole day) gets NaN on the days without a bar (never a zero,
never a forward-filled price) and, on the day it trades again, the whole move across the gap
(close on resumption / last close before the gap - 1): P&L is never lost across a gap, so a
buy-and-hold of one symbol compounds to its price ratio. The first bar has no return (NaN).
So NaN always means "no bar that day", except on a symbol's first bar: `bars_at` tells which
symbols have a bar on a day from the returns and traded-value panels together.

Two doors, one kernel. `returns_matrix(bars)` / `traded_value_matrix(bars)` take bars already
in memory as DataFrames; `returns_from_files(files)` / `panels_from_files(files)` read only the
columns they need straight from the Parquet files (the `returns` stage's way in: at 1,000
files it is about 3x faster than reading whole DataFrames, see
benchmarks/bench_returns_matrix.py). Both feed `_panel`, which lays every symbol into one
preallocated date x symbol array in a single pass (no per-symbol pandas alignment), so both
doors give identical frames.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quantlake.contracts import DAY_MS, OHLCV_SCHEMA, ContractError, SymbolId
from quantlake.layer import fragment_files

DATE_INDEX_NAME = "date"
PANEL_COLUMNS = ("timestamp", "close", "volume")  # what the panels read of a bar file

# One symbol's bars: a DataFrame, or column name -> 1-D numpy array (read from a file).
Columns = pd.DataFrame | Mapping[str, np.ndarray]


def returns_matrix(bars: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Simple daily returns, index the union of all bar days (named "date"), sorted symbols."""
    return _panel(bars, _close_to_close_returns, check=_has_panel_columns)


def traded_value_matrix(bars: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """close * volume (quote-currency traded value), same shape as `returns_matrix`."""
    return _panel(bars, _traded_value, check=_has_panel_columns)


def close_matrix(columns: Mapping[str, Columns]) -> pd.DataFrame:
    """Closes, same layout as `returns_matrix`: NaN on days a symbol has no bar (never filled)."""
    return _panel(columns, lambda ts, cols: _floats(cols["close"]))


def returns_from_files(files: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """`returns_matrix` of the bar files {symbol id: path}, reading only `timestamp` and `close`."""
    return _panel({name: read_bar_columns(path, ("timestamp", "close")) for name, path in files.items()}, _close_to_close_returns)


def panels_from_files(files: Mapping[str, str | os.PathLike]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`returns_matrix`, `traded_value_matrix`) of the bar files {symbol id: path}, each file read once."""
    columns = {name: read_bar_columns(path, PANEL_COLUMNS) for name, path in files.items()}
    return _panel(columns, _close_to_close_returns), _panel(columns, _traded_value)


def bars_at(returns: pd.DataFrame, traded_value: pd.DataFrame | None, day: Any) -> pd.Series:
    """symbol -> has a bar on `day` (a return or a traded value that day), over `returns.columns`.

    On a day without any bar at all (an exchange-wide missing day) the answer is that of the
    last earlier day with a bar: the last market close known on `day`. Only rows dated on or
    before `day` are read (one or two rows in practice), so this is point in time.
    """
    day = to_day(day)
    columns = returns.columns
    frames = [returns] if traded_value is None else [returns, traded_value]
    # each frame as (its days, its values on returns' columns): numpy rows, no Series per row
    arrays = [(f.index, (f if f.columns.equals(columns) else f.reindex(columns=columns)).to_numpy("float64")) for f in frames]
    days = returns.index[returns.index <= day]
    if traded_value is not None and not traded_value.index.equals(returns.index):
        days = days.union(traded_value.index[traded_value.index <= day])
    for d in reversed(days):  # almost always the first day looked at has bars
        has = np.zeros(len(columns), dtype=bool)
        for index, values in arrays:
            if d in index:
                has |= ~np.isnan(values[index.get_loc(d)])
        if has.any():
            return pd.Series(has, index=columns)
    return pd.Series(False, index=columns, dtype=bool)


def to_day(value: Any) -> pd.Timestamp:
    """A UTC calendar day as the panel labels it: tz-naive midnight (from a date, str, Timestamp)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = value.isoformat()
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize()


# --------------------------------------------------------------------------- reading


def read_bar_columns(path: str | os.PathLike, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Only `columns` of a bar table (file or fragment directory), as numpy arrays with the contract's dtypes.

    `ParquetFile.read` skips the dataset layer `pq.read_table` goes through, which costs more
    than the read itself on small files. Columns are cast to the contract's types as
    `storage.read_ohlcv` does; a column the file lacks is an error naming the file.
    """
    files = fragment_files(path)
    if not files:
        raise ContractError(f"bar table {os.fspath(path)}: no Parquet file or fragment")
    parts = []
    for file in files:  # a table is one file (old layout) or its yearly fragments, in order
        with pq.ParquetFile(file) as parquet:
            present = set(parquet.schema_arrow.names)
            missing = [c for c in columns if c not in present]
            if missing:
                raise ContractError(f"bar file {os.fspath(file)}: missing column(s) {missing}")
            parts.append(parquet.read(columns=list(columns), use_threads=False))
    table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    out = {}
    for name in columns:
        column = table.column(name)
        wanted = OHLCV_SCHEMA.field(name).type
        if column.type != wanted:
            column = column.cast(wanted)
        if name == "timestamp" and column.null_count:
            raise ContractError(f"bar file {os.fspath(path)}: column 'timestamp' has {column.null_count} null(s)")
        out[name] = column.to_numpy()
    return out


# --------------------------------------------------------------------------- the kernel


def _floats(values: pd.Series | np.ndarray) -> np.ndarray:
    return values.to_numpy("float64") if isinstance(values, pd.Series) else np.asarray(values, dtype="float64")


def _close_to_close_returns(ts: np.ndarray, columns: Columns) -> np.ndarray:
    """close / previous bar's close - 1, across a gap too (booked on the day trading resumes)."""
    close = _floats(columns["close"])
    out = np.full(close.shape, np.nan)
    if close.size > 1:
        out[1:] = close[1:] / close[:-1] - 1.0
    return out


def _traded_value(ts: np.ndarray, columns: Columns) -> np.ndarray:
    return _floats(columns["close"]) * _floats(columns["volume"])


def _panel(
    columns: Mapping[str, Columns],
    values: Callable[[np.ndarray, Columns], np.ndarray],
    check: Callable[[str, Columns], None] | None = None,
) -> pd.DataFrame:
    """date x symbol frame of `values(timestamps, columns)`: rows the union of all bar days, sorted."""
    symbols, days, series = [], [], []
    for name in sorted(columns):
        symbol = str(SymbolId.parse(name, where="bars mapping"))
        cols = columns[name]
        if check is not None:
            check(symbol, cols)
        stamps = cols["timestamp"]
        ts = _checked_timestamps(symbol, stamps.to_numpy() if isinstance(stamps, pd.Series) else np.asarray(stamps))
        symbols.append(symbol)
        days.append(ts // DAY_MS)  # exact: every timestamp is at 00:00 UTC
        series.append(np.asarray(values(ts, cols), dtype="float64"))
    if not symbols:
        return pd.DataFrame(index=pd.DatetimeIndex([], name=DATE_INDEX_NAME), dtype="float64")
    # The union of bar days as a bitmap over the covered span of days (a few thousand entries),
    # then each symbol's values scattered into its column of one preallocated array.
    first = min((int(d[0]) for d in days if d.size), default=0)
    last = max((int(d[-1]) for d in days if d.size), default=-1)
    present = np.zeros(last - first + 1, dtype=bool)
    for d in days:
        present[d - first] = True
    row_of_day = np.cumsum(present) - 1
    union = np.flatnonzero(present) + first
    matrix = np.full((len(symbols), union.size), np.nan)  # symbol-major: each symbol fills one contiguous row
    for j, (d, v) in enumerate(zip(days, series)):
        matrix[j, row_of_day[d - first]] = v
    index = pd.DatetimeIndex((union * DAY_MS).astype("datetime64[ms]"), name=DATE_INDEX_NAME).as_unit("ns")
    return pd.DataFrame(matrix.T, index=index, columns=pd.Index(symbols), copy=False)


def _has_panel_columns(symbol: str, frame: pd.DataFrame) -> None:
    missing = [c for c in PANEL_COLUMNS if c not in frame.columns]
    if missing:
        raise ContractError(f"bars of {symbol}: missing column(s) {missing}")


def _checked_timestamps(symbol: str, ts: np.ndarray) -> np.ndarray:
    if ts.dtype != np.dtype("int64"):
        raise ContractError(f"bars of {symbol}: column 'timestamp' must be int64 ms, got {ts.dtype}")
    if np.any(ts % DAY_MS != 0):
        raise ContractError(f"bars of {symbol}: timestamp not at 00:00 UTC at row {int(np.argmax(ts % DAY_MS != 0))}")
    if ts.size > 1 and np.any(np.diff(ts) <= 0):
        row = int(np.argmax(np.diff(ts) <= 0)) + 1
        raise ContractError(f"bars of {symbol}: timestamps not strictly increasing at row {row}")
    return ts
