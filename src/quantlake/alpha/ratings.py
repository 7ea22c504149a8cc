"""Each symbol's latest technical rating at a date, from the ratings table indexed once.

The backtest asks for the ratings at every rebalance; the table holds every rating day of
every symbol (10 M rows at 5,000 symbols). `RatingsTable` sorts it once by (symbol, day) -
stably, so of two rows for one day the later one in the table wins, as before - and then
answers each date with one vectorised binary search (a sorted key per symbol and day).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..contracts import ContractError
from .sections import RATING_COLUMNS

RATING_SOURCE_COLUMNS = ("timestamp", "symbol", *RATING_COLUMNS.values())


class RatingsTable:
    """`latest(start, as_of)`: each symbol's last rating dated in [start, as_of].

    `RatingsTable(frame)` indexes a ratings frame (`RATING_SOURCE_COLUMNS`);
    `RatingsTable.read(files)` reads the feature table's fragments one at a time into the
    same index, never holding the table itself (the backtest's peak memory at 5,000 symbols).
    """

    def __init__(self, ratings: pd.DataFrame | None = None):
        ratings = ratings if ratings is not None else pd.DataFrame(columns=list(RATING_SOURCE_COLUMNS))
        if len(ratings):
            missing = [c for c in RATING_SOURCE_COLUMNS if c not in ratings.columns]
            if missing:
                raise ContractError(f"technical ratings table: missing column(s) {missing}")
            codes, names = _symbol_codes(ratings["symbol"], np.arange(len(ratings)))  # codes in name order
            values = np.column_stack([ratings[c].to_numpy("float64") for c in RATING_COLUMNS.values()])
            self._index(ratings["timestamp"].to_numpy("int64"), codes, names, values)
        else:
            self._index(np.empty(0, "int64"), np.empty(0, "int64"), np.empty(0, dtype=object), np.empty((0, len(RATING_COLUMNS))))

    @classmethod
    def read(cls, files: list[str | Path]) -> "RatingsTable":
        """The index of the rows of `files` (Parquet fragments of the feature table, in order)."""
        parts, names = [], set()
        for path in files:
            table = pq.ParquetFile(path).read(columns=list(RATING_SOURCE_COLUMNS), use_threads=False)
            symbols = table.column("symbol").combine_chunks().cast(pa.string())
            values = np.column_stack([table.column(c).to_numpy().astype("float64", copy=False) for c in RATING_COLUMNS.values()])
            parts.append((table.column("timestamp").to_numpy().astype("int64", copy=False), symbols, values))
            names.update(pc.unique(symbols.drop_null()).to_pylist())
        ordered = np.array(sorted(names), dtype=object)
        lookup = pa.array(ordered.tolist(), pa.string())
        codes = [pc.fill_null(pc.index_in(symbols, value_set=lookup), -1).to_numpy().astype("int64") for _, symbols, _ in parts]
        out = cls.__new__(cls)
        out._index(np.concatenate([d for d, _, _ in parts] or [np.empty(0, "int64")]), np.concatenate(codes or [np.empty(0, "int64")]),
                   ordered, np.concatenate([v for _, _, v in parts] or [np.empty((0, len(RATING_COLUMNS)))]))
        return out

    def _index(self, days: np.ndarray, codes: np.ndarray, names: np.ndarray, values: np.ndarray) -> None:
        """Rows of symbol code c (in `names` order; -1: no symbol) sorted by day, stably."""
        self.rows, self.names = int(days.size), names
        known = np.flatnonzero(codes >= 0)
        order = known[np.lexsort((days[known], codes[known]))]  # by symbol, then day; stable
        self.days, self.values = days[order], values[order]
        # rows of symbol c: [first[c], first[c + 1]); one sorted key (symbol, day) for all searches
        self.first = np.r_[0, np.cumsum(np.bincount(codes[order], minlength=len(names)))]
        self.origin, self.span = (int(self.days.min()), int(self.days.max() - self.days.min()) + 2) if order.size else (0, 2)
        self.key = codes[order].astype("int64") * self.span + (self.days - self.origin)

    def __len__(self) -> int:
        return self.rows

    def latest(self, start: pd.Timestamp, as_of: pd.Timestamp) -> tuple[list[str], np.ndarray]:
        """(symbols in name order, their ratings as rows in `RATING_COLUMNS` order)."""
        if not self.key.size:
            return [], np.empty((0, len(RATING_COLUMNS)))
        lo_ms, hi_ms = start.value // 1_000_000, as_of.value // 1_000_000
        offset = min(max(hi_ms - self.origin, -1), self.span - 2)  # stays inside each symbol's key range
        targets = np.arange(len(self.names), dtype="int64") * self.span + offset
        last = np.searchsorted(self.key, targets, side="right") - 1  # each symbol's last day <= as_of
        have = (last >= self.first[:-1]) & (self.days[np.maximum(last, 0)] >= lo_ms)
        return [str(n) for n in self.names[have]], self.values[last[have]]


def _symbol_codes(symbol: pd.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code per row of `rows`, names): codes number the names in sorted order, -1 for a missing one.

    A dictionary-encoded column (`Snapshot.features(symbol_category=True)`) is read through its
    integer codes: the backtest's table holds every rating day of every symbol, and turning
    it into one Python string per row at each rebalance cost more than the selection itself.
    """
    if isinstance(symbol.dtype, pd.CategoricalDtype):
        names = np.asarray(symbol.cat.categories, dtype=object)
        by_name = np.argsort(names.astype(str), kind="stable")
        rank = np.empty(names.size, dtype="int64")
        rank[by_name] = np.arange(names.size)
        raw = symbol.cat.codes.to_numpy()[rows]
        return np.where(raw >= 0, rank[np.maximum(raw, 0)], -1), names[by_name]
    return pd.factorize(symbol.take(rows).to_numpy(), sort=True)
