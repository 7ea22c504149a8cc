"""The data contracts every stage relies on (ARCHITECTURE.md sections 2-3).

Symbol ids, file naming, the OHLCV schema and its validator, the catalog schema and the
date helpers. Nothing here does IO: readers and writers live in `storage.py`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

SCHEMA_VERSION = 1
DAY_MS = 86_400_000
SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}:[A-Z0-9._-]{1,40}$")
FILE_SUFFIX = "_1d.parquet"
OHLCV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
OHLCV_SCHEMA = pa.schema(
    [
        ("timestamp", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ]
)
STATUSES = ("ok", "stale", "degraded", "toxic")


class QuantlakeError(Exception):
    """Base class of every error quantlake reports to a user."""


class ContractError(QuantlakeError):
    """Input that breaks a data contract; the message names the offending item."""


# --------------------------------------------------------------------------- symbols


@dataclass(frozen=True, order=True)
class SymbolId:
    """`EXCHANGE:SYMBOL`, validated before it can ever become a path."""

    exchange: str
    symbol: str

    @classmethod
    def parse(cls, text: Any, *, where: str = "") -> "SymbolId":
        if not isinstance(text, str) or not SYMBOL_RE.match(text):
            origin = f" (from {where})" if where else ""
            raise ContractError(
                f"invalid symbol id {text!r}{origin}: expected EXCHANGE:SYMBOL matching "
                f"{SYMBOL_RE.pattern}"
            )
        exchange, symbol = text.split(":", 1)
        return cls(exchange, symbol)

    @classmethod
    def of(cls, exchange: str, symbol: str, *, where: str = "") -> "SymbolId":
        return cls.parse(f"{exchange}:{symbol}", where=where)

    @classmethod
    def from_filename(cls, name: str) -> "SymbolId":
        """Inverse of `filename`; rejects anything that is not a lakehouse file name."""
        if not name.endswith(FILE_SUFFIX):
            raise ContractError(f"{name!r} is not a lakehouse file name (*{FILE_SUFFIX})")
        stem = name[: -len(FILE_SUFFIX)]
        exchange, sep, symbol = stem.partition("_")
        if not sep:
            raise ContractError(f"{name!r} is not a lakehouse file name (EXCHANGE_SYMBOL)")
        return cls.of(exchange, symbol, where=f"file name {name!r}")

    @property
    def filename(self) -> str:
        return f"{self.exchange}_{self.symbol}{FILE_SUFFIX}"

    def __str__(self) -> str:
        return f"{self.exchange}:{self.symbol}"


# --------------------------------------------------------------------------- dates


def parse_date(value: Any, *, field: str = "date") -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ContractError(f"{field}: {value!r} is not an ISO date (YYYY-MM-DD)") from exc


def date_to_ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_MS


def ms_to_date(ms: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(ms) // DAY_MS)


def last_closed_day(now: dt.datetime) -> dt.date:
    """The last UTC day whose daily bar has closed at `now`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)


def check_as_of(as_of: dt.date, now: dt.datetime) -> dt.date:
    """`as_of` must be a UTC day that has already closed at `now`."""
    last = last_closed_day(now)
    if as_of > last:
        raise ContractError(
            f"data.as_of={as_of.isoformat()} has not closed yet in UTC "
            f"(now {now.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; the last closed day is "
            f"{last.isoformat()})"
        )
    return as_of


# --------------------------------------------------------------------------- OHLCV


def empty_bars() -> pd.DataFrame:
    return OHLCV_SCHEMA.empty_table().to_pandas()


def coerce_bars(df: pd.DataFrame, *, where: str = "") -> pd.DataFrame:
    """Return `df` restricted to the OHLCV columns with the contract's dtypes (no row checks)."""
    missing = [c for c in OHLCV_COLUMNS if c not in df.columns]
    if missing:
        raise ContractError(f"{where or 'bars'}: missing column(s) {missing}")
    out = pd.DataFrame(
        {
            "timestamp": pd.to_numeric(df["timestamp"], errors="raise").astype("int64"),
            **{c: pd.to_numeric(df[c], errors="coerce").astype("float64") for c in OHLCV_COLUMNS[1:]},
        }
    )
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Violation:
    file: str
    column: str
    row: int | None
    value: Any
    rule: str

    def __str__(self) -> str:
        row = "" if self.row is None else f" row {self.row}"
        return f"{self.file}: column {self.column!r}{row}: {self.rule} (value {self.value!r})"


