"""The point-in-time universe: which symbols each scanner would have picked on each day.

Discovery lists every pair a scanner's static rules admit (any status); this module evaluates
the scanners' time-varying rules at every date t, from the bars dated <= t only:

* listed: the symbol has a bar on or before t; ``listing_days = t - first bar + 1``;
* status at t: ``TRADING`` when it has a bar on one of the last ``halt_after_days`` days up to
  t (t included), else halted/delisted (a scanner listing ``HALT`` or ``BREAK`` keeps those:
  which of the two cannot be known at t from the bars);
* ``traded_value_30d`` at t: the median of ``close * volume`` over the bars of the 30 calendar
  days ending at t (missing days are skipped, not zero); for a halted/delisted symbol, over the
  30 days ending at its last bar;
* ``traded_value_24h``: close * volume of the last bar on or before t;
* rules: status, ``listing_days >= min_listing_days``, ``traded_value_30d >=
  min_traded_value_30d``, then sorted by ``sort_by`` (ties by symbol) and the first ``limit``
  kept.

Everything is computed on dates x symbols matrices (one daily calendar from the first bar to
`as_of`); the value on day t uses rows <= t only, so computing with bars truncated at t gives
the same membership up to t (tests/test_universe.py checks it).

Published by the gate as ``data/lakehouse/universe.parquet``: membership intervals, one row
per uninterrupted run of days a symbol is a member of a scanner, in the spirit of Qlib's
instrument files:

    ==========  ========  =============================================
    symbol      string    ``EXCHANGE:SYMBOL``
    scanner     string    scanner name
    start       date32    first day of membership
    end         date32    last day of membership (inclusive)
    ==========  ========  =============================================

sorted by (scanner, symbol, start); Snappy; key-value metadata ``quantlake.universe`` holds
``as_of`` and the scanner configs (JSON) that produced it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..contracts import DAY_MS, ContractError, QuantlakeError, date_to_ms
from ..storage import atomic_write_bytes, table_to_parquet_bytes
from ..layer import read_columns
from .discovery import ScannerConfig

UNIVERSE_FILE = "universe.parquet"
UNIVERSE_COLUMNS = ("symbol", "scanner", "start", "end")
METADATA_KEY = "quantlake.universe"
TRADED_VALUE_WINDOW_DAYS = 30
ACTIVE = "TRADING"
INACTIVE = frozenset({"HALT", "BREAK"})
_SCHEMA = pa.schema([("symbol", pa.string()), ("scanner", pa.string()), ("start", pa.date32()), ("end", pa.date32())])


class UniverseError(QuantlakeError):
    """A universe file or its inputs break the contract; the message names the file or field."""


@dataclass(frozen=True)
class UniverseSpec:
    """The scanners to evaluate and, per scanner, the symbols its static rules admit."""

    scanners: tuple[ScannerConfig, ...]
    attribution: Mapping[str, frozenset[str]] | None = None  # scanner -> symbols; None: every symbol

    @classmethod
    def from_candidates(cls, doc: dict, *, file: str = "candidates.json") -> "UniverseSpec | None":
        """From the candidates document (discovery's `scanners` and each candidate's `scanners`)."""
        configs = doc.get("scanners") or []
        if not configs:
            return None
        names = {f.name for f in fields(ScannerConfig)}
        scanners = []
        for i, c in enumerate(configs):
            unknown = sorted(set(c) - names)
            if unknown:
                raise UniverseError(f"{file}: scanners[{i}] has unknown key(s) {unknown}")
            scanners.append(ScannerConfig(**c))
        attribution: dict[str, set[str]] = {s.name: set() for s in scanners}
        for i, cand in enumerate(doc.get("candidates") or []):
            # a candidate no scanner claims (a hand-made list) is ingested but in no universe
            for entry in cand.get("scanners") or ([{"scanner": cand["scanner"]}] if cand.get("scanner") else []):
                if entry.get("scanner") not in attribution:
                    raise UniverseError(f"{file}: candidates[{i}] ({cand.get('symbol')}) names unknown scanner {entry.get('scanner')!r}")
                attribution[entry["scanner"]].add(cand["symbol"])
        return cls(tuple(scanners), {k: frozenset(v) for k, v in attribution.items()})


# --------------------------------------------------------------------------- the core (pure)


def traded_value_panel(bars: Mapping[str, pd.DataFrame], as_of: dt.date) -> pd.DataFrame:
    """Dates x symbols ``close * volume`` (NaN: no bar), on a daily calendar ending at `as_of`.

    Columns sorted by symbol; bars after `as_of` are ignored.
    """
    series = {}
    for sym in sorted(bars):
        b = bars[sym]
        missing = {"timestamp", "close", "volume"} - set(b.columns)
        if missing:
            raise UniverseError(f"{sym}: bars lack column(s) {sorted(missing)}")
        series[sym] = (b["timestamp"].to_numpy("int64"), b["close"].to_numpy("float64") * b["volume"].to_numpy("float64"))
    return traded_value_matrix(series, as_of)


def traded_value_matrix(series: Mapping[str, tuple[np.ndarray, np.ndarray]], as_of: dt.date) -> pd.DataFrame:
    """`traded_value_panel` from each symbol's (timestamps in ms, traded values).

    One scatter into a NaN matrix (a reindex per symbol cost 1.5 ms each at 5,000 symbols).
    A timestamp that is not a calendar day's midnight matches no row, as in a reindex.
    """
    end = date_to_ms(as_of)
    kept = {}
    for sym in sorted(series):
        ts, value = series[sym]
        ts, value = np.asarray(ts, dtype="int64"), np.asarray(value, dtype="float64")
        keep = ts <= end
        kept[sym] = (ts[keep], value[keep])
    firsts = [ts[0] for ts, _ in kept.values() if ts.size]
    start = min(firsts) if firsts else end
    calendar = pd.date_range(pd.Timestamp(start, unit="ms"), pd.Timestamp(end, unit="ms"), freq="D", name="date")
    origin = int(calendar[0].value // 1_000_000) if len(calendar) else end
    matrix = np.full((len(calendar), len(kept)), np.nan)
    for j, (ts, value) in enumerate(kept.values()):
        offset = ts - origin
        on_day = (offset % DAY_MS == 0) & (offset >= 0)
        matrix[offset[on_day] // DAY_MS, j] = value[on_day]
    return pd.DataFrame(matrix, index=calendar, columns=list(kept))


@dataclass(frozen=True)
class _State:
    """Per date x symbol facts known at each date (shared by every scanner).

    `listing_days` and `days_since_bar` are meaningful only where `listed`.
    """

    value: np.ndarray  # traded value, NaN where no bar
    listed: np.ndarray  # bool: a bar on or before t
    listing_days: np.ndarray  # int32: t - first bar + 1
    last_row: np.ndarray  # int32: row of the last bar on or before t
    days_since_bar: np.ndarray  # int32: t - last bar on or before t
    median_trailing: np.ndarray  # median traded value over the window ending at t
    median_at_last_bar: np.ndarray  # the same, over the window ending at the last bar <= t


def _state(value: pd.DataFrame) -> _State:
    v = value.to_numpy("float64")
    n = v.shape[0]
    has = ~np.isnan(v)
    rows = np.arange(n, dtype="int32")[:, None]
    listed = np.logical_or.accumulate(has, axis=0) if n else has
    first = np.where(has.any(axis=0), has.argmax(axis=0), n).astype("int32")
    last_row = np.maximum.accumulate(np.where(has, rows, np.int32(0)), axis=0) if n else np.zeros(v.shape, dtype="int32")
    median = value.rolling(TRADED_VALUE_WINDOW_DAYS, min_periods=1).median().to_numpy("float64")
    return _State(
        value=v,
        listed=listed,
        listing_days=rows - first[None, :] + 1,
        last_row=last_row,
        days_since_bar=rows - last_row,
        median_trailing=median,
        median_at_last_bar=np.take_along_axis(median, last_row, axis=0),
    )


def scanner_membership(value: pd.DataFrame, cfg: ScannerConfig, admitted: Iterable[str] | None = None, *, state: _State | None = None) -> pd.DataFrame:
    """Dates x symbols bool: members of the scanner at each date (see the module docstring)."""
    st = state if state is not None else _state(value)
    statuses = {s.upper() for s in cfg.statuses}
    active = st.listed & (st.days_since_bar < cfg.halt_after_days)
    status_ok = (active if ACTIVE in statuses else False) | ((st.listed & ~active) if statuses & INACTIVE else False)
    liquidity = np.where(active, st.median_trailing, st.median_at_last_bar)
    ok = np.asarray(status_ok, dtype=bool) & st.listed
    ok &= st.listing_days >= cfg.min_listing_days
    with np.errstate(invalid="ignore"):
        ok &= liquidity >= cfg.min_traded_value_30d
    if admitted is not None:
        ok &= np.isin(np.asarray(value.columns, dtype=object), list(admitted))[None, :]
    member = _top(ok, _sort_key(cfg, st, liquidity, value.shape[1]), cfg.limit)
    return pd.DataFrame(member, index=value.index, columns=value.columns)


def _sort_key(cfg: ScannerConfig, st: _State, liquidity: np.ndarray, width: int) -> np.ndarray:
    """Ascending key (smaller = better); ties keep the symbol order of the columns."""
    if cfg.sort_by == "symbol":
        key = np.broadcast_to(np.arange(width, dtype="float64")[None, :], liquidity.shape)
    else:
        key = {
            "traded_value_30d": lambda: liquidity,
            "traded_value_24h": lambda: np.take_along_axis(st.value, st.last_row, axis=0),
            "listing_days": lambda: st.listing_days.astype("float64"),
        }[cfg.sort_by]()
    return -key if cfg.descending else key


def _top(ok: np.ndarray, key: np.ndarray, limit: int) -> np.ndarray:
    """`ok` restricted, on every row, to the `limit` smallest keys (stable: ties by column)."""
    rows = ok.sum(axis=1) > limit
    if not rows.any():
        return ok
    member = ok.copy()
    k = np.where(ok[rows], key[rows], np.inf)
    order = np.argsort(k, axis=1, kind="stable")[:, :limit]
    chosen = np.zeros_like(k, dtype=bool)
    np.put_along_axis(chosen, order, True, axis=1)
    member[rows] = chosen & ok[rows]
    return member


def intervals(member: pd.DataFrame, scanner: str) -> pd.DataFrame:
    """Runs of True in a dates x symbols bool frame as (symbol, scanner, start, end) rows."""
    m = member.to_numpy(bool).T  # symbols x dates
    pad = np.zeros((m.shape[0], 1), dtype=bool)
    edge = np.diff(np.concatenate([pad, m, pad], axis=1).astype("int8"), axis=1)
    sym_s, start = np.nonzero(edge == 1)
    sym_e, stop = np.nonzero(edge == -1)  # row-major: the i-th start pairs with the i-th stop
    dates = member.index.to_numpy("datetime64[D]")
    return pd.DataFrame(
        {
            "symbol": np.asarray(member.columns, dtype=object)[sym_s],
            "scanner": scanner,
            "start": dates[start],
            "end": dates[stop - 1] if len(stop) else dates[:0],
        }
    )


def compute_universe(value: pd.DataFrame, spec: UniverseSpec) -> pd.DataFrame:
    """Membership intervals of every scanner of `spec` on the traded-value panel (pure)."""
    names = [s.name for s in spec.scanners]
    if len(set(names)) != len(names):
        raise UniverseError(f"scanner names must be unique, got {names}")
    st = _state(value)
    parts = [
        intervals(scanner_membership(value, cfg, None if spec.attribution is None else spec.attribution.get(cfg.name, frozenset()), state=st), cfg.name)
        for cfg in spec.scanners
    ]
    out = pd.concat(parts, ignore_index=True) if parts else intervals(value.iloc[:, :0].astype(bool), "")
    return sort_universe(out)


def sort_universe(universe: pd.DataFrame) -> pd.DataFrame:
    out = universe.loc[:, list(UNIVERSE_COLUMNS)].copy()
    for col in ("start", "end"):
        out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
    return out.sort_values(["scanner", "symbol", "start"], kind="stable").reset_index(drop=True)


def membership_matrix(universe: pd.DataFrame, dates: pd.DatetimeIndex, symbols: list[str], scanners: Iterable[str] | None = None) -> pd.DataFrame:
    """Dates x symbols bool: True where the symbol is a member of one of `scanners` (None: any) that day."""
    u = universe
    if scanners is not None:
        u = u[u["scanner"].isin(list(scanners))]
    col = pd.Index(symbols).get_indexer(u["symbol"])
    u, col = u[col >= 0], col[col >= 0]
    days = pd.DatetimeIndex(dates).normalize()
    lo = days.searchsorted(pd.DatetimeIndex(u["start"]), side="left")
    hi = days.searchsorted(pd.DatetimeIndex(u["end"]), side="right")
    count = np.zeros((len(days) + 1, len(symbols)), dtype="int32")
    np.add.at(count, (lo, col), 1)
    np.add.at(count, (hi, col), -1)
    return pd.DataFrame(np.cumsum(count, axis=0)[:-1] > 0, index=dates, columns=list(symbols))


# --------------------------------------------------------------------------- the file


def universe_to_parquet_bytes(universe: pd.DataFrame, spec: UniverseSpec, as_of: dt.date) -> bytes:
    u = sort_universe(universe)
    table = pa.table(
        {
            "symbol": pa.array(u["symbol"].astype(str).tolist(), pa.string()),
            "scanner": pa.array(u["scanner"].astype(str).tolist(), pa.string()),
            "start": pa.array(u["start"].dt.date.tolist(), pa.date32()),
            "end": pa.array(u["end"].dt.date.tolist(), pa.date32()),
        },
        schema=_SCHEMA,
    )
    meta = {"as_of": as_of.isoformat(), "scanners": [{f.name: getattr(s, f.name) for f in fields(s)} for s in spec.scanners]}
    return table_to_parquet_bytes(table, {METADATA_KEY: json.dumps(meta, sort_keys=True, separators=(",", ":"))})


def read_universe(path: Path) -> pd.DataFrame:
    """The intervals of a universe file; ``.attrs`` holds its ``as_of`` and ``scanners``."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise UniverseError(f"{path}: cannot read the universe: {exc}") from exc
    if table.schema.names != list(UNIVERSE_COLUMNS):
        raise UniverseError(f"{path}: columns {table.schema.names}, expected {list(UNIVERSE_COLUMNS)}")
    raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        raise UniverseError(f"{path}: no {METADATA_KEY!r} metadata (as_of and scanners)")
    frame = sort_universe(table.to_pandas())
    if (frame["end"] < frame["start"]).any():
        raise UniverseError(f"{path}: an interval ends before it starts")
    frame.attrs.update(json.loads(raw))
    return frame


