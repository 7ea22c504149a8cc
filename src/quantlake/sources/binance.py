"""`binance`: Binance's public spot REST API (market data only, no key), weight-aware and polite.

* Markets: `GET /api/v3/exchangeInfo` (weight 20; spot symbols with status TRADING, their base
  and quote assets) joined with `GET /api/v3/ticker/24hr` (weight 80 for all symbols;
  `quoteVolume` becomes `traded_value_24h`). The exchange only knows the present: `as_of` does
  not change the answer, `traded_value_30d` and `listed_on` stay None (unknown).
* Bars: `GET /api/v3/klines` (weight 2, interval 1d, limit 1000), paged by `startTime`: the
  server answers the oldest bars from there, so a symbol listed late costs no empty pages.
  Rows go through `klines.py` (one parser for every kline source); the bar that had not
  closed when the server answered (close time at or after its `Date` header) is dropped.
* Politeness: every request waits on one `WeightPacer` shared by all threads (token bucket
  on the weight budget + the server's `X-MBX-USED-WEIGHT-1M` header). A 429 or 418 pauses
  every thread for its `Retry-After` (a 418 is an IP ban that grows if ignored); a pause longer
  than `max_pause_s` fails the whole source instead of sleeping for hours. 5xx answers,
  connection errors, timeouts and unreadable JSON are retried with bounded exponential
  backoff, each retry announced with its wait; an unreachable host fails fast with one line
  naming it (`network.py`). Binance's `{code, msg}` error bodies (e.g. -1121 invalid symbol) become a
  `SourceError` naming the symbol, so a batch goes on.

The source is thread-safe: ingestion calls `fetch_bars` from its worker pool, and
`fetch_many` fetches a list of symbols concurrently with `max_workers` threads.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

import pandas as pd
import requests
from requests.adapters import HTTPAdapter

from ..contracts import DAY_MS, ContractError, SymbolId, date_to_ms, empty_bars, ms_to_date
from ..params_base import Section, check
from .base import Market, SourceError
from .klines import clip_days, klines_to_bars, parse_kline_rows, sort_unique
from .network import Retrier, host_of, say
from .ratelimit import WeightPacer

EXCHANGE = "BINANCE"
DEFAULT_BASE_URL = "https://data-api.binance.vision"  # the documented market-data-only host
KLINES_LIMIT = 1000
# Documented request weights of the endpoints used here.
WEIGHT_KLINES = 2
WEIGHT_EXCHANGE_INFO = 20
WEIGHT_TICKER_ALL = 80


@dataclass(frozen=True)
class BinanceConfig(Section):
    """The `data.binance` params section."""

    SECTION: ClassVar[str] = "data.binance"

    base_url: str = DEFAULT_BASE_URL
    max_workers: int = 8  # threads of `fetch_many`; ingestion uses `data.workers`
    timeout_s: float = 10.0  # per HTTP request
    weight_limit_per_minute: int = 6000
    weight_window_s: float = 60.0  # the budget's window; tests and benchmarks scale time with it
    retries: int = 4  # extra attempts after a 5xx, a connection error or unreadable JSON
    backoff_s: float = 0.5  # first retry delay, doubled each attempt
    max_backoff_s: float = 8.0
    max_pause_s: float = 300.0  # a longer Retry-After (a long IP ban) fails the source instead

    def __post_init__(self) -> None:
        s = self.SECTION
        check(self.base_url.startswith(("http://", "https://")), f"{s}.base_url: {self.base_url!r} is not an http(s) URL")
        check(self.max_workers >= 1, f"{s}.max_workers must be >= 1, got {self.max_workers}")
        check(self.retries >= 0, f"{s}.retries must be >= 0, got {self.retries}")
        for name in ("timeout_s", "weight_limit_per_minute", "weight_window_s"):
            check(getattr(self, name) > 0, f"{s}.{name} must be > 0, got {getattr(self, name)}")
        for name in ("backoff_s", "max_backoff_s", "max_pause_s"):
            check(getattr(self, name) >= 0, f"{s}.{name} must be >= 0, got {getattr(self, name)}")


class BinanceSource:
    name = "binance"
    exchange = EXCHANGE

    def __init__(
        self, config: BinanceConfig | None = None, *, session: requests.Session | None = None, log: Callable[[str], None] = say
    ):
        self.config = config or BinanceConfig()
        self._base = self.config.base_url.rstrip("/")
        cfg = self.config
        self.retrier = Retrier(host_of(self._base), cfg.timeout_s, cfg.retries, cfg.backoff_s, cfg.max_backoff_s, log=log)
        self._session = session or requests.Session()
        # One pooled connection per thread that may call us (ours and the ingestion pool's).
        pool = max(16, 2 * self.config.max_workers)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self.pacer = WeightPacer(self.config.weight_limit_per_minute, self.config.weight_window_s)
        self._stats_lock = threading.Lock()
        self.stats: Counter = Counter()  # requests, retries, http_<status>, ...

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "BinanceSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- Source interface --------------------------------------------------------------------

    def list_markets(self, as_of: dt.date) -> list[Market]:
        info, _ = self._get("/api/v3/exchangeInfo", {}, WEIGHT_EXCHANGE_INFO)
        tickers, _ = self._get("/api/v3/ticker/24hr", {}, WEIGHT_TICKER_ALL)
        if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
            raise SourceError("GET /api/v3/exchangeInfo: answer has no `symbols` list")
        if not isinstance(tickers, list):
            raise SourceError("GET /api/v3/ticker/24hr: expected a list of tickers")
        by_symbol = {t.get("symbol"): t for t in tickers if isinstance(t, dict)}
        markets = []
        for entry in info["symbols"]:
            if not isinstance(entry, dict) or entry.get("status") != "TRADING" or not _is_spot(entry):
                continue
            try:
                sid = SymbolId.of(EXCHANGE, entry.get("symbol"), where="GET /api/v3/exchangeInfo")
            except ContractError:
                self._count("skipped_invalid_symbol")  # e.g. non-ASCII names: never a path
                continue
            ticker = by_symbol.get(sid.symbol, {})
            trades = _number(ticker.get("count"))
            close_time = _number(ticker.get("closeTime"))
            markets.append(
                Market(
                    symbol=sid,
                    base=str(entry.get("baseAsset", "")),
                    quote=str(entry.get("quoteAsset", "")),
                    status="TRADING",
                    asset_type="spot",
                    last_trade_on=ms_to_date(int(close_time)) if trades and close_time else None,
                    traded_value_24h=_number(ticker.get("quoteVolume")),
                    extra={"trades_24h": None if trades is None else int(trades)},
                )
            )
        return sorted(markets, key=lambda m: m.symbol)

    def fetch_bars(self, symbol: SymbolId, start: dt.date, end: dt.date) -> pd.DataFrame:
        sid = self._symbol(symbol)
        if end < start:
            return empty_bars()
        first_ms, last_day_ms = date_to_ms(start), date_to_ms(end)
        end_ms = last_day_ms + DAY_MS - 1
        pages = []
        cursor = first_ms
        while True:
            params = {"symbol": sid.symbol, "interval": "1d", "startTime": cursor, "endTime": end_ms, "limit": KLINES_LIMIT}
            rows, server_ms = self._get("/api/v3/klines", params, WEIGHT_KLINES, symbol=sid)
            try:
                klines = parse_kline_rows(rows, where=f"GET /api/v3/klines?symbol={sid.symbol}&startTime={cursor}")
            except ContractError as exc:
                raise SourceError(str(exc), symbol=sid) from exc
            pages.append(klines_to_bars(klines, closed_before_ms=server_ms))
            if len(klines) < KLINES_LIMIT:
                break  # the server had no more rows in the window
            newest = int(klines["open_time"].max())
            if newest >= last_day_ms:
                break  # the window's last day is in: a next page could only be empty
            if newest < cursor:
                raise SourceError(f"GET /api/v3/klines: paging made no progress at startTime={cursor}", symbol=sid)
            cursor = newest + 1
        bars = sort_unique(pd.concat(pages, ignore_index=True)) if len(pages) > 1 else pages[0]
        return clip_days(bars, start, end)

    # -- many symbols at once ----------------------------------------------------------------

    def fetch_many(
        self, symbols: Iterable[SymbolId], start: dt.date, end: dt.date, *, workers: int | None = None
    ) -> dict[SymbolId, pd.DataFrame | SourceError]:
        """`fetch_bars` for every symbol on `workers` threads (default `max_workers`).

        Per-symbol failures come back as the `SourceError` in the result; an error of the
        whole source (an IP ban longer than `max_pause_s`) cancels the rest and is raised.
        """
        symbols = list(symbols)
        out: dict[SymbolId, pd.DataFrame | SourceError] = {}
        with ThreadPoolExecutor(max_workers=workers or self.config.max_workers, thread_name_prefix="binance") as pool:
            futures = {pool.submit(self.fetch_bars, s, start, end): s for s in symbols}
            for fut in as_completed(futures):
                try:
                    out[futures[fut]] = fut.result()
                except SourceError as exc:
                    if exc.symbol is None:
                        for other in futures:
                            other.cancel()
                        raise
                    out[futures[fut]] = exc
        return {s: out[s] for s in symbols}

    # -- HTTP ----------------------------------------------------------------------------------

    def _get(self, path: str, params: dict, weight: int, *, symbol: SymbolId | None = None) -> tuple[Any, int]:
        """GET `path`; the decoded JSON and the server's clock (epoch ms) when it answered."""
        cfg = self.config
        url = self._base + path
        failures = throttles = 0
        while True:
            self.retrier.check()
            paused = self.pacer.paused_for()
            if paused > cfg.max_pause_s:  # banned for long by an earlier answer: fail now, do not wait
                raise SourceError(f"Binance asked us to stay away for another {paused:.0f}s (HTTP 418/429 Retry-After); try again later")
            self.pacer.acquire(weight)
            try:
                self._count("requests")
                resp = self._session.get(url, params=params, timeout=cfg.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failures = self.retrier.connection_failed(failures, f"GET {path}", exc, symbol)
                self._count("retries")
                continue
            finally:
                self.pacer.done(weight)
            self.retrier.answered()
            server_s = _server_time(resp)
            used = resp.headers.get("X-MBX-USED-WEIGHT-1M")
            if used is not None and used.strip().isdigit():
                self.pacer.observe_used_weight(int(used), server_s)
            status = resp.status_code
            self._count(f"http_{status}")
            if status in (429, 418):
                throttles += 1
                self._throttled(path, status, resp, throttles, symbol)
                continue
            if status >= 500:
                failures = self._retry_or_raise(failures, f"GET {path}", f"HTTP {status} {_snippet(resp)}", symbol)
                continue
            try:
                body = resp.json()
            except ValueError:
                if status == 200:  # a truncated or garbled answer: the next one may be whole
                    failures = self._retry_or_raise(failures, f"GET {path}", f"unreadable JSON ({len(resp.content)} bytes: {_snippet(resp)})", symbol)
                    continue
                raise SourceError(f"GET {path}: HTTP {status} {_snippet(resp)}", symbol=symbol) from None
            if status == 200:
                return body, int((server_s if server_s is not None else time.time()) * 1000)
            if isinstance(body, dict) and "code" in body:
                raise SourceError(f"Binance error {body.get('code')}: {body.get('msg')} (GET {path}, HTTP {status})", symbol=symbol)
            raise SourceError(f"GET {path}: HTTP {status} {_snippet(resp)}", symbol=symbol)

    def _retry_or_raise(self, failures: int, what: str, problem: str, symbol: SymbolId | None) -> int:
        failures = self.retrier.answer_failed(failures, what, problem, symbol)
        self._count("retries")
        return failures

    def _throttled(self, path: str, status: int, resp: requests.Response, throttles: int, symbol: SymbolId | None) -> None:
        """A 429 (over the budget) or 418 (IP banned): every thread waits for Retry-After."""
        cfg = self.config
        retry_after = _seconds(resp.headers.get("Retry-After"))
        if retry_after is None:
            retry_after = cfg.weight_window_s
        self.pacer.pause(retry_after)
        what = "banned this IP (HTTP 418)" if status == 418 else "rate limit exceeded (HTTP 429)"
        if retry_after > cfg.max_pause_s:
            raise SourceError(
                f"Binance {what} on GET {path}; Retry-After {retry_after:.0f}s exceeds data.binance.max_pause_s="
                f"{cfg.max_pause_s:.0f}s: try again later"
            )
        if throttles > cfg.retries + 1:
            raise SourceError(f"Binance {what} {throttles} times in a row on GET {path}", symbol=symbol, retryable=True)

    def _symbol(self, symbol: SymbolId | str) -> SymbolId:
        sid = symbol if isinstance(symbol, SymbolId) else SymbolId.parse(symbol)
        if sid.exchange != EXCHANGE:
            raise SourceError(f"not a {EXCHANGE} symbol", symbol=sid)
        return sid

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1


def _is_spot(entry: dict) -> bool:
    if "isSpotTradingAllowed" in entry:
        return bool(entry["isSpotTradingAllowed"])
    perms = set(entry.get("permissions") or [])
    for group in entry.get("permissionSets") or []:
        perms.update(group)
    return "SPOT" in perms


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _server_time(resp: requests.Response) -> float | None:
    """The server's clock (epoch seconds) from its `Date` header, when it sent one."""
    date = resp.headers.get("Date")
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None


def _snippet(resp: requests.Response) -> str:
    text = resp.text[:120].replace("\n", " ").strip()
    return repr(text) if text else "(empty body)"


def from_params(data) -> BinanceSource:
    """The source of `data.source: binance` from the typed `data` section (`quantlake.params.DataParams`)."""
    return BinanceSource(data.binance)


__all__ = ["BinanceSource", "BinanceConfig", "from_params", "EXCHANGE", "DEFAULT_BASE_URL"]
