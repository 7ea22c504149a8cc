"""The one interface every market-data source implements (ARCHITECTURE.md section 5).

A source answers two questions:

* `list_markets(as_of)`: which markets exist, with what discovery needs to filter them
  (quote currency, listing age, traded value);
* `fetch_bars(symbol, start, end)`: the daily bars it has for one symbol between two UTC days,
  inclusive, *as the source serves them*: unsanitized (ingestion owns the quality gates), with
  the OHLCV columns of `contracts.OHLCV_COLUMNS`. Bars after `end` or not yet closed are the
  source's to drop when it can tell; ingestion checks again.

A failure that concerns one symbol raises `SourceError` naming it, so that a batch goes on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import pandas as pd

from ..contracts import QuantlakeError, SymbolId


class SourceError(QuantlakeError):
    """A source could not serve a request; `symbol` says which one (None: the whole source)."""

    def __init__(self, message: str, *, symbol: SymbolId | str | None = None, retryable: bool = False):
        self.symbol = None if symbol is None else str(symbol)
        self.retryable = retryable
        super().__init__(f"{self.symbol}: {message}" if self.symbol else message)


class HostUnreachable(SourceError):
    """The source's host cannot be reached at all (no name, no connection): every symbol would
    fail the same way, so a batch stops and reports this one line instead."""


@dataclass(frozen=True)
class Market:
    """One tradable pair as a source lists it.

    `traded_value_30d` is the median daily traded value in the quote currency over the 30 days
    up to `as_of` (computed from bars for `sim`/`files`; an exchange may only know 24h values,
    see `traded_value_24h`). `listed_on` is the first day with a bar, when the source knows it.
    """

    symbol: SymbolId
    base: str
    quote: str
    status: str = "TRADING"  # TRADING | HALT | BREAK (delisted)
    asset_type: str = "spot"
    listed_on: dt.date | None = None
    last_trade_on: dt.date | None = None
    traded_value_24h: float | None = None
    traded_value_30d: float | None = None
    extra: dict = field(default_factory=dict)

    def listing_days(self, as_of: dt.date) -> int | None:
        return None if self.listed_on is None else (as_of - self.listed_on).days + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["symbol"] = str(self.symbol)
        for k in ("listed_on", "last_trade_on"):
            d[k] = None if d[k] is None else d[k].isoformat()
        return d


@runtime_checkable
class Source(Protocol):
    name: str
    exchange: str

    def list_markets(self, as_of: dt.date) -> list[Market]: ...

    def fetch_bars(self, symbol: SymbolId, start: dt.date, end: dt.date) -> pd.DataFrame: ...
