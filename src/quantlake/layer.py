"""One abstraction for every stored table of the Data Cycle: a layer of fragmented Parquet tables.

A layer is a folder of tables. Each table is a *directory dataset* named like the file it used
to be (`BINANCE_BTCUSDT_1d.parquet/`), holding one immutable fragment per period:

    {root}/{EXCHANGE}_{SYMBOL}_1d.parquet/2020-2025.parquet   bars, quarantine, repairs: the
    {root}/{EXCHANGE}_{SYMBOL}_1d.parquet/2026-Q4.parquet     closed years, then the last year by quarter
    {root}/tv_technicals_1d.parquet/2026-10.parquet        the long feature table: per month

A new day only rewrites the fragment of its own period; closed periods keep their bytes, so
DVC (which deduplicates whole files) stores a version for what changed. Any Parquet reader
reads a table whole: `pd.read_parquet(path)` / `pq.read_table(path, columns=..., filters=...)`.
A table still in the old layout (one file) reads the same way and is converted by `migrate`.

The layer owns: paths, the fragment layout, reading (only some columns, rows or periods),
write-if-changed, atomic commit (each fragment is written atomically; an intent record names
the fragments a commit is about to write, so an interrupted commit is told from tampering),
and the removal of temp files a killed writer left behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .contracts import QuantlakeError
from .storage import atomic_write_bytes, atomic_write_files, atomic_write_json, read_json, sha256_bytes, sha256_file, table_to_parquet_bytes

SUFFIX = ".parquet"
PERIODS = ("year", "month")
INTENTS = ".intents"  # per-table intent records of a commit in progress


class LayerError(QuantlakeError):
    """A table of a layer cannot be read or written; the message names the file."""


def period_keys(timestamps: np.ndarray, period: str) -> np.ndarray:
    """The fragment key of each timestamp (ms since epoch, UTC).

    `month`: '2025-11'. `year` (bar tables): the closed years of the table in one fragment
    ('2020-2025') and its last year by quarter ('2026-Q1' ... '2026-Q4'). A new day rewrites
    one quarter; when the next year's first bar arrives, the closed history is rewritten once
    with the finished year in it. A table is 2-5 files, which keeps file counts and the
    per-file cost of readers low.
    """
    ts = np.asarray(timestamps, dtype="int64").astype("datetime64[ms]")
    if period == "month":
        return ts.astype("datetime64[M]").astype(str)
    if not ts.size:
        return np.array([], dtype="<U1")
    years = ts.astype("datetime64[Y]")
    last_year = years.max()
    last = years == last_year
    closed = f"{years[~last].min()}-{last_year - 1}" if not last.all() else ""
    labels = np.array([*(f"{last_year}-Q{q}" for q in (1, 2, 3, 4)), closed])  # a label per key, not per row
    code = np.full(ts.size, 4)
    code[last] = (ts[last].astype("datetime64[M]").astype("int64") % 12) // 3
    return labels[code]


def key_bounds(key: str) -> tuple[int, int]:
    """[first ms, last ms] a fragment key ('2020-2025', '2025-Q3', '2025-11', '2025') covers."""
    if "-Q" in key:
        year, q = key.split("-Q")
        start = np.datetime64(f"{year}-{3 * int(q) - 2:02d}", "M")
        end = start + 3
    elif len(key) == 9 and key[4] == "-":  # closed years
        start = np.datetime64(key[:4], "Y").astype("datetime64[M]")
        end = np.datetime64(key[5:], "Y").astype("datetime64[M]") + 12
    elif len(key) > 4:
        start = np.datetime64(key, "M")
        end = start + 1
    else:
        start = np.datetime64(key, "Y").astype("datetime64[M]")
        end = start + 12
    return int(start.astype("datetime64[ms]").astype("int64")), int(end.astype("datetime64[ms]").astype("int64")) - 1


def table_digest(fragments: dict[str, str]) -> str:
    """One sha256 for a whole table: over its sorted `key:sha256` lines (the catalog's `sha256`)."""
    text = "".join(f"{k}:{v}\n" for k, v in sorted(fragments.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def fragment_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet files of a table, in key order: the file itself (old layout) or its fragments."""
    return [Path(p) for p in fragment_paths(path)]


def fragment_paths(path: str | os.PathLike) -> list[str]:
    """`fragment_files` as strings, from one `os.scandir` (no stat, no Path per file): a
    third of the cost, which counts when a panel reads thousands of tables."""
    path = os.fspath(path)
    try:
        with os.scandir(path) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(SUFFIX) and not e.name.startswith((".", "_")))
    except NotADirectoryError:
        return [path]  # the old layout: the table is one file
    except FileNotFoundError:
        return []
    return [os.path.join(path, name) for name in names]


def table_hashes(path: str | os.PathLike) -> dict[str, str]:
    """{key: sha256} of a table's fragments ({} for a missing table or an old-layout file)."""
    path = Path(path)
    return {} if not path.is_dir() else {f.name[: -len(SUFFIX)]: sha256_file(f) for f in fragment_files(path)}


def table_sha256(path: str | os.PathLike) -> str:
    """`table_digest` of the table at `path` as it is on disk."""
    return table_digest(table_hashes(path))


def read_file(path: str | os.PathLike, columns: Sequence[str]) -> pa.Table:
    """`columns` of one Parquet file, read the cheap way for small files (see `read_columns`)."""
    with pa.OSFile(os.fspath(path)) as source:
        return pq.ParquetFile(source, pre_buffer=False).read(columns=list(columns), use_threads=False)


def read_columns(path: str | os.PathLike, columns: Sequence[str]) -> pa.Table:
    """Only `columns` of a table (file or directory), fragments concatenated in key order.

    `ParquetFile.read` skips the dataset layer `pq.read_table` goes through, which costs more
    than the read itself on small files (the returns stage reads thousands of them). Opening
    the file ourselves skips pyarrow's filesystem resolution, and reading without pre-buffering
    skips its read-ahead: on these small files both cost more than they save (0.55x the CPU
    of `pq.ParquetFile(path).read` on the 5,000 bar fragments of 1,000 symbols).
    """
    parts = [read_file(f, columns) for f in fragment_paths(path)]
    if not parts:
        raise LayerError(f"{os.fspath(path)}: no such table (no Parquet file or fragment)")
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


@dataclass(frozen=True)
class Layer:
    """A folder of tables with one schema, fragmented by `period` (see module docstring)."""

    root: Path
    schema: pa.Schema
    period: str = "year"
    sort_by: tuple[str, ...] = ("timestamp",)
    dictionary: tuple[str, ...] | None = None  # the columns to dictionary-encode (None: all)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.period not in PERIODS:
            raise LayerError(f"layer {self.root}: period {self.period!r} not in {PERIODS}")

    # -- paths -----------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.root / name

    def names(self) -> list[str]:
        """Every table of the layer (directory datasets and old-layout files)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith((".", "_")))

    def exists(self, name: str) -> bool:
        return bool(fragment_files(self.path(name)))

    def is_legacy(self, name: str) -> bool:
        return self.path(name).is_file()

    def fragments(self, name: str) -> dict[str, Path]:
        """{key: fragment path}; empty for a missing table or one in the old layout."""
        path = self.path(name)
        return {} if path.is_file() else {f.name[: -len(SUFFIX)]: f for f in fragment_files(path)}

    def hashes(self, name: str) -> dict[str, str]:
        """{key: sha256 of the fragment's bytes} as they are on disk."""
        return table_hashes(self.path(name))

    # -- reading ---------------------------------------------------------------------------

    def read_table(self, name: str, columns: Sequence[str] | None = None, filters=None, start: int | None = None, end: int | None = None) -> pa.Table | None:
        """The table (None when absent), only `columns`, rows matching pyarrow `filters`, and
        timestamps in [start, end] (ms; fragments outside the range are not opened)."""
        path = self.path(name)
        files = fragment_files(path)
        if not files:
            return None
        if path.is_dir() and (start is not None or end is not None):
            lo, hi = (-(2**62) if start is None else start), (2**62 if end is None else end)
            files = [f for f in files if _overlaps(key_bounds(f.name[: -len(SUFFIX)]), lo, hi)]
        schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        if not files:
            return schema.empty_table()
        rows = list(filters or [])
        if start is not None:
            rows.append(("timestamp", ">=", int(start)))
        if end is not None:
            rows.append(("timestamp", "<=", int(end)))
        try:
            if not rows:  # whole fragments: skip the dataset layer (it costs more than the read)
                table = _read_files(files, schema)
                if table is not None:
                    return table
            table = pq.read_table([str(f) for f in files], columns=list(schema.names), filters=rows or None, schema=self.schema)
        except (OSError, pa.ArrowException) as exc:
            raise LayerError(f"{path}: unreadable Parquet ({type(exc).__name__}: {exc})") from exc
        return table.select(schema.names)

    def read(self, name: str, columns: Sequence[str] | None = None, filters=None, start: int | None = None, end: int | None = None) -> pd.DataFrame | None:
        table = self.read_table(name, columns, filters, start, end)
        return None if table is None else table.to_pandas()

    # -- writing ---------------------------------------------------------------------------

    def encode(self, frame: pd.DataFrame) -> dict[str, bytes]:
        """{key: deterministic Parquet bytes} of `frame` split by period (pure)."""
        if frame.empty:
            return {}
        ts = frame["timestamp"].to_numpy()
        if self.sort_by != ("timestamp",) or (np.diff(ts) < 0).any():  # a stable sort of sorted rows changes nothing
            frame = frame.sort_values(list(self.sort_by), kind="stable").reset_index(drop=True)
            ts = frame["timestamp"].to_numpy()
        keys = period_keys(ts, self.period)
        table = _arrow_table(frame, self.schema)
        if (np.diff(ts) >= 0).all():  # sorted by timestamp: each period's rows are one run
            bounds = [0, *(np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist(), len(keys)]
            parts = {str(keys[a]): table.slice(a, b - a) for a, b in zip(bounds, bounds[1:])}
        else:  # other sort orders: select each period's rows by mask
            parts = {key: table.take(pa.array(np.flatnonzero(keys == key))) for key in set(keys.tolist())}
        return {key: table_to_parquet_bytes(parts[key], dictionary=self.dictionary) for key in sorted(parts)}

    def write(self, name: str, frame: pd.DataFrame, *, known: dict[str, str] | None = None) -> dict[str, str]:
        """Make table `name` hold exactly `frame` (see `commit`)."""
        return self.commit(name, self.encode(frame), known=known)

    def commit(self, name: str, parts: dict[str, bytes], *, known: dict[str, str] | None = None, only: Iterable[str] | None = None) -> dict[str, str]:
        """Write the fragments whose bytes changed and drop the keys `parts` no longer holds.

        `known` is the bookkeeping's {key: sha256} of the table (skips hashing the files);
        `only` limits the drop to those keys (a partial update). Before the first byte is
        written, an intent record names every fragment the commit writes; `clear_intent`
        removes it once the caller's bookkeeping records the result. Returns {key: sha256}.
        """
        path = self.path(name)
        if path.is_file():
            self.migrate_table(name)
        current = dict(known) if known is not None else self.hashes(name)
        on_disk = self.fragments(name)
        wanted = {k: sha256_bytes(v) for k, v in parts.items()}
        scope = set(on_disk) if only is None else set(only) & set(on_disk)
        stale = sorted(k for k in scope if k not in parts)
        todo = {k: v for k, v in parts.items() if k not in on_disk or current.get(k) != wanted[k]}
        if todo or stale:
            self.write_intent(name, wanted, complete=only is None)
        atomic_write_files(path, {f"{key}{SUFFIX}": data for key, data in sorted(todo.items())})
        for key in stale:
            on_disk[key].unlink(missing_ok=True)
        if path.is_dir() and not fragment_files(path):
            shutil.rmtree(path)
        result = {k: v for k, v in current.items() if k in on_disk and k not in stale and k not in parts} if only is not None else {}
        result.update(wanted)
        return dict(sorted(result.items()))

    def remove(self, name: str) -> None:
        path = self.path(name)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    # -- intents, temp files, migration -------------------------------------------------------

    def intent_path(self, name: str) -> Path:
        return self.root / INTENTS / f"{name}.json"

    def write_intent(self, name: str, fragments: dict[str, str], *, complete: bool) -> None:
        """Announce a commit: the fragments it writes (`complete`: and that no other key stays)."""
        atomic_write_json(self.intent_path(name), {"table": name, "fragments": fragments, "complete": complete})

    def read_intent(self, name: str) -> dict:
        path = self.intent_path(name)
        try:
            doc = read_json(path) if path.exists() else {}
            return {"fragments": dict(doc.get("fragments") or {}), "complete": bool(doc.get("complete"))}
        except (OSError, ValueError, AttributeError, TypeError):
            return {"fragments": {}, "complete": False}

    def explains(self, name: str, recorded: dict[str, str], on_disk: dict[str, str]) -> bool:
        """Whether an interrupted commit explains every difference between the bookkeeping
        (`recorded`) and the fragments `on_disk`: each differing fragment on disk is one the
        intent announced, and each recorded one missing was dropped by a complete commit."""
        intent = self.read_intent(name)
        announced = intent["fragments"]
        for key in set(recorded) | set(on_disk):
            if recorded.get(key) == on_disk.get(key):
                continue
            if key in on_disk and announced.get(key) != on_disk[key]:
                return False
            if key not in on_disk and not (intent["complete"] and key not in announced):
                return False
        return True

    def clear_intents(self, names: Iterable[str] | None = None) -> None:
        """Drop the intent records of tables `names` (default: every table's)."""
        if names is None:
            shutil.rmtree(self.root / INTENTS, ignore_errors=True)
            return
        for name in names:
            self.intent_path(name).unlink(missing_ok=True)

    def remove_temp_files(self) -> int:
        """Delete temp files a killed writer left behind (call with the layer's lock held)."""
        n = 0
        if not self.root.is_dir():
            return 0
        for folder in [self.root, *(self.path(name) for name in self.names())]:
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                    n += 1
        return n

    def migrate_table(self, name: str) -> bool:
        """Convert an old-layout table (one file) to fragments; the rows stay exactly the same."""
        path = self.path(name)
        if not path.is_file():
            return False
        frame = pq.read_table(path, schema=self.schema).to_pandas()
        staging = self.root / f".{name}.migrate"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for key, data in self.encode(frame).items():
            atomic_write_bytes(staging / f"{key}{SUFFIX}", data)
        aside = self.root / f".{name}.old"
        os.replace(path, aside)
        os.replace(staging, path)
        aside.unlink()
        return True

    def migrate(self) -> list[str]:
        """Convert every old-layout table of the layer; returns the names converted."""
        return [name for name in self.names() if self.migrate_table(name)]


def _read_files(files: Sequence[Path], schema: pa.Schema) -> pa.Table | None:
    """`schema`'s columns of `files`, concatenated, read with `ParquetFile.read` (no dataset
    layer: ~2x faster on the small fragments of a bar table); None when a file's types differ
    from `schema` (the caller then reads through the dataset layer, which casts)."""
    parts = []
    for f in files:
        with pq.ParquetFile(f) as parquet:
            if not set(schema.names) <= set(parquet.schema_arrow.names):
                return None
            part = parquet.read(columns=list(schema.names), use_threads=False)
        if part.schema.remove_metadata() != schema.remove_metadata():
            return None
        parts.append(part)
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def _arrow_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """`schema`'s columns of `frame` as an Arrow table, as `Table.from_pandas` makes it (NaN
    is null), without its pandas bookkeeping when every column is a plain number (8x faster)."""
    columns = [frame[name] for name in schema.names]
    if not all(column.dtype.kind in "if" for column in columns):
        return pa.Table.from_pandas(frame[list(schema.names)], schema=schema, preserve_index=False)
    return pa.Table.from_arrays([pa.array(c.to_numpy(), type=f.type, from_pandas=True) for c, f in zip(columns, schema)], schema=schema)


def _overlaps(bounds: tuple[int, int], lo: int, hi: int) -> bool:
    return bounds[1] >= lo and bounds[0] <= hi