def tradable_scanners(universe: pd.DataFrame) -> list[str]:
    """The scanners of a universe file that keep TRADING symbols (the Alpha Cycle's pools)."""
    return [s["name"] for s in universe.attrs.get("scanners", []) if ACTIVE in {x.upper() for x in s["statuses"]}]


def traded_value_of(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, close * volume) of a bar table (Arrow), for `traded_value_matrix`."""
    close, volume = (table.column(c).to_numpy().astype("float64", copy=False) for c in ("close", "volume"))
    return table.column("timestamp").to_numpy().astype("int64", copy=False), close * volume


def publish_universe(lakehouse: Path, certified: dict, spec: UniverseSpec | None, as_of: dt.date,
                     traded: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict:
    """Compute the universe from the certified bars under `lakehouse` and write it there.

    Called by the gate while it builds the Golden Copy; returns a summary for audit.json.
    `traded` ({symbol: `traded_value_of` its published table}) spares reading the tables
    again when the caller has just read them.
    """
    if spec is None:
        return {"file": None, "reason": "no scanner configs in candidates.json"}
    if traded is None:
        traded = {}
        for sym, entry in sorted(certified["symbols"].items()):
            try:
                table = read_columns(Path(lakehouse) / entry["file"], ["timestamp", "close", "volume"])
            except (OSError, pa.ArrowException, QuantlakeError) as exc:
                raise ContractError(f"{sym}: cannot read {entry['file']} for the universe: {exc}") from exc
            traded[sym] = traded_value_of(table)
    universe = compute_universe(traded_value_matrix({s: traded[s] for s in certified["symbols"]}, as_of), spec)
    atomic_write_bytes(Path(lakehouse) / UNIVERSE_FILE, universe_to_parquet_bytes(universe, spec, as_of))
    at_end = universe[universe["end"] == pd.Timestamp(as_of)]
    return {
        "file": UNIVERSE_FILE,
        "intervals": int(len(universe)),
        "members_at_as_of": {s.name: int((at_end["scanner"] == s.name).sum()) for s in spec.scanners},
    }
