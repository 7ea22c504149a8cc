"""The `binance` source against the fake exchange (real HTTP on 127.0.0.1) and its pacer."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests

from fake_exchange import KLINE_COLUMNS
from quantlake.contracts import OHLCV_COLUMNS, ContractError, SymbolId, date_to_ms
from quantlake.sources import make_source
from quantlake.sources.base import SourceError
from quantlake.sources.binance import DEFAULT_BASE_URL, BinanceConfig, BinanceSource
from quantlake.sources.ratelimit import WeightPacer

UTC = dt.timezone.utc
NOW = dt.datetime(2022, 10, 11, 6, tzinfo=UTC)  # every bar of the real JSON folder has closed
BTC = SymbolId.parse("BINANCE:BTCUSDT")
FAST_RETRIES = {"backoff_s": 0.01, "max_backoff_s": 0.02}


@pytest.fixture
def connect():
    sources = []

    def make(exchange, **binance) -> BinanceSource:
        src = make_source(exchange.data_params(**{**FAST_RETRIES, **binance}))
        sources.append(src)
        return src

    yield make
    for src in sources:
        src.close()


def expected(frame: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    ts = frame["timestamp"]
    keep = (ts >= date_to_ms(start)) & (ts <= date_to_ms(end))
    return frame[keep].reset_index(drop=True)


def sym(name: str) -> SymbolId:
    return SymbolId.of("BINANCE", name)


# --------------------------------------------------------------------------- bars


def test_paging_across_more_than_1000_bars(fake_exchange, connect, real_freqtrade_bars):
    ex = fake_exchange({"BTCUSDT": real_freqtrade_bars["BTCUSDT"]}, now=NOW)
    src = connect(ex)
    start, end = dt.date(2017, 1, 1), dt.date(2022, 10, 10)
    bars = src.fetch_bars(BTC, start, end)
    assert len(bars) == 1881
    pd.testing.assert_frame_equal(bars, expected(real_freqtrade_bars["BTCUSDT"], start, end))
    pages = ex.requests_for("/api/v3/klines")
    assert [r.status for r in pages] == [200, 200]  # 1000 + 881 bars, no extra empty page


def test_window_inside_history_and_exact_page_boundary(fake_exchange, connect, real_freqtrade_bars):
    frame = real_freqtrade_bars["BTCUSDT"]
    ex = fake_exchange({"BTCUSDT": frame}, now=NOW)
    src = connect(ex)
    start, end = dt.date(2018, 1, 1), dt.date(2019, 6, 30)
    pd.testing.assert_frame_equal(src.fetch_bars(BTC, start, end), expected(frame, start, end))
    n = len(ex.requests_for("/api/v3/klines"))
    listing = dt.date(2017, 8, 17)
    full = src.fetch_bars(BTC, listing, listing + dt.timedelta(days=999))
    pd.testing.assert_frame_equal(full, frame.iloc[:1000])
    assert len(ex.requests_for("/api/v3/klines")) == n + 1  # a full page ending on `end` needs no second page
    assert src.fetch_bars(BTC, end, start).empty


def test_unclosed_bar_is_dropped(fake_exchange, connect, real_freqtrade_bars):
    frame = real_freqtrade_bars["ETHUSDT"]
    ex = fake_exchange({"ETHUSDT": frame}, now=dt.datetime(2022, 10, 10, 12, tzinfo=UTC))
    src = connect(ex)
    bars = src.fetch_bars(sym("ETHUSDT"), dt.date(2022, 9, 1), dt.date(2022, 10, 10))
    served = json.loads(requests.get(f"{ex.url}/api/v3/klines", params={"symbol": "ETHUSDT", "interval": "1d", "limit": 1}).text)
    assert served[0][0] == date_to_ms(dt.date(2022, 10, 10))  # the server does serve today's bar...
    assert bars["timestamp"].iloc[-1] == date_to_ms(dt.date(2022, 10, 9))  # ...and the source drops it
    pd.testing.assert_frame_equal(bars, expected(frame, dt.date(2022, 9, 1), dt.date(2022, 10, 9)))


def test_microsecond_timestamps(fake_exchange, connect, real_freqtrade_bars):
    ex = fake_exchange({"BTCUSDT": real_freqtrade_bars["BTCUSDT"]}, now=NOW, time_unit="us")
    served = json.loads(requests.get(f"{ex.url}/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1d", "limit": 1}).text)
    assert served[0][0] > 10**15  # the fake really speaks microseconds
    bars = connect(ex).fetch_bars(BTC, dt.date(2017, 1, 1), dt.date(2022, 10, 10))
    pd.testing.assert_frame_equal(bars, real_freqtrade_bars["BTCUSDT"])


def test_real_rest_payload_with_nonzero_field_12(fake_exchange, connect, real_data_dir):
    path = next((real_data_dir / "binance_rest_payload_sample").glob("*.json"))
    rows = json.loads(path.read_text())
    assert all(float(r[11]) != 0 for r in rows)  # the unused field really is non-zero here
    ex = fake_exchange({"BTCUSDT": rows})
    bars = connect(ex).fetch_bars(BTC, dt.date(2017, 8, 1), dt.date(2017, 8, 31))
    assert list(bars.columns) == list(OHLCV_COLUMNS)
    assert bars["timestamp"].tolist() == [r[0] for r in rows]
    for col, j in zip(OHLCV_COLUMNS[1:], range(1, 6)):
        assert bars[col].tolist() == [float(r[j]) for r in rows]


def test_short_2018_02_08_bar_is_still_that_days_bar(fake_exchange, connect, real_data_dir):
    table = pd.read_csv(real_data_dir / "binance_spot_1d_klines12_csv/BTCUSDT-1d.csv").iloc[:, 1:]
    table.columns = list(KLINE_COLUMNS)
    day = date_to_ms(dt.date(2018, 2, 8))
    row = table[table["open_time"] == day].iloc[0]
    assert row["close_time"] - row["open_time"] < 3600_000  # the outage: 28 minutes of trading
    ex = fake_exchange({"BTCUSDT": table}, now=NOW)
    bars = connect(ex).fetch_bars(BTC, dt.date(2018, 2, 1), dt.date(2018, 2, 15))
    assert len(bars) == 15 and bars["timestamp"].diff().dropna().eq(86_400_000).all()
    got = bars[bars["timestamp"] == day].iloc[0]
    assert (got["open"], got["close"], got["volume"]) == (row["open"], row["close"], row["volume"])


def test_list_markets_from_exchange_info_and_ticker(fake_exchange, connect, real_freqtrade_bars):
    bars = {k: real_freqtrade_bars[k] for k in ("BTCUSDT", "ETHUSDT", "LINKUSDT")}
    ex = fake_exchange(bars, now=NOW)
    ex.add_symbol("ETHBTC", real_freqtrade_bars["ETHUSDT"], status="BREAK")  # delisted: not listed
    ex.add_symbol("币安USDT", real_freqtrade_bars["BTCUSDT"])  # Binance has such names; never a path
    src = connect(ex)
    markets = src.list_markets(dt.date(2022, 10, 10))
    assert [str(m.symbol) for m in markets] == ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT", "BINANCE:LINKUSDT"]
    btc = markets[0]
    assert (btc.base, btc.quote, btc.status, btc.asset_type) == ("BTC", "USDT", "TRADING", "spot")
    last = real_freqtrade_bars["BTCUSDT"].iloc[-1]  # the fake's 24h = the last closed day
    assert btc.traded_value_24h == pytest.approx(last["close"] * last["volume"])
    assert btc.traded_value_30d is None and btc.listed_on is None
    assert src.stats["skipped_invalid_symbol"] == 1
    assert sum(r.weight for r in ex.records) == 100  # exchangeInfo 20 + ticker/24hr 80


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("fault", ["html_502", "truncated_json", "drop_connection", "slow"])
def test_transient_fault_is_retried(fault, fake_exchange, connect, real_freqtrade_bars):
    frame = real_freqtrade_bars["SOLUSDT"]
    ex = fake_exchange({"SOLUSDT": frame}, now=NOW, slow_s=1.0)
    ex.inject(fault, symbol="SOLUSDT", times=1)
    src = connect(ex, timeout_s=0.4)
    bars = src.fetch_bars(sym("SOLUSDT"), dt.date(2020, 1, 1), dt.date(2022, 10, 10))
    pd.testing.assert_frame_equal(bars, frame)
    assert src.stats["retries"] == 1


@pytest.mark.parametrize(
    "fault, message",
    [
        ("html_502", "HTTP 502 '<html>"),
        ("truncated_json", "unreadable JSON"),
        ("row_11_fields", "expected a kline of 12 fields, got 11"),
    ],
)
def test_persistent_fault_is_a_clear_per_symbol_error(fault, message, fake_exchange, connect, real_freqtrade_bars):
    bars = {k: real_freqtrade_bars[k] for k in ("SOLUSDT", "DOTUSDT")}
    ex = fake_exchange(bars, now=NOW)
    ex.inject(fault, symbol="SOLUSDT", times=math.inf)
    src = connect(ex, retries=2)
    result = src.fetch_many([sym("SOLUSDT"), sym("DOTUSDT")], dt.date(2020, 1, 1), dt.date(2022, 10, 10))
    err = result[sym("SOLUSDT")]
    assert isinstance(err, SourceError) and err.symbol == "BINANCE:SOLUSDT"
    assert message in str(err)
    pd.testing.assert_frame_equal(result[sym("DOTUSDT")], bars["DOTUSDT"])


def test_duplicate_and_out_of_order_rows(fake_exchange, connect, real_freqtrade_bars):
    frame = real_freqtrade_bars["BTCUSDT"]
    ex = fake_exchange({"BTCUSDT": frame}, now=NOW)
    ex.inject("shuffle_duplicates", times=math.inf)
    bars = connect(ex).fetch_bars(BTC, dt.date(2017, 1, 1), dt.date(2022, 10, 10))
    pd.testing.assert_frame_equal(bars, frame)


def test_symbol_vanishing_between_discovery_and_ingestion(fake_exchange, connect, real_freqtrade_bars):
    ex = fake_exchange({k: real_freqtrade_bars[k] for k in ("FTTUSDT", "BTCUSDT")}, now=NOW)
    src = connect(ex)
    assert sym("FTTUSDT") in [m.symbol for m in src.list_markets(dt.date(2022, 10, 10))]
    ex.remove_symbol("FTTUSDT")
    with pytest.raises(SourceError, match=r"-1121: Invalid symbol") as info:
        src.fetch_bars(sym("FTTUSDT"), dt.date(2022, 1, 1), dt.date(2022, 10, 10))
    assert info.value.symbol == "BINANCE:FTTUSDT" and not info.value.retryable
    assert len(src.fetch_bars(BTC, dt.date(2022, 1, 1), dt.date(2022, 10, 10))) == 283


def test_other_exchange_symbol_is_refused(fake_exchange, connect):
    src = connect(fake_exchange({}))
    with pytest.raises(SourceError, match="not a BINANCE symbol"):
        src.fetch_bars(SymbolId.parse("SIM:BTCUSDT"), dt.date(2022, 1, 1), dt.date(2022, 1, 2))


# --------------------------------------------------------------------------- rate limits


def _universe(real_freqtrade_bars, n: int) -> dict:
    return {k: real_freqtrade_bars[k] for k in sorted(real_freqtrade_bars)[:n]}


START = dt.date(2020, 6, 1)  # one page of klines per symbol


def test_paced_client_stays_under_the_budget(fake_exchange, connect, real_freqtrade_bars):
    bars = _universe(real_freqtrade_bars, 33)
    ex = fake_exchange(bars, now=NOW, weight_limit=40, window_s=1.0)
    src = connect(ex, max_workers=8)
    result = src.fetch_many([sym(s) for s in bars], START, dt.date(2022, 10, 10))
    assert ex.status_counts == {200: 33}  # 66 weight over a 40-per-second budget, never a 429
    for s, frame in bars.items():
        pd.testing.assert_frame_equal(result[sym(s)], expected(frame, START, dt.date(2022, 10, 10)))


def test_429_pauses_every_worker_and_never_earns_a_418(fake_exchange, connect, real_freqtrade_bars):
    bars = _universe(real_freqtrade_bars, 20)
    # 40 weight sent at once by a client that believes it has 6,000 per minute: however the burst
    # falls across the server's 1 s windows, one of them gets more than 16 and answers 429.
    ex = fake_exchange(bars, now=NOW, weight_limit=16, window_s=1.0)
    src = connect(ex, max_workers=8, weight_limit_per_minute=6000, weight_window_s=60, retries=6)
    result = src.fetch_many([sym(s) for s in bars], START, dt.date(2022, 10, 10))
    counts = ex.status_counts
    assert counts[429] >= 1 and counts[418] == 0
    for s, frame in bars.items():
        pd.testing.assert_frame_equal(result[sym(s)], expected(frame, START, dt.date(2022, 10, 10)))


def test_fake_bans_a_client_that_ignores_429(fake_exchange):
    ex = fake_exchange({}, weight_limit=20, window_s=60.0, grace_s=0.0)
    with requests.Session() as s:
        codes = [s.get(f"{ex.url}/api/v3/exchangeInfo").status_code for _ in range(3)]
    assert codes == [200, 429, 418]


def test_used_weight_header_yields_to_another_client_on_the_ip(fake_exchange, connect, real_freqtrade_bars):
    bars = _universe(real_freqtrade_bars, 15)
    ex = fake_exchange(bars, now=NOW, weight_limit=50, window_s=1.0, foreign_weight_per_window=30)
    src = connect(ex, max_workers=4)
    result = src.fetch_many([sym(s) for s in bars], START, dt.date(2022, 10, 10))
    assert ex.status_counts == {200: 15}
    assert all(isinstance(v, pd.DataFrame) and len(v) for v in result.values())


def test_long_ban_fails_the_whole_source_fast(fake_exchange, connect, real_freqtrade_bars):
    ex = fake_exchange({"BTCUSDT": real_freqtrade_bars["BTCUSDT"]}, now=NOW)
    ex.ban_for(3600)
    src = connect(ex, max_pause_s=5)
    with pytest.raises(SourceError, match=r"HTTP 418.*Retry-After 3600s") as info:
        src.fetch_many([BTC], START, dt.date(2022, 10, 10))
    assert info.value.symbol is None  # the whole source, not one symbol
    with pytest.raises(SourceError, match="stay away"):
        src.fetch_bars(BTC, START, dt.date(2022, 10, 10))
    assert len(ex.records) == 1  # the second call did not even knock


def test_thread_safe_under_an_outside_pool(fake_exchange, connect, real_freqtrade_bars):
    bars = _universe(real_freqtrade_bars, 12)
    ex = fake_exchange(bars, now=NOW)
    src = connect(ex)
    with ThreadPoolExecutor(6) as pool:
        got = dict(zip(bars, pool.map(lambda s: src.fetch_bars(sym(s), dt.date(2017, 1, 1), dt.date(2022, 10, 10)), bars)))
    for s, frame in bars.items():
        pd.testing.assert_frame_equal(got[s], frame)


# --------------------------------------------------------------------------- params


def test_params_defaults_and_unknown_key():
    cfg = BinanceConfig.from_params({})
    assert cfg.base_url == DEFAULT_BASE_URL == "https://data-api.binance.vision"
    assert cfg.weight_limit_per_minute == 6000
    with pytest.raises(ContractError, match=r"data.binance.max_worker: unknown key \(did you mean max_workers\?\)"):
        BinanceConfig.from_params({"max_worker": 3})
    with pytest.raises(ContractError, match="data.binance.timeout_s: expected a number"):
        BinanceConfig.from_params({"timeout_s": "fast"})


# --------------------------------------------------------------------------- pacer arithmetic


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_pacer_bound_holds_whatever_the_network_delays():
    """Requests overlap (many in flight), arrive 0-0.25 s after their grant and are answered 0-0.25 s
    later; the server's fixed windows, at any phase, never count more than the safe limit."""
    rng = np.random.default_rng(3)
    clock = FakeClock()
    in_flight: list[tuple[float, float]] = []  # (answered at, weight)

    def sleep(s: float) -> None:  # the event loop: time passes, answers come back
        clock.t += s
        for item in sorted(in_flight):
            if item[0] <= clock.t:
                in_flight.remove(item)
                pacer.done(item[1])

    pacer = WeightPacer(600, 6.0, clock=clock, wall=clock, sleep=sleep)
    arrivals = []
    for i in range(4000):
        w = 20 if i % 500 == 0 else 2  # an exchangeInfo now and then
        pacer.acquire(w)
        arrive = clock.t + rng.uniform(0, 0.25)
        in_flight.append((arrive + rng.uniform(0, 0.25), w))
        arrivals.append((arrive, w))
    at = np.array([a for a, _ in arrivals])
    weight = np.array([w for _, w in arrivals])
    for phase in np.linspace(0, 6, 13):
        windows = np.floor((at - phase) / 6.0).astype(int)
        assert np.bincount(windows - windows.min(), weights=weight).max() <= pacer.safe_limit
    assert weight.sum() / (at.max() - at.min()) >= 0.9 * 600 / 6.0  # and it uses the budget


def test_pacer_pause_and_foreign_usage_cap():
    clock = FakeClock()
    pacer = WeightPacer(100, 1.0, clock=clock, wall=lambda: 50.25, sleep=clock.sleep)
    pacer.pause(3.0)
    t0 = clock.t
    pacer.acquire(2)
    assert clock.t >= t0 + 3.0
    pacer.done(2)
    pacer.observe_used_weight(93)  # someone else used 91 of the server's window, which ends in 0.75 s
    t1 = clock.t
    pacer.acquire(2)
    pacer.acquire(2)  # 98 - 93 = 5 left of the cap: two fit, a third waits for the window's end
    assert clock.t - t1 < 0.1
    pacer.acquire(2)
    assert clock.t - t1 >= 0.75


def test_pacer_is_shared_by_threads():
    pacer = WeightPacer(1_000_000, 60.0)
    threads = [threading.Thread(target=lambda: [pacer.acquire(1) or pacer.done(1) for _ in range(200)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pacer.weight_granted == 1600
