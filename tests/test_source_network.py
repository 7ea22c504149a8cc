"""Network sources fail fast and say what to do (`sources/network.py`): a host that accepts and
never answers, a host name that does not resolve, and a host that answered before. Real HTTP on
127.0.0.1 only; no request leaves the machine."""

from __future__ import annotations

import datetime as dt
import math
import socket
import time

import pytest

from quantlake.cli import main
from quantlake.contracts import SymbolId
from quantlake.sources.archive import ArchiveConfig, ArchiveSource
from quantlake.sources.base import SourceError
from quantlake.sources.binance import BinanceConfig, BinanceSource
from quantlake.sources.network import OFFLINE_HINT

BTC = SymbolId.parse("BINANCE:BTCUSDT")
DAY = dt.date(2022, 1, 1)
SLACK_S = 3.0  # scheduling and connection set-up on a shared machine


@pytest.fixture
def silent_host():
    """`host:port` of a server that accepts connections and never answers a byte."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # the kernel completes the handshakes; nobody ever reads or writes
        yield "127.0.0.1:%d" % server.getsockname()[1]


def binance(host: str, logged: list, **overrides) -> BinanceSource:
    cfg = BinanceConfig(base_url=f"http://{host}", **{"timeout_s": 0.3, "retries": 2, "backoff_s": 0.05, "max_backoff_s": 0.1, **overrides})
    return BinanceSource(cfg, log=logged.append)


def archive(host: str, logged: list) -> ArchiveSource:
    return ArchiveSource(ArchiveConfig(base=f"http://{host}", mode="monthly", timeout_s=0.3, retries=2), log=logged.append)


def calls(kind: str, src):
    """A call that makes the source go to the network."""
    if kind == "binance":
        return lambda: src.list_markets(DAY)
    return lambda: src.fetch_bars(BTC, DAY, DAY)


@pytest.mark.parametrize("kind", ["binance", "archive"])
def test_a_host_that_never_answers_gives_up_within_the_budget_announcing_each_retry(kind, silent_host):
    logged: list[str] = []
    src = binance(silent_host, logged) if kind == "binance" else archive(silent_host, logged)
    t0 = time.monotonic()
    with pytest.raises(SourceError) as info:
        calls(kind, src)()
    elapsed = time.monotonic() - t0
    budget = src.retrier.budget_s  # 3 attempts of 0.3 s + the waits between them
    assert budget == pytest.approx(0.9 + (0.05 + 0.1 if kind == "binance" else 0.5 + 1.0))
    assert elapsed <= budget + SLACK_S, (elapsed, budget)
    waits = ["0.05s", "0.1s"] if kind == "binance" else ["0.5s", "1s"]
    assert len(logged) == 2, logged
    for n, (line, wait) in enumerate(zip(logged, waits), start=1):
        assert line.startswith(f"{silent_host}: GET ") and "no answer within the timeout" in line
        assert line.endswith(f"; retry {n}/2 in {wait}"), line
    message = str(info.value)
    assert info.value.symbol is None  # the whole source: nothing else will get through either
    assert message.startswith(f"cannot reach {silent_host} (") and "gave up after 3 attempts" in message
    assert message.endswith(OFFLINE_HINT) and "\n" not in message
    assert "data.source: sim" in message and "data.source: files" in message
    # every later request fails at once with the same line, without waiting on the host again
    t1 = time.monotonic()
    with pytest.raises(SourceError) as again:
        src.fetch_bars(SymbolId.parse("BINANCE:ETHUSDT"), DAY, DAY)
    assert str(again.value) == message and time.monotonic() - t1 < 0.3
    assert len(logged) == 2


@pytest.mark.parametrize("kind", ["binance", "archive"])
def test_a_host_name_that_does_not_resolve_fails_at_once_with_one_line(kind):
    logged: list[str] = []
    src = binance("nonexistent.invalid", logged) if kind == "binance" else archive("nonexistent.invalid", logged)
    t0 = time.monotonic()
    with pytest.raises(SourceError) as info:
        calls(kind, src)()
    assert time.monotonic() - t0 <= src.retrier.budget_s + SLACK_S
    assert logged == []  # no retry: a name the resolver does not know will not answer
    message = str(info.value)
    assert message.startswith("cannot reach nonexistent.invalid (the host name does not resolve: ")
    assert message.endswith(OFFLINE_HINT) and "\n" not in message
    assert "NameResolutionError" not in message and "HTTPConnectionPool" not in message


def test_a_host_that_answered_before_fails_one_request_then_is_given_up(fake_exchange, real_freqtrade_bars):
    ex = fake_exchange({k: real_freqtrade_bars[k] for k in ("SOLUSDT", "DOTUSDT")})
    logged: list[str] = []
    src = BinanceSource(BinanceConfig(base_url=ex.url, timeout_s=0.3, retries=1, backoff_s=0.01, max_backoff_s=0.01), log=logged.append)
    assert len(src.list_markets(dt.date(2022, 10, 10))) == 2
    ex.inject("drop_connection", symbol="SOLUSDT", times=math.inf)
    with pytest.raises(SourceError) as info:
        src.fetch_bars(SymbolId.parse("BINANCE:SOLUSDT"), DAY, DAY)
    assert info.value.symbol == "BINANCE:SOLUSDT" and info.value.retryable  # one request's bad moment
    assert len(src.fetch_bars(SymbolId.parse("BINANCE:DOTUSDT"), DAY, DAY)) == 1  # the host answers again
    with pytest.raises(SourceError):
        src.fetch_bars(SymbolId.parse("BINANCE:SOLUSDT"), DAY, DAY)
    ex.inject("drop_connection", times=math.inf)  # now nothing answers any more
    with pytest.raises(SourceError) as gone:
        src.fetch_bars(SymbolId.parse("BINANCE:DOTUSDT"), DAY, DAY)
    assert gone.value.symbol is None and str(gone.value).startswith(f"cannot reach {ex.url.split('//')[1]}")
    assert any("retry 1/1 in 0.01s" in line for line in logged)


def test_the_cli_ends_with_one_line_naming_the_host_and_what_to_do(silent_host, tmp_path, monkeypatch, capsys):
    from pathlib import Path

    params = tmp_path / "params.yaml"
    params.write_text(
        "data:\n  source: binance\n  as_of: '2022-10-10'\n"
        f"  binance:\n    base_url: http://{silent_host}\n    timeout_s: 0.2\n    retries: 1\n    backoff_s: 0.05\n"
    )
    monkeypatch.setenv("QUANTLAKE_NOW", "2022-10-11T06:00:00+00:00")
    scanners = Path(__file__).resolve().parents[1] / "configs" / "scanners"
    code = main(["--params", str(params), "discover", "--scanners", str(scanners), "--out", str(tmp_path / "c.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[0].startswith(f"{silent_host}: GET /api/v3/exchangeInfo: ") and err[0].endswith("retry 1/1 in 0.05s")
    assert err[-1].startswith(f"quantlake discover: error: cannot reach {silent_host} (")
    assert err[-1].endswith("`data.source: sim` (the simulated exchange) or `data.source: files` (your own bar files) in params.yaml")
    assert not (tmp_path / "c.json").exists()


def test_ingest_stops_at_an_unreachable_host_with_its_one_line(silent_host, tmp_path):
    from quantlake.data.ingest import IngestConfig, ingest_symbols
    from quantlake.data.staging import StagingStore
    from quantlake.sources.base import HostUnreachable

    logged: list[str] = []
    src = binance(silent_host, logged)
    symbols = [SymbolId.of("BINANCE", f"{base}USDT") for base in ("BTC", "ETH", "SOL", "ADA", "XRP", "DOT", "LTC", "TRX")]
    store = StagingStore(tmp_path / "bars", tmp_path / "quarantine")
    cfg = IngestConfig(as_of=DAY, start=dt.date(2021, 12, 1), workers=2)
    t0 = time.monotonic()
    with pytest.raises(HostUnreachable) as info:
        ingest_symbols(symbols, src, store, cfg, now=dt.datetime(2022, 1, 3, tzinfo=dt.timezone.utc), log=logged.append, progress=False)
    # two workers each spend at most one request's budget; the other symbols never wait on the host
    assert time.monotonic() - t0 <= 2 * src.retrier.budget_s + SLACK_S
    assert str(info.value).startswith(f"cannot reach {silent_host} (") and str(info.value).endswith(OFFLINE_HINT)
    assert not any("FAILED" in line for line in logged), logged
