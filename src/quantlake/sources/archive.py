"""`archive`: Binance's public kline archives, from their web host or a local mirror folder.

Layout under `data.archive.base` (a URL base, e.g. the public host, or a local folder that
mirrors it):

    data/spot/monthly/klines/<SYMBOL>/1d/<SYMBOL>-1d-YYYY-MM.zip
    data/spot/daily/klines/<SYMBOL>/1d/<SYMBOL>-1d-YYYY-MM-DD.zip

each zip holding one headerless CSV in the 12-field kline layout (parsed by `klines.py`;
files from 2025 on use microsecond timestamps), each with a `.CHECKSUM` beside it
(`<sha256>  <file name>`), verified when present. A damaged zip or a checksum mismatch is a
`SourceError` naming the symbol and the file. Retries on the web host are announced with their
wait, and a host that cannot be reached fails fast with one line naming it (`network.py`).

`data.archive.mode` chooses the files: `monthly` (one file per month), `daily` (one file per
day), or `auto` (monthly files, and daily files for the trailing months of the window - at most
the last two - that have no monthly file yet, since a month's file appears only after it ends).
A month without a file before the last one that has one is a month without trading (before
listing, after delisting): it costs one missing-file probe.

`hybrid` (`hybrid_from_params`) takes the history from the monthly archive and the recent tail,
after the last archived bar, from the REST API (`data.binance`): bulk history without spending
request weight, fresh days without waiting for the archive.

Markets: a local mirror lists its symbol folders and computes each market from its bars like
the `files` source; the web host has no listing, so there use `hybrid` (markets from REST).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Iterator

import pandas as pd
import requests
from requests.adapters import HTTPAdapter

from ..contracts import DAY_MS, ContractError, SymbolId, empty_bars, ms_to_date
from ..params_base import Section, check
from .base import Market, SourceError
from .binance import EXCHANGE, BinanceSource
from .files import BarFile, market_from_bars, split_pair
from .klines import clip_days, klines_to_bars, read_kline_csv, sort_unique
from .network import Retrier, host_of, say

DEFAULT_BASE = "https://data.binance.vision"
MODES = ("auto", "monthly", "daily")
DAILY_FALLBACK_MONTHS = 2
BACKOFF_S, MAX_BACKOFF_S = 0.5, 8.0  # the first retry's wait (doubled each retry) and its cap
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class ArchiveConfig(Section):
    """The `data.archive` params section."""

    SECTION: ClassVar[str] = "data.archive"

    base: str = DEFAULT_BASE  # URL base or local mirror folder
    mode: str = "auto"  # auto | monthly | daily
    timeout_s: float = 30.0
    retries: int = 3  # extra attempts after a 5xx or a connection error (web host only)

    def __post_init__(self) -> None:
        s = self.SECTION
        check(self.mode in MODES, f"{s}.mode: {self.mode!r} is not one of {list(MODES)}")
        check(bool(self.base), f"{s}.base: expected a URL or a folder, got {self.base!r}")
        check(self.retries >= 0, f"{s}.retries must be >= 0, got {self.retries}")
        check(self.timeout_s > 0, f"{s}.timeout_s must be > 0, got {self.timeout_s}")


    @property
    def is_url(self) -> bool:
        return self.base.startswith(("http://", "https://"))


def monthly_path(symbol: str, month: dt.date) -> str:
    return f"data/spot/monthly/klines/{symbol}/1d/{symbol}-1d-{month:%Y-%m}.zip"


def daily_path(symbol: str, day: dt.date) -> str:
    return f"data/spot/daily/klines/{symbol}/1d/{symbol}-1d-{day:%Y-%m-%d}.zip"


def month_starts(start: dt.date, end: dt.date) -> list[dt.date]:
    months, m = [], start.replace(day=1)
    while m <= end:
        months.append(m)
        m = (m + dt.timedelta(days=32)).replace(day=1)
    return months


def days_between(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    for i in range((end - start).days + 1):
        yield start + dt.timedelta(days=i)


def csv_from_zip(data: bytes, *, where: str) -> tuple[str, bytes]:
    """(member name, CSV bytes) of one archive zip (one CSV in the kline layout)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [n for n in zf.namelist() if n.lower().endswith(".csv")]
            if len(members) != 1:
                raise ContractError(f"{where}: expected one CSV in the zip, found {zf.namelist()}")
            return members[0], zf.read(members[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as exc:
        raise ContractError(f"{where}: corrupted zip: {exc}") from exc


def bars_from_zip(data: bytes, *, where: str) -> pd.DataFrame:
    """The bars of one archive zip (one CSV in the kline layout)."""
    member, text = csv_from_zip(data, where=where)
    return klines_to_bars(read_kline_csv(text, where=f"{where}:{member}"))


def verify_checksum(data: bytes, checksum_file: bytes | None, *, where: str) -> None:
    """Raise unless `data` matches the sha256 of its `.CHECKSUM` file (when there is one)."""
    if checksum_file is None:
        return
    token = checksum_file.decode("ascii", "replace").split()[0] if checksum_file.strip() else ""
    if not _SHA256.match(token):
        raise ContractError(f"{where}.CHECKSUM: not a sha256 checksum file")
    actual = hashlib.sha256(data).hexdigest()
    if actual != token.lower():
        raise ContractError(f"{where}: checksum mismatch (sha256 {actual}, .CHECKSUM says {token.lower()})")


class ArchiveSource:
    name = "archive"
    exchange = EXCHANGE

    def __init__(
        self,
        config: ArchiveConfig | None = None,
        *,
        session: requests.Session | None = None,
        log: Callable[[str], None] = say,
        require_checksum: bool = False,
    ):
        self.config = config or ArchiveConfig()
        self.require_checksum = require_checksum  # a file without its .CHECKSUM is then an error
        self._session = None
        self.retrier = Retrier(host_of(self.config.base), self.config.timeout_s, self.config.retries, BACKOFF_S, MAX_BACKOFF_S, log=log)
        if self.config.is_url:
            self._session = session or requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=16)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    # -- Source interface --------------------------------------------------------------------

    def fetch_bars(self, symbol: SymbolId, start: dt.date, end: dt.date, *, mode: str | None = None) -> pd.DataFrame:
        sid = symbol if isinstance(symbol, SymbolId) else SymbolId.parse(symbol)
        if sid.exchange != EXCHANGE:
            raise SourceError(f"not a {EXCHANGE} symbol", symbol=sid)
        if end < start:
            return empty_bars()
        mode = mode or self.config.mode
        try:
            if mode == "daily":
                frames = [self._file(sid, daily_path(sid.symbol, d)) for d in days_between(start, end)]
            else:
                frames = self._monthly_then_daily(sid, start, end, daily_tail=(mode == "auto"))
        except ContractError as exc:
            raise SourceError(str(exc), symbol=sid) from exc
        found = [f for f in frames if f is not None]
        if not found:
            return empty_bars()
        return clip_days(sort_unique(pd.concat(found, ignore_index=True)), start, end)

    def list_markets(self, as_of: dt.date) -> list[Market]:
        if self.config.is_url:
            raise SourceError("the archive's web host cannot list markets; use data.source: hybrid (markets from the REST API) or a local mirror")
        root = Path(self.config.base) / "data/spot/monthly/klines"
        daily_root = Path(self.config.base) / "data/spot/daily/klines"
        names = sorted({p.name for r in (root, daily_root) if r.is_dir() for p in r.iterdir() if p.is_dir()})
        markets = []
        for name in names:
            try:
                sid = SymbolId.of(EXCHANGE, name, where=f"archive folder {name!r}")
            except ContractError as exc:
                raise SourceError(str(exc)) from exc
            listed = self._first_month(sid.symbol)
            if listed is None or listed > as_of:
                continue
            bars = self.fetch_bars(sid, listed, as_of)
            base, quote = split_pair(sid.symbol)
            market = market_from_bars(BarFile(root / name, sid, base, quote), bars, as_of)
            if market is not None:
                markets.append(market)
        return markets

    # -- files ---------------------------------------------------------------------------------

    def _monthly_then_daily(self, sid: SymbolId, start: dt.date, end: dt.date, *, daily_tail: bool) -> list[pd.DataFrame | None]:
        months = month_starts(start, end)
        frames = [self._file(sid, monthly_path(sid.symbol, m)) for m in months]
        if daily_tail:
            last_with_file = max((i for i, f in enumerate(frames) if f is not None), default=-1)
            for i in range(max(last_with_file + 1, len(months) - DAILY_FALLBACK_MONTHS), len(months)):
                month_end = (months[i] + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
                first, last = max(start, months[i]), min(end, month_end)
                frames.extend(self._file(sid, daily_path(sid.symbol, d)) for d in days_between(first, last))
        return frames

    def _first_month(self, symbol: str) -> dt.date | None:
        folder = Path(self.config.base) / "data/spot/monthly/klines" / symbol / "1d"
        months = sorted(folder.glob(f"{symbol}-1d-????-??.zip")) if folder.is_dir() else []
        if months:
            y, m = months[0].name[-11:-4].split("-")
            return dt.date(int(y), int(m), 1)
        folder = Path(self.config.base) / "data/spot/daily/klines" / symbol / "1d"
        days = sorted(folder.glob(f"{symbol}-1d-????-??-??.zip")) if folder.is_dir() else []
        return dt.date.fromisoformat(days[0].name[-14:-4]) if days else None

    def file_bytes(self, sid: SymbolId, relpath: str) -> bytes | None:
        """The bytes of one archive file checked against its `.CHECKSUM` (None: no such file)."""
        data = self._read(sid, relpath)
        if data is None:
            return None
        checksum = self._read(sid, relpath + ".CHECKSUM")
        if checksum is None and self.require_checksum:
            raise ContractError(f"{relpath}: no {relpath.rsplit('/', 1)[-1]}.CHECKSUM beside it, and checksums are required")
        verify_checksum(data, checksum, where=relpath)
        return data

    def _file(self, sid: SymbolId, relpath: str) -> pd.DataFrame | None:
        """The bars of one archive file, None when the archive has no such file."""
        data = self.file_bytes(sid, relpath)
        return None if data is None else bars_from_zip(data, where=relpath)

    def _read(self, sid: SymbolId, relpath: str) -> bytes | None:
        if not self.config.is_url:
            path = Path(self.config.base) / relpath
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise SourceError(f"{path}: cannot read: {exc}", symbol=sid) from exc
        url = f"{self.config.base.rstrip('/')}/{relpath}"
        failures = 0
        while True:
            self.retrier.check()
            try:
                resp = self._session.get(url, timeout=self.config.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failures = self.retrier.connection_failed(failures, f"GET {url}", exc, sid)
                continue
            self.retrier.answered()
            if resp.status_code == 200:
                return resp.content
            if resp.status_code in (403, 404):  # S3 answers 403 for a key that does not exist
                return None
            if resp.status_code < 500:
                raise SourceError(f"GET {url}: HTTP {resp.status_code}", symbol=sid)
            failures = self.retrier.answer_failed(failures, f"GET {url}", f"HTTP {resp.status_code}", sid)


class HybridSource:
    """History from the monthly archive, the tail after the last archived bar from REST."""

    name = "hybrid"
    exchange = EXCHANGE

    def __init__(self, archive: ArchiveSource, rest: BinanceSource):
        self.archive = archive
        self.rest = rest

    def list_markets(self, as_of: dt.date) -> list[Market]:
        return self.rest.list_markets(as_of)

    def fetch_bars(self, symbol: SymbolId, start: dt.date, end: dt.date) -> pd.DataFrame:
        history = self.archive.fetch_bars(symbol, start, end, mode="monthly")
        tail_start = start
        if len(history):
            tail_start = ms_to_date(int(history["timestamp"].iloc[-1]) + DAY_MS)
        if tail_start > end:
            return history
        tail = self.rest.fetch_bars(symbol, tail_start, end)
        return sort_unique(pd.concat([history, tail], ignore_index=True)) if len(history) else tail

    def close(self) -> None:
        self.archive.close()
        self.rest.close()


def from_params(data) -> ArchiveSource:
    """The source of `data.source: archive` from the typed `data` section."""
    return ArchiveSource(data.archive)


def hybrid_from_params(data) -> HybridSource:
    """The source of `data.source: hybrid`: the archive's history and the REST API's tail."""
    return HybridSource(ArchiveSource(data.archive), BinanceSource(data.binance))


__all__ = [
    "ArchiveSource",
    "ArchiveConfig",
    "HybridSource",
    "from_params",
    "hybrid_from_params",
    "monthly_path",
    "daily_path",
    "bars_from_zip",
    "csv_from_zip",
    "verify_checksum",
]
