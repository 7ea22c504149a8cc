"""A fake Binance spot market-data server for tests and benchmarks: real HTTP on 127.0.0.1.

It implements the three public endpoints quantlake uses, with Binance's semantics as
documented (see /work/shared/notes/binance.md), independently of quantlake's own code so that
it can catch quantlake's mistakes:

* `GET /api/v3/exchangeInfo` (weight 20), `GET /api/v3/ticker/24hr` (weight 80 for all symbols,
  2 / 40 for one / up to 100 symbols), `GET /api/v3/klines` (weight 2; `startTime`, `endTime`,
  `limit` default 500 max 1000; with `startTime` the oldest bars from there, otherwise the
  newest; the bar of the server's current day is served unclosed; -1121 for an unknown symbol);
* a clock that starts at a configurable `now` (and runs with real time): it drives the `Date`
  header, which bars are closed, and the weight windows;
* weight metering in fixed windows of `window_s` seconds (60 on Binance; scaled down for tests
  and benchmarks), with `X-MBX-USED-WEIGHT-1M`; past the limit a 429 with `Retry-After` (the
  rest of the window); a client that keeps sending during that Retry-After (beyond a short grace
  for requests already in flight) gets 418, an IP ban that doubles each time. Every answer is
  recorded (`records`, `status_counts`);
* faults on demand (`inject`): an HTML 502 page, truncated JSON, a row with 11 fields,
  duplicate and out-of-order rows, a dropped connection, a slow answer; `remove_symbol` makes
  a symbol vanish (-1121); `foreign_weight_per_window` simulates another client on the IP.

Bars come from any dict of OHLCV DataFrames (or 12-column kline frames, served verbatim), e.g.
the freqtrade JSON folder of `/work/shared/data/real/` through `load_freqtrade_folder`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import email.utils
import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

DAY_MS = 86_400_000
KLINE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time",
    "quote_volume", "trades", "taker_buy_base_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")
FAULTS = ("html_502", "truncated_json", "row_11_fields", "shuffle_duplicates", "drop_connection", "slow")


def load_freqtrade_json(path: str | Path) -> pd.DataFrame:
    """A freqtrade `[[ms, o, h, l, c, v], ...]` file as an OHLCV frame."""
    rows = json.loads(Path(path).read_text())
    frame = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close", "volume"])
    return frame.astype({"timestamp": "int64", **{c: "float64" for c in ("open", "high", "low", "close", "volume")}})


def load_freqtrade_folder(folder: str | Path) -> dict[str, pd.DataFrame]:
    """`BTC_USDT-1d.json` -> `{"BTCUSDT": frame}` for every file of a freqtrade data folder."""
    out = {}
    for path in sorted(Path(folder).glob("*-1d.json")):
        base, quote = path.name[: -len("-1d.json")].split("_")
        out[base + quote] = load_freqtrade_json(path)
    return out


def split_pair(symbol: str) -> tuple[str, str]:
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, ""


def decimal_string(x: float) -> str:
    """Binance prints decimals as strings; the shortest exact form keeps every bit."""
    return np.format_float_positional(float(x), unique=True, trim="0")


@dataclass
class Record:
    """One answered request, as the server saw it."""

    at: float  # time.monotonic() on arrival
    path: str
    symbol: str | None
    weight: int
    status: int  # 0: the connection was dropped without an answer
    used_weight: int  # in the window, after this request
    query: dict = field(default_factory=dict)


@dataclass
class _Fault:
    kind: str
    symbol: str | None
    path: str
    remaining: float  # math.inf: every matching request


@dataclass
class _Market:
    rows: list[list[Any]]  # kline rows, open time ascending, times in ms
    open_times: list[int]
    base: str
    quote: str
    status: str = "TRADING"


class FakeExchange:
    def __init__(
        self,
        bars: dict[str, pd.DataFrame | list] | None = None,
        *,
        now: dt.datetime | None = None,
        weight_limit: int = 6000,
        window_s: float = 60.0,
        latency_s: float = 0.0,
        time_unit: str = "ms",
        grace_s: float = 0.5,
        slow_s: float = 2.0,
        foreign_weight_per_window: int = 0,
    ):
        if time_unit not in ("ms", "us"):
            raise ValueError("time_unit must be 'ms' or 'us'")
        self.weight_limit = weight_limit
        self.window_s = window_s
        self.latency_s = latency_s
        self.time_unit = time_unit
        self.grace_s = grace_s
        self.slow_s = slow_s
        self.foreign_weight_per_window = foreign_weight_per_window
        self._lock = threading.Lock()
        self._markets: dict[str, _Market] = {}
        for symbol, frame in (bars or {}).items():
            self.add_symbol(symbol, frame)
        if now is None:  # default: every bar has closed
            last = max((m.open_times[-1] for m in self._markets.values() if m.open_times), default=0)
            now = dt.datetime.fromtimestamp((last + DAY_MS) / 1000 + 3600, tz=dt.timezone.utc)
        self._now0_ms = now.timestamp() * 1000.0
        self._t0 = time.monotonic()
        self._faults: list[_Fault] = []
        self._used: Counter = Counter()  # window index -> weight
        self._penalty_until = -math.inf  # server ms: end of the Retry-After of the last 429
        self._last_429 = -math.inf
        self._banned_until = -math.inf
        self._ban_s = 2 * window_s
        self.records: list[Record] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- setup -------------------------------------------------------------------------------

    def add_symbol(self, symbol: str, bars: pd.DataFrame | list, *, base: str | None = None, quote: str | None = None, status: str = "TRADING") -> None:
        """Serve `bars`: an OHLCV frame, a 12-column kline frame, or raw kline rows (verbatim)."""
        rows = _kline_rows(bars)
        rows.sort(key=lambda r: r[0])
        b, q = split_pair(symbol)
        with self._lock:
            self._markets[symbol] = _Market(rows, [r[0] for r in rows], base or b, quote or q, status)

    def remove_symbol(self, symbol: str) -> None:
        """The symbol vanishes (delisted, renamed): klines answer -1121 from now on."""
        with self._lock:
            self._markets.pop(symbol, None)

    def ban_for(self, seconds: float) -> None:
        """The IP is banned (418) for `seconds`, as if an earlier client had ignored a 429."""
        with self._lock:
            self._banned_until = self.server_ms() + seconds * 1000

    def inject(self, kind: str, *, symbol: str | None = None, times: float = 1, path: str = "/api/v3/klines") -> None:
        """The next `times` matching requests (math.inf: all) get fault `kind` (see FAULTS)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; choose from {FAULTS}")
        with self._lock:
            self._faults.append(_Fault(kind, symbol, path, times))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FakeExchange":
        handler = type("Handler", (_Handler,), {"exchange": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeExchange":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the exchange first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def data_params(self, **binance: Any) -> dict:
        """A `data:` params block pointing quantlake's binance source at this server."""
        block = {"base_url": self.url, "weight_limit_per_minute": self.weight_limit, "weight_window_s": self.window_s}
        block.update(binance)
        return {"source": "binance", "binance": block}

    # -- what happened -----------------------------------------------------------------------

    @property
    def status_counts(self) -> Counter:
        with self._lock:
            return Counter(r.status for r in self.records)

    def requests_for(self, path: str) -> list[Record]:
        with self._lock:
            return [r for r in self.records if r.path == path]

    def server_ms(self) -> float:
        """The server's clock: `now` at start, then running with real time."""
        return self._now0_ms + (time.monotonic() - self._t0) * 1000.0

    # -- request handling (called by the handler threads) -------------------------------------

    def handle(self, path: str, query: dict[str, str]) -> tuple[int, dict, bytes | None]:
        """(status, extra headers, body); body None means: drop the connection."""
        if self.latency_s:
            time.sleep(self.latency_s / 2)  # the request's way in
        weight = _weight(path, query)
        symbol = query.get("symbol")
        with self._lock:
            now = self.server_ms()
            status, retry_after, used = self._admit(now, weight)
            fault = self._take_fault(path, symbol) if status == 200 else None
        headers = {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}
        if status in (429, 418):
            headers["Retry-After"] = str(retry_after)
            code, msg = (-1003, "Too much request weight used; current limit is %d request weight per window." % self.weight_limit) if status == 429 else (-1003, "Way too much request weight used; IP banned until later.")
            out = (status, headers, _json({"code": code, "msg": msg}))
        else:
            out = self._answer(path, query, now, fault, headers)
        self._record(path, query, weight, out[0], used)
        if fault is not None and fault.kind == "slow":
            time.sleep(self.slow_s)
        if self.latency_s:
            time.sleep(self.latency_s / 2)  # the answer's way out
        return out

    def _admit(self, now: float, weight: int) -> tuple[int, int, int]:
        window = int(now // (self.window_s * 1000))
        if window not in self._used:
            self._used[window] = self.foreign_weight_per_window
        used = self._used[window]
        if now < self._banned_until:
            return 418, math.ceil((self._banned_until - now) / 1000), used
        if now < self._penalty_until:
            if now - self._last_429 > self.grace_s * 1000:  # kept going after a 429: ban the IP
                self._banned_until = now + self._ban_s * 1000
                self._ban_s *= 2
                return 418, math.ceil((self._banned_until - now) / 1000), used
            return 429, math.ceil((self._penalty_until - now) / 1000), used
        if used + weight > self.weight_limit:
            window_end = (window + 1) * self.window_s * 1000
            self._penalty_until = window_end
            self._last_429 = now
            return 429, math.ceil((window_end - now) / 1000), used
        self._used[window] = used + weight
        return 200, 0, used + weight

    def _take_fault(self, path: str, symbol: str | None) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.path == path and fault.symbol in (None, symbol):
                fault.remaining -= 1
                return fault
        return None

    def _record(self, path: str, query: dict, weight: int, status: int, used: int) -> None:
        with self._lock:
            self.records.append(Record(time.monotonic(), path, query.get("symbol"), weight, status, used, query))

    # -- endpoints ---------------------------------------------------------------------------

    def _answer(self, path: str, query: dict, now: float, fault: _Fault | None, headers: dict) -> tuple[int, dict, bytes | None]:
        if fault is not None and fault.kind == "html_502":
            headers["Content-Type"] = "text/html"
            return 502, headers, b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
        if fault is not None and fault.kind == "drop_connection":
            return 0, headers, None
        if path == "/api/v3/exchangeInfo":
            status, body = 200, self._exchange_info(now)
        elif path == "/api/v3/ticker/24hr":
            status, body = self._ticker(query, now)
        elif path == "/api/v3/klines":
            status, body = self._klines(query, now)
        elif path == "/api/v3/time":
            status, body = 200, {"serverTime": int(now)}
        else:
            status, body = 404, {"code": -1000, "msg": f"Unknown endpoint {path}"}
        if status == 200 and fault is not None:
            body = _apply_row_fault(fault.kind, body)
        data = _json(body)
        if fault is not None and fault.kind == "truncated_json":
            data = data[: len(data) // 2]
        return status, headers, data

    def _exchange_info(self, now: float) -> dict:
        with self._lock:
            markets = dict(self._markets)
        symbols = []
        for name, m in sorted(markets.items()):
            symbols.append(
                {
                    "symbol": name, "status": m.status, "baseAsset": m.base, "baseAssetPrecision": 8,
                    "quoteAsset": m.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                    "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": True, "ocoAllowed": True,
                    "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                    "filters": [
                        {"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000000.00000000", "tickSize": "0.00000001"},
                        {"filterType": "LOT_SIZE", "minQty": "0.00000001", "maxQty": "9000000.00000000", "stepSize": "0.00000001"},
                    ],
                    "permissions": [], "permissionSets": [["SPOT"]],
                }
            )  # fmt: skip
        return {
            "timezone": "UTC",
            "serverTime": int(now),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit}],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _ticker(self, query: dict, now: float) -> tuple[int, Any]:
        with self._lock:
            markets = dict(self._markets)
        if "symbol" in query:
            names = [query["symbol"]]
        elif "symbols" in query:
            names = json.loads(query["symbols"])
        else:
            names = sorted(markets)
        out = []
        for name in names:
            if name not in markets:
                return 400, {"code": -1121, "msg": "Invalid symbol."}
            m = markets[name]
            i = bisect.bisect_right(m.open_times, now - DAY_MS) - 1  # the last closed day
            row = m.rows[i] if i >= 0 else None
            out.append(
                {
                    "symbol": name,
                    "lastPrice": row[4] if row else "0",
                    "volume": row[5] if row else "0",
                    "quoteVolume": row[7] if row else "0",
                    "openTime": int(now) - DAY_MS,
                    "closeTime": int(now),
                    "count": int(row[8]) if row else 0,
                }
            )
        return 200, (out[0] if "symbol" in query else out)

    def _klines(self, query: dict, now: float) -> tuple[int, Any]:
        name = query.get("symbol")
        with self._lock:
            market = self._markets.get(name or "")
        if market is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if query.get("interval") != "1d":
            return 400, {"code": -1120, "msg": "Invalid interval."}
        try:
            limit = int(query.get("limit", 500))
            start = _ms(query.get("startTime"))
            end = _ms(query.get("endTime"))
        except ValueError:
            return 400, {"code": -1100, "msg": "Illegal characters found in a parameter."}
        if not 1 <= limit <= 1000:
            return 400, {"code": -1130, "msg": "Invalid data sent for a parameter."}
        cap = now if end is None else min(now, end)  # never a bar that has not opened yet
        hi = bisect.bisect_right(market.open_times, cap)
        if start is not None:
            lo = bisect.bisect_left(market.open_times, start)
            picked = market.rows[lo : min(hi, lo + limit)]
        else:
            picked = market.rows[max(0, hi - limit) : hi]
        if self.time_unit == "us":
            picked = [[r[0] * 1000, *r[1:6], r[6] * 1000, *r[7:]] for r in picked]
        return 200, picked


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:  # a client that gave up is normal here
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Binance
    exchange: FakeExchange

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        status, headers, body = self.exchange.handle(url.path, query)
        if body is None:
            self.close_connection = True
            return
        try:
            self.send_response(status)
            headers.setdefault("Content-Type", "application/json;charset=UTF-8")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(self.exchange.server_ms() / 1000, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --------------------------------------------------------------------------- helpers


def _weight(path: str, query: dict) -> int:
    if path == "/api/v3/klines":
        return 2
    if path == "/api/v3/exchangeInfo":
        return 20
    if path == "/api/v3/ticker/24hr":
        if "symbol" in query:
            return 2
        if "symbols" in query:
            n = len(json.loads(query["symbols"]))
            return 2 if n <= 20 else 40 if n <= 100 else 80
        return 80
    return 1


def _ms(value: str | None) -> int | None:
    if value is None:
        return None
    v = int(value)
    return v // 1000 if v >= 10**14 else v


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _apply_row_fault(kind: str, body: Any) -> Any:
    if not isinstance(body, list) or not body:
        return body
    rows = [list(r) for r in body]
    if kind == "row_11_fields":
        rows[len(rows) // 2] = rows[len(rows) // 2][:11]
    elif kind == "shuffle_duplicates":
        # every third row twice, and the page served newest first
        rows = [r for i, r in enumerate(rows) for _ in range(2 if i % 3 == 0 else 1)][::-1]
    return rows


def _kline_rows(bars: pd.DataFrame | list) -> list[list[Any]]:
    if isinstance(bars, list):  # raw rows, e.g. a recorded REST payload
        return [list(r) for r in bars]
    if set(KLINE_COLUMNS) <= set(bars.columns):
        out = []
        for r in bars[list(KLINE_COLUMNS)].itertuples(index=False):
            out.append([int(r[0]), *(decimal_string(x) for x in r[1:6]), int(r[6]), decimal_string(r[7]), int(r[8]), decimal_string(r[9]), decimal_string(r[10]), str(r[11])])
        return out
    ts = bars["timestamp"].to_numpy(dtype="int64")
    o, h, l, c, v = (bars[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "volume"))
    out = []
    for i in range(len(ts)):
        quote_volume = c[i] * v[i]
        out.append(
            [
                int(ts[i]), decimal_string(o[i]), decimal_string(h[i]), decimal_string(l[i]), decimal_string(c[i]),
                decimal_string(v[i]), int(ts[i]) + DAY_MS - 1, decimal_string(quote_volume), 1000 + i % 97,
                decimal_string(v[i] / 2), decimal_string(quote_volume / 2), "0",
            ]
        )  # fmt: skip
    return out
