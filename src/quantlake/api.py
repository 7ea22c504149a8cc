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
        table = self._read(self._bar_path(sym), list(OHLCV_COLUMNS), _date_filter(start, end), what=f"bars of {sym}")
        frame = _cast(table, OHLCV_SCHEMA).to_pandas()
        frame = _sorted(frame, ["timestamp"])
        frame.index = _days(frame.pop("timestamp"))
        return frame

    def closes(self, symbols: Iterable[str] | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Closes as a date x symbol frame (NaN where a symbol has no bar); default: the certified symbols."""
        from .alpha.returns import close_matrix

        names = sorted(self.certified.get("symbols") or {}) if symbols is None else [self._entry_symbol(s) for s in _as_list(symbols)]
        flt = _date_filter(start, end)
        columns = {}
        for sym in names:
            table = _cast(self._read(self._bar_path(sym), ["timestamp", "close"], flt, what=f"bars of {sym}"), OHLCV_SCHEMA)
            ts = table.column("timestamp").to_numpy()
            order = np.argsort(ts, kind="stable")
            columns[sym] = {"timestamp": ts[order], "close": table.column("close").to_numpy()[order]}
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
        frame = _sorted(frame, ["timestamp", "symbol"])
        frame.insert(0, "date", _days(frame.pop("timestamp")))
        return frame.set_index(["date", "symbol"])

    def universe(self, date: Any, scanner: str | None = None) -> list[str]:
        """The symbols in the point-in-time universe on `date` (of one `scanner`, or of any).

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
            frame = frame[frame["scanner"] == scanner]
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
        if entry.get("status") == "toxic" or not entry.get("file"):
            reasons = "; ".join(entry.get("reasons") or []) or "no reason recorded"
            raise LakehouseError(f"{sym} is {entry.get('status')} in {self.label}: the lakehouse holds no bars for it ({reasons})")
        return self._path(entry["file"])

    def _dataset(self, path: str, *, what: str) -> ds.Dataset:
        """A file, or a directory of `.parquet` fragments (hidden and `_` files skipped), as one dataset."""
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise LakehouseError(f"{self.label}: {what} is missing ({path})")
        if info.type == pafs.FileType.Directory:
            found = self.fs.get_file_info(pafs.FileSelector(path))
            files = sorted(
                f.path for f in found
                if f.type == pafs.FileType.File and f.base_name.endswith(".parquet") and not f.base_name.startswith((".", "_"))
            )
            if not files:
                raise LakehouseError(f"{self.label}: {what}: directory {path} holds no .parquet fragment")
        else:
            files = [path]
        try:
            return ds.dataset(files, format="parquet", filesystem=self.fs)
        except (pa.ArrowInvalid, OSError) as exc:
            raise LakehouseError(f"{self.label}: {what}: cannot read {path}: {exc}") from exc

    def _read(self, path: str, columns: list[str], flt: ds.Expression | None, *, what: str) -> pa.Table:
        dataset = self._dataset(path, what=what)
        missing = [c for c in columns if c not in dataset.schema.names]
        if missing:
            raise LakehouseError(f"{self.label}: {what}: {path} has no column(s) {missing}")
        return dataset.to_table(columns=columns, filter=flt)


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


def _date_filter(start: Any, end: Any) -> ds.Expression | None:
    """A pyarrow filter on `timestamp` (ms) for the UTC days start..end, both included."""
    flt = None
    if start is not None:
        flt = ds.field("timestamp") >= date_to_ms(parse_date(start, field="start"))
    if end is not None:
        last = ds.field("timestamp") < date_to_ms(parse_date(end, field="end")) + DAY_MS
        flt = last if flt is None else flt & last
    if start is not None and end is not None and parse_date(end, field="end") < parse_date(start, field="start"):
        raise LakehouseError(f"end {end} is before start {start}")
    return flt


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    fields = [schema.field(n) for n in table.column_names]
    return table.cast(pa.schema(fields))


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Fragments are read in name order; make the row order the contract's whatever they hold."""
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


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