def validate_ohlcv(
    df: pd.DataFrame, *, file: str = "<bars>", as_of: dt.date | None = None, limit: int = 1000
) -> list[Violation]:
    """Every way `df` breaks the OHLCV contract, as (file, column, row, value, rule).

    Checks the exact columns and dtypes, then the row invariants: timestamps at 00:00 UTC,
    sorted and unique, not after `as_of`; finite positive prices with low <= min(open, close)
    and high >= max(open, close); finite non-negative volume. Stops after `limit` findings.
    """
    out: list[Violation] = []
    cols = list(df.columns)
    if cols != list(OHLCV_COLUMNS):
        out.append(Violation(file, ",".join(map(str, cols)), None, cols, f"columns must be exactly {list(OHLCV_COLUMNS)}"))
        return out
    expected = {"timestamp": np.dtype("int64"), **{c: np.dtype("float64") for c in OHLCV_COLUMNS[1:]}}
    for col, dtype in expected.items():
        if df[col].dtype != dtype:
            out.append(Violation(file, col, None, str(df[col].dtype), f"dtype must be {dtype}"))
    if out:
        return out

    def add(col: str, mask: np.ndarray, rule: str) -> None:
        for i in np.flatnonzero(mask)[: max(0, limit - len(out))]:
            out.append(Violation(file, col, int(i), _py(df[col].iat[i]), rule))

    ts = df["timestamp"].to_numpy()
    add("timestamp", ts % DAY_MS != 0, "not at 00:00 UTC")
    if len(ts) > 1:
        step = np.diff(ts)
        add("timestamp", np.r_[False, step == 0], "duplicate timestamp")
        add("timestamp", np.r_[False, step < 0], "not sorted ascending")
    if as_of is not None:
        add("timestamp", ts > date_to_ms(as_of), f"bar after as_of {as_of.isoformat()}")
    o, h, l, c, v = (df[k].to_numpy() for k in OHLCV_COLUMNS[1:])
    for name, arr in zip(PRICE_COLUMNS, (o, h, l, c)):
        add(name, ~np.isfinite(arr) | (arr <= 0), "price must be finite and > 0")
    with np.errstate(invalid="ignore"):
        add("low", l > np.minimum(o, c), "low above min(open, close)")
        add("high", h < np.maximum(o, c), "high below max(open, close)")
        add("volume", ~np.isfinite(v) | (v < 0), "volume must be finite and >= 0")
    return out[:limit]


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def find_gaps(timestamps: Iterable[int], max_gap_days: int) -> list[list[str]]:
    """Runs of missing days longer than `max_gap_days`, as [first missing, last missing] dates."""
    ts = np.asarray(list(timestamps) if not isinstance(timestamps, np.ndarray) else timestamps, dtype="int64")
    if ts.size < 2:
        return []
    missing = np.diff(ts) // DAY_MS - 1
    gaps = []
    for i in np.flatnonzero(missing > max_gap_days):
        first = ms_to_date(int(ts[i]) + DAY_MS)
        last = ms_to_date(int(ts[i + 1]) - DAY_MS)
        gaps.append([first.isoformat(), last.isoformat()])
    return gaps


# --------------------------------------------------------------------------- catalog

CATALOG_ENTRY_FIELDS = (
    "file",
    "sha256",
    "fragments",
    "rows",
    "start_date",
    "end_date",
    "source",
    "gaps",
    "quarantined",
    "data_quality_score",
    "status",
)


def validate_catalog(catalog: dict, *, file: str = "catalog.json") -> list[str]:
    """Problems with a catalog document (empty when it follows the contract)."""
    problems = []
    for key in ("schema_version", "as_of", "symbols"):
        if key not in catalog:
            problems.append(f"{file}: missing key {key!r}")
    for sym, entry in (catalog.get("symbols") or {}).items():
        try:
            SymbolId.parse(sym, where=file)
        except ContractError as exc:
            problems.append(str(exc))
        for key in CATALOG_ENTRY_FIELDS:
            if key not in entry:
                problems.append(f"{file}: symbol {sym}: missing field {key!r}")
        if entry.get("status") not in STATUSES:
            problems.append(f"{file}: symbol {sym}: status {entry.get('status')!r} not in {STATUSES}")
        score = entry.get("data_quality_score")
        if not isinstance(score, (int, float)) or not 0 <= score <= 1:
            problems.append(f"{file}: symbol {sym}: data_quality_score {score!r} not in [0, 1]")
    return problems
