"""The feature table's month fragments, rebuilt with bounded memory on every core.

A fresh build computes every symbol's rows, and a month fragment holds every symbol: holding
all the rows until the months were written took 11.8 GB at 5,000 symbols. The rows travel
through a spill folder instead, in two passes of a process pool (`data.processes`):

1. `compute_chunk`: the ratings of a chunk of symbols, each symbol's rows from its first dirty
   month on, written to one Arrow IPC file of the spill folder, one record batch per month;
2. `encode_month`: one month's kept rows (its fragment without the replaced symbols) and its
   batches from every spill file, sorted by (symbol, timestamp) and encoded as `Layer.encode`
   would; the caller commits each month as it arrives.

A process then holds one chunk or one month, whatever the universe. Each month's rows are
sorted by a unique key before they are encoded, so neither the chunking nor the number of
processes changes a byte of the table.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import SymbolId
from ..layer import Layer, key_bounds, period_keys
from ..storage import table_to_parquet_bytes
from .technicals import LONG_COLUMNS, rating_columns

LONG_FILE = "tv_technicals_1d.parquet"
LONG_SCHEMA = pa.schema([("timestamp", pa.int64()), ("symbol", pa.string())] + [(c, pa.float64()) for c in LONG_COLUMNS[2:]])
SPILL_DIR = ".spill"  # under the layer's root; a leading dot keeps it out of the table listing
CHUNK_SYMBOLS = 64  # symbols per spill file: ~40 MB of rows per task at 2,500 days
ALL_ROWS = -(2**62)  # a symbol whose every row is replaced (new, rebuilt or removed)


def spill_folder(layer: Layer) -> Path:
    return layer.root / SPILL_DIR


def clear_spill(layer: Layer) -> None:
    """Remove the spill folder (a killed run's leftovers, or this run's when it is done)."""
    shutil.rmtree(spill_folder(layer), ignore_errors=True)


def symbol_rows(sym: str, bars: pd.DataFrame) -> pa.Table:
    """One symbol's feature rows (`technical_ratings` plus `symbol`) as Arrow, sorted by time.

    Built from the arrays (bars are sorted by the contract, so the rows are), without a frame
    in between, and converted as `Layer.encode`'s `from_pandas` converts (NaN becomes null):
    the encoded months are byte-identical to encoding the whole frame at once.
    """
    ts, columns = rating_columns(bars, where=sym)
    arrays = [pa.array(ts.astype(np.int64, copy=False)), pa.array(np.full(ts.size, sym, dtype=object), pa.string())]
    arrays += [pa.array(np.asarray(columns[f.name], dtype=np.float64), f.type, from_pandas=True) for f in list(LONG_SCHEMA)[2:]]
    return pa.Table.from_arrays(arrays, schema=LONG_SCHEMA)


def months_of(table: pa.Table) -> dict[str, pa.Table]:
    """Rows sorted by timestamp (then by symbol within a month, or not) as {month: slice}."""
    if table.num_rows == 0:
        return {}
    keys = period_keys(table.column("timestamp").to_numpy(), "month")
    order = np.argsort(keys, kind="stable")  # already sorted for one symbol: the identity
    if (order != np.arange(order.size)).any():
        table, keys = table.take(pa.array(order)).combine_chunks(), keys[order]
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts, stops = np.r_[0, bounds], np.r_[bounds, len(keys)]
    return {str(keys[a]): table.slice(int(a), int(b - a)) for a, b in zip(starts, stops)}


def encode_rows(layer: Layer, parts: list[pa.Table]) -> dict[str, bytes]:
    """`layer.encode` of one month's rows given as Arrow tables (any order; same bytes)."""
    table = pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else parts[0]
    if table.num_rows == 0:
        return {}
    order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in layer.sort_by])
    table = table.take(order).combine_chunks()
    (key,) = set(period_keys(table.column("timestamp").to_numpy(), layer.period).tolist())
    return {key: table_to_parquet_bytes(table, dictionary=layer.dictionary)}


