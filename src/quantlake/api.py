"""Reading the lakehouse from Python: `quantlake.open_lakehouse(repo=".", rev=None)`.

    >>> import quantlake
    >>> lh = quantlake.open_lakehouse(".")                          # the workspace
    >>> old = quantlake.open_lakehouse(".", rev="lakehouse/2026-11-20")  # a version, no checkout
    >>> lh.closes(start="2026-01-01")                               # date x symbol, NaN = no bar

With `rev=None` the reader opens `data/lakehouse/` in the work tree of `repo`. With a git
revision (a tag such as `lakehouse/2026-11-20`, a commit, a branch) it reads that version
through DVC's filesystem (`dvc.fs.DVCFileSystem`): `catalog.json` and the Parquet come from
the DVC cache, or from the remote when the cache lacks them; the work tree is not touched.

Every table may be stored as one Parquet file or as a directory of `.parquet` fragments
under the same name (`BINANCE_BTCUSDT_1d.parquet/2025.parquet`); both read the same. Reads
ask pyarrow only for the columns and rows requested (projection, and filters that skip row
groups by their statistics). Dates are UTC calendar days, labelled as tz-naive midnight
timestamps (`datetime64[ns]`, index name `date`), as in the Alpha Cycle's panels.

Nothing here imports scikit-learn, scipy, matplotlib or DVC until it is needed (`rev=`, or
`features()` which reads the feature table's name from the feature stage).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .contracts import DAY_MS, OHLCV_COLUMNS, OHLCV_SCHEMA, STATUSES, QuantlakeError, SymbolId, date_to_ms, parse_date
from .lakehouse import CATALOG, CERTIFIED, Layers

UNIVERSE_FILE = "universe.parquet"
FEATURES_DIR = "features"


class LakehouseError(QuantlakeError):
    """The lakehouse (or the version asked for) cannot answer: the message says what and where."""


# --------------------------------------------------------------------------- opening


def open_lakehouse(repo: str | os.PathLike = ".", rev: str | None = None) -> "Lakehouse":
    """The lakehouse of `repo`: its work tree (`rev=None`) or the version at git revision `rev`.

    `repo` is the repository root (a local path; with `rev`, any URL DVC accepts). Raises
    `LakehouseError` when the revision is unknown or holds no `data/lakehouse/catalog.json`.
    """
    relative = Layers().lakehouse.as_posix()
    if rev is None:
        root = os.path.abspath(os.path.join(os.fspath(repo), relative))
        return Lakehouse(root, label=f"{os.fspath(repo)} (workspace)")
    if not isinstance(rev, str) or not rev:
        raise LakehouseError(f"rev must be a git revision (tag, commit, branch), got {rev!r}")
    from dvc.exceptions import DvcException
    from dvc.fs import DVCFileSystem

    where = os.fspath(repo)
    try:
        fs = DVCFileSystem(repo=where, rev=rev).fs  # the fsspec filesystem pyarrow reads through
        fs.info("/")  # resolves the revision now
    except DvcException as exc:
        raise LakehouseError(f"cannot open revision {rev!r} of {where}: {exc}") from exc
    return Lakehouse("/" + relative, filesystem=fs, label=f"{where}@{rev}", hint="(a revision before the first lakehouse version?)")


class Lakehouse:
    """One version of the Golden Copy, read-only. Build it with `open_lakehouse`.

    `root` is the lakehouse folder on `filesystem` (a pyarrow or fsspec filesystem; default:
    the local disk).
    """

    def __init__(
        self, root: str, *, filesystem: Any = None, label: str | None = None, hint: str = "(run the Data Cycle, `dvc pull`, or pass rev=)"
    ) -> None:
        if filesystem is None:
            filesystem = pafs.LocalFileSystem()
        elif not isinstance(filesystem, pafs.FileSystem):
            filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
        self.root = root.rstrip("/") or "/"
        self.fs: pafs.FileSystem = filesystem
        self.label = label or self.root
        self._hint = hint  # said when the catalog is missing
        self.catalog  # fail now, not at the first question, when there is no lakehouse

    def close(self) -> None:
        """Release what a `rev=` reader holds open (DVC's repository handles); idempotent."""
        handler = getattr(self.fs, "handler", None)
        closer = getattr(getattr(handler, "fs", None), "close", None)
        if callable(closer):
            closer()

    def __enter__(self) -> "Lakehouse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Lakehouse {self.label}: as_of {self.as_of}, {len(self.catalog['symbols'])} symbols>"

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    # ------------------------------------------------------------------ documents

    def _json(self, name: str) -> dict:
        path = self._path(name)
        try:
            with self.fs.open_input_stream(path) as fh:
                return json.loads(fh.read())
        except FileNotFoundError as exc:
            raise LakehouseError(f"{self.label}: no {name} at {path} {self._hint}") from exc
        except ValueError as exc:
            raise LakehouseError(f"{self.label}: {path} is not valid JSON: {exc}") from exc

    @functools.cached_property
    def catalog(self) -> dict:
        """`catalog.json`: `as_of` and, per symbol, status, rows, dates, gaps, quarantined, ..."""
        doc = self._json(CATALOG)
        if not isinstance(doc.get("symbols"), dict) or "as_of" not in doc:
            raise LakehouseError(f"{self.label}: {CATALOG} has no `as_of` or `symbols` map")
        return doc

    @functools.cached_property
    def certified(self) -> dict:
        """`certified.json`: the symbols that passed every gate (what the Alpha Cycle reads)."""
        return self._json(CERTIFIED)

    @property
    def as_of(self) -> dt.date:
        """The last closed UTC day this version covers."""
        return parse_date(self.catalog["as_of"], field=f"{CATALOG} as_of")

    def symbols(self, status: str | Iterable[str] | None = None) -> list[str]:
        """Catalogued symbols, sorted; `status` keeps only one or several of ok/stale/degraded/toxic."""
        wanted = status_set(status)
        return sorted(s for s, e in self.catalog["symbols"].items() if wanted is None or e.get("status") in wanted)

    # ------------------------------------------------------------------ tables

    def bars(self, symbol: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        """A symbol's OHLCV bars (float columns), indexed by UTC day (`date`), from `start` to `end`."""
        sym = self._entry_symbol(symbol)
        table = self._read_bars(self._bar_path(sym), list(OHLCV_COLUMNS), _day_range(start, end), what=f"bars of {sym}")
        frame = table.to_pandas()
        frame.index = _days(frame.pop("timestamp"))
        return frame

    def closes(self, symbols: Iterable[str] | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Closes as a date x symbol frame (NaN where a symbol has no bar); default: the certified symbols."""
        from .alpha.returns import close_matrix

        names = sorted(self.certified.get("symbols") or {}) if symbols is None else [self._entry_symbol(s) for s in _as_list(symbols)]
        days = _day_range(start, end)
        columns = {}
        for sym in names:
            table = self._read_bars(self._bar_path(sym), ["timestamp", "close"], days, what=f"bars of {sym}")
            columns[sym] = {"timestamp": table.column("timestamp").to_numpy(), "close": table.column("close").to_numpy()}
        return close_matrix(columns)

    def features(
        self, columns: Iterable[str] | None = None, symbols: Iterable[str] | None = None, start: Any = None, end: Any = None
    ) -> pd.DataFrame:
        """Technical ratings, indexed by (`date`, `symbol`); reads only the columns, symbols and days asked.

        `columns=None` reads every feature column. `.unstack("symbol")` of one column gives the
        date x symbol frame.
        """
        from .data.features import LONG_FILE

        path = self._path(FEATURES_DIR, LONG_FILE)
        dataset = self._dataset(path, what="the feature table")
        available = [c for c in dataset.schema.names if c not in ("timestamp", "symbol")]
        wanted = available if columns is None else _as_list(columns)
        unknown = [c for c in wanted if c not in available]
        if unknown:
            raise LakehouseError(f"{self.label}: feature column(s) {unknown} not in {LONG_FILE} (available: {', '.join(available)})")
        flt = _date_filter(start, end)
        if symbols is not None:
            names = [self._entry_symbol(s) for s in _as_list(symbols)]
            by_symbol = ds.field("symbol").isin(names)
            flt = by_symbol if flt is None else flt & by_symbol
        frame = dataset.to_table(columns=["timestamp", "symbol", *wanted], filter=flt).to_pandas()
        frame = frame.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)  # fragments come in any order
        frame.insert(0, "date", _days(frame.pop("timestamp")))
        return frame.set_index(["date", "symbol"])

    def universe(self, date: Any, scanner: str | Iterable[str] | None = None) -> list[str]:
        """The symbols in the point-in-time universe on `date` (of one or several scanners, or of any).

        Reads `universe.parquet` as membership intervals (`symbol, scanner, start, end`, or
        `from`/`to`; both days included, a null end is open) or as daily rows (`date, symbol`).
        """
        day = pd.Timestamp(parse_date(date, field="universe date"))
        path = self._path(UNIVERSE_FILE)
        frame = self._dataset(path, what="the point-in-time universe").to_table().to_pandas()
        cols = set(frame.columns)
        if scanner is not None:
            if "scanner" not in cols:
                raise LakehouseError(f"{self.label}: {UNIVERSE_FILE} has no `scanner` column")
            frame = frame[frame["scanner"].isin(_as_list(scanner))]
        start_col, end_col = ("start", "end") if {"start", "end"} <= cols else ("from", "to")
        if "symbol" in cols and {start_col, end_col} <= cols:
            start, stop = _day_values(frame[start_col], start_col), _day_values(frame[end_col], end_col)
            member = (start <= day) & (stop.isna() | (day <= stop))
        elif {"symbol", "date"} <= cols:
            member = _day_values(frame["date"], "date") == day
        else:
            raise LakehouseError(
                f"{self.label}: {UNIVERSE_FILE} has columns {sorted(cols)}; expected symbol, start, end "
                "(membership intervals) or symbol, date (daily rows)"
            )
        return sorted(set(frame.loc[member.to_numpy(), "symbol"].astype(str)))

    # ------------------------------------------------------------------ reading

    def _entry_symbol(self, symbol: Any) -> str:
        sym = str(SymbolId.parse(symbol, where="the lakehouse API"))
        if sym not in self.catalog["symbols"]:
            raise LakehouseError(f"{sym} is not in the catalog of {self.label} (as_of {self.catalog['as_of']})")
        return sym

    def _bar_path(self, sym: str) -> str:
        entry = self.catalog["symbols"][sym]
        if entry.get("status") == "toxic" or ("file" in entry and entry["file"] is None):
            reasons = "; ".join(entry.get("reasons") or []) or "no reason recorded"
            raise LakehouseError(f"{sym} is {entry.get('status')} in {self.label}: the lakehouse holds no bars for it ({reasons})")
        return self._path(SymbolId.parse(sym).filename)  # the contract's name, never a path from a document

    def _files(self, path: str, *, what: str) -> list[str]:
        """A file, or the `.parquet` fragments of a directory (hidden and `_` files skipped)."""
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise LakehouseError(f"{self.label}: {what} is missing ({path})")
        if info.type != pafs.FileType.Directory:
            return [path]
        found = self.fs.get_file_info(pafs.FileSelector(path))
        files = sorted(
            f.path for f in found
            if f.type == pafs.FileType.File and f.base_name.endswith(".parquet") and not f.base_name.startswith((".", "_"))
        )
        if not files:
            raise LakehouseError(f"{self.label}: {what}: directory {path} holds no .parquet fragment")
        return files

    def _dataset(self, path: str, *, what: str) -> ds.Dataset:
        try:
            return ds.dataset(self._files(path, what=what), format="parquet", filesystem=self.fs)
        except (pa.ArrowInvalid, OSError) as exc:
            raise LakehouseError(f"{self.label}: {what}: cannot read {path}: {exc}") from exc

    def _read_bars(self, path: str, columns: list[str], days: tuple[int | None, int | None], *, what: str) -> pa.Table:
        """`columns` of a bar table for the ms range `days` = [lo, hi), as the contract's types.

        Each fragment is read with `ParquetFile` (the dataset layer costs more than the read on
        small files), skipping the row groups whose `timestamp` statistics lie outside `days`.
        """
        tables = []
        for file in self._files(path, what=what):
            with self.fs.open_input_file(file) as fh:
                parquet = pq.ParquetFile(fh)
                missing = [c for c in columns if c not in parquet.schema_arrow.names]
                if missing:
                    raise LakehouseError(f"{self.label}: {what}: {file} has no column(s) {missing}")
                groups = _row_groups(parquet.metadata, days)
                if groups:
                    tables.append(_cast(parquet.read_row_groups(groups, columns=columns, use_threads=False), OHLCV_SCHEMA))
        if not tables:
            return OHLCV_SCHEMA.empty_table().select(columns)
        table = pa.concat_tables(tables)
        ts = table.column("timestamp").to_numpy()
        lo, hi = days
        keep = np.ones(len(ts), dtype=bool)
        if lo is not None:
            keep &= ts >= lo
        if hi is not None:
            keep &= ts < hi
        order = np.flatnonzero(keep)
        order = order[np.argsort(ts[order], kind="stable")]  # fragments may come in any order
        ts = ts[order]
        if ts.size > 1 and np.any(np.diff(ts) == 0):
            raise LakehouseError(f"{self.label}: {what}: day {pd.Timestamp(int(ts[np.argmax(np.diff(ts) == 0)]), unit='ms').date()} is stored twice in {path}")
        return table.take(pa.array(order))


# --------------------------------------------------------------------------- helpers (pure)


def _as_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def status_set(status: str | Iterable[str] | None) -> set[str] | None:
    """One or several statuses as a set (None: no filter); an unknown one is an error naming it."""
    if status is None:
        return None
    wanted = set(_as_list(status))
    bad = sorted(wanted - set(STATUSES))
    if bad:
        raise LakehouseError(f"unknown status {bad}: choose from {', '.join(STATUSES)}")
    return wanted


def _day_range(start: Any, end: Any) -> tuple[int | None, int | None]:
    """The UTC days start..end (both included) as a half-open ms range [lo, hi); None is open."""
    lo = None if start is None else date_to_ms(parse_date(start, field="start"))
    hi = None if end is None else date_to_ms(parse_date(end, field="end")) + DAY_MS
    if lo is not None and hi is not None and hi <= lo:
        raise LakehouseError(f"end {end} is before start {start}")
    return lo, hi


def _date_filter(start: Any, end: Any) -> ds.Expression | None:
    """The same range as a pyarrow filter on `timestamp`."""
    lo, hi = _day_range(start, end)
    terms = ([ds.field("timestamp") >= lo] if lo is not None else []) + ([ds.field("timestamp") < hi] if hi is not None else [])
    return functools.reduce(lambda a, b: a & b, terms) if terms else None


def _row_groups(meta: pq.FileMetaData, days: tuple[int | None, int | None]) -> list[int]:
    """Row groups whose `timestamp` range meets [lo, hi) (all of them when there are no statistics)."""
    lo, hi = days
    index = meta.schema.to_arrow_schema().get_field_index("timestamp")
    groups = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(index).statistics
        if stats is not None and stats.has_min_max and meta.row_group(i).num_rows:
            if (lo is not None and stats.max < lo) or (hi is not None and stats.min >= hi):
                continue
        groups.append(i)
    return groups


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    fields = [schema.field(n) for n in table.column_names]
    return table.cast(pa.schema(fields))


def _days(ms: pd.Series) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ms.to_numpy("int64"), unit="ms"), name="date").as_unit("ns")


def _day_values(values: pd.Series, column: str) -> pd.Series:
    """A column of days (ISO strings, dates, timestamps or int64 ms) as tz-naive UTC midnights."""
    try:
        if pd.api.types.is_integer_dtype(values.dtype):
            out = pd.to_datetime(values, unit="ms")
        else:
            out = pd.to_datetime(values, utc=True).dt.tz_localize(None)
    except (ValueError, TypeError) as exc:
        raise LakehouseError(f"{UNIVERSE_FILE}: column {column!r} does not hold dates: {exc}") from exc
    return out.dt.normalize()
