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
from ..layer import read_file
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
        """The index of the rows of `files` (Parquet fragments of the feature table, in order).

        Each fragment is read and copied into arrays allocated once for all the rows (the
        row counts come from the footers): no table, frame or list of parts of the whole.
        """
        counts = [pq.ParquetFile(path).metadata.num_rows for path in files]
        days, codes = np.empty(sum(counts), "int64"), np.empty(sum(counts), "int32")
        values = np.empty((sum(counts), len(RATING_COLUMNS)))
        names: dict[str, int] = {}  # first seen order; renumbered by name below
        at = 0
        for path, n in zip(files, counts):
            table = read_file(path, RATING_SOURCE_COLUMNS)
            rows = slice(at, at + n)
            days[rows] = table.column("timestamp").to_numpy()
            for j, c in enumerate(RATING_COLUMNS.values()):
                values[rows, j] = table.column(c).to_numpy()  # a null is NaN, as in the frame
            symbols = pc.dictionary_encode(table.column("symbol").combine_chunks().cast(pa.string()))
            local = np.array([names.setdefault(s, len(names)) for s in symbols.dictionary.to_pylist()] or [0], dtype="int32")
            index = symbols.indices
            codes[rows] = np.where(index.is_valid().to_numpy(zero_copy_only=False), local[index.fill_null(0).to_numpy()], -1)
            at += n
        ordered = sorted(names)
        rank = np.empty(len(names) + 1, dtype="int32")
        rank[[names[s] for s in ordered]] = np.arange(len(ordered), dtype="int32")
        rank[-1] = -1  # code -1 (no symbol) stays -1
        out = cls.__new__(cls)
        out._index(days, rank[codes], np.array(ordered, dtype=object), values)
        return out

    def _index(self, days: np.ndarray, codes: np.ndarray, names: np.ndarray, values: np.ndarray) -> None:
        """Rows of symbol code c (in `names` order; -1: no symbol) sorted by day, stably.

        One int64 key (symbol, day) is sorted (stable: of two rows for one day the later one in
        the table comes last) and kept for the searches; the values are permuted a column at a
        time (the peak is one column, not a second copy of the table).
        """
        self.rows, self.names = int(days.size), names
        known = codes >= 0
        if not known.all():
            days, codes, values = days[known], codes[known], values[known]
        self.origin, self.span = (int(days.min()), int(days.max() - days.min()) + 2) if days.size else (0, 2)
        key = codes.astype("int64") * self.span + (days - self.origin)
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        del key
        for j in range(values.shape[1]):
            values[:, j] = values[order, j]
        self.values = values
        # rows of symbol c: [first[c], first[c + 1])
        self.first = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(names)))].astype("int64")

    def __len__(self) -> int:
        return self.rows

    def latest(self, start: pd.Timestamp, as_of: pd.Timestamp) -> tuple[list[str], np.ndarray]:
        """(symbols in name order, their ratings as rows in `RATING_COLUMNS` order)."""
        if not self.key.size:
            return [], np.empty((0, len(RATING_COLUMNS)))
        lo_ms, hi_ms = start.value // 1_000_000, as_of.value // 1_000_000
        base = np.arange(len(self.names), dtype="int64") * self.span
        # offsets clipped to [-1, span - 2] stay inside each symbol's key range
        last = np.searchsorted(self.key, base + min(max(hi_ms - self.origin, -1), self.span - 2), side="right") - 1
        day = self.key[np.maximum(last, 0)] - base + self.origin  # the found row's day (when in the symbol's rows)
        have = (last >= self.first[:-1]) & (day >= lo_ms)
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