# --------------------------------------------------------------------------- pass 1: compute


@dataclass(frozen=True)
class ComputeInputs:
    """What every compute task shares: where bars come from and where rows go."""

    read_bars: Callable[[SymbolId], pd.DataFrame]
    spill: Path


@dataclass
class ChunkResult:
    path: str | None = None
    batches: dict[str, int] = field(default_factory=dict)  # month -> record batch number in `path`
    rows: dict[str, int] = field(default_factory=dict)  # symbol -> rows computed
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> one-line error


def compute_chunk(shared: ComputeInputs, item: tuple[int, list[tuple[str, int]]]) -> ChunkResult:
    """Rows of (symbol, from ms) pairs (rows before `from ms` are not dirty), spilled by month.

    One bad symbol fails alone (its message in `failed`); the chunk's other rows are spilled.
    """
    number, todo = item
    result, tables = ChunkResult(), []
    for sym, from_ms in todo:
        try:
            table = symbol_rows(sym, shared.read_bars(SymbolId.parse(sym)))
        except Exception as exc:  # one bad symbol never sinks the batch
            result.failed[sym] = f"{sym}: {type(exc).__name__}: {exc}"
            continue
        result.rows[sym] = table.num_rows
        if from_ms > ALL_ROWS:
            table = table.filter(pc.greater_equal(table.column("timestamp"), pa.scalar(from_ms, pa.int64())))
        if table.num_rows:
            tables.append(table)
    if tables:
        months = months_of(pa.concat_tables(tables).combine_chunks())
        path = shared.spill / f"{number:06d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, LONG_SCHEMA) as writer:
            for i, (month, part) in enumerate(sorted(months.items())):
                writer.write_table(part)
                result.batches[month] = i
        result.path = str(path)
    return result


# --------------------------------------------------------------------------- pass 2: encode


@dataclass(frozen=True)
class MonthInputs:
    """What every month task shares: the table, whose rows are replaced, and the spill index."""

    layer: Layer
    existing: frozenset[str]  # months with a fragment on disk
    replaced_from: dict[str, int]  # symbol -> first ms whose stored rows are replaced
    spilled: dict[str, list[tuple[str, int]]]  # month -> [(spill file, batch number)]


def encode_month(shared: MonthInputs, month: str) -> tuple[str, bytes | None]:
    """(month, its fragment's bytes), or None when the month holds no row any more."""
    lo, hi = key_bounds(month)
    parts = []
    if month in shared.existing:
        old = shared.layer.read_table(LONG_FILE, start=lo, end=hi)
        if old is not None and old.num_rows:
            replaced = pa.array(sorted(s for s, first in shared.replaced_from.items() if first <= lo), pa.string())
            parts.append(old.filter(pc.invert(pc.is_in(old.column("symbol"), value_set=replaced))))
    for path, number in shared.spilled.get(month, []):
        with pa.OSFile(path) as source:  # read, not mapped: the batch outlives the file handle
            parts.append(pa.Table.from_batches([pa.ipc.open_file(source).get_batch(number)]))
    encoded = encode_rows(shared.layer, parts) if parts else {}
    return month, encoded.get(month)


def chunks(todo: list[tuple[str, int]], workers: int) -> list[tuple[int, list[tuple[str, int]]]]:
    """Numbered chunks of at most CHUNK_SYMBOLS, at least ~4 per worker (balance on small runs)."""
    size = max(1, min(CHUNK_SYMBOLS, -(-len(todo) // (4 * max(workers, 1)))))
    return [(i // size, todo[i: i + size]) for i in range(0, len(todo), size)]


def spill_index(results: list[ChunkResult]) -> dict[str, list[tuple[str, int]]]:
    index: dict[str, list[tuple[str, int]]] = {}
    for r in results:
        for month, number in r.batches.items():
            index.setdefault(month, []).append((r.path, number))
    return index


def make_spill(layer: Layer) -> Path:
    clear_spill(layer)
    path = spill_folder(layer)
    os.makedirs(path)
    return path
