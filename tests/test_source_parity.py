"""Through ingestion, the real 33 pairs over HTTP (fake exchange) and from their files agree byte
for byte, and a failed fetch never changes what is already stored."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from quantlake.contracts import SymbolId
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.staging import StagingStore
from quantlake.sources import make_source

UTC = dt.timezone.utc
NOW = dt.datetime(2022, 10, 10, 12, tzinfo=UTC)  # the fake's clock: 2022-10-10 has not closed yet
AS_OF = dt.date(2022, 10, 9)


def store_at(path: Path) -> StagingStore:
    return StagingStore(path / "bars", path / "quarantine")


def files_bytes(path: Path, pattern: str = "*.parquet") -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob(pattern)) if p.is_file()}


def quiet(msg: str) -> None:
    pass


def test_http_and_files_ingest_byte_identical_parquet(tmp_path, fake_exchange, real_data_dir, real_freqtrade_bars):
    symbols = [SymbolId.of("BINANCE", s) for s in sorted(real_freqtrade_bars)]
    assert len(symbols) == 33
    cfg = IngestConfig(as_of=AS_OF, start=dt.date(2017, 1, 1), workers=4)
    ex = fake_exchange(real_freqtrade_bars, now=NOW)
    http = make_source(ex.data_params())
    local = make_source({"source": "files", "files": {"path": str(real_data_dir / "binance_spot_1d_freqtrade_json")}})
    for name, src in (("http", http), ("files", local)):
        summary = ingest_symbols(symbols, src, store_at(tmp_path / name), cfg, now=NOW, log=quiet, progress=False)
        assert summary.count("fetched") == 33 and not summary.failed, summary.line()
    over_http, from_files = files_bytes(tmp_path / "http"), files_bytes(tmp_path / "files")
    assert len(over_http) >= 33 + 1  # every bar file, and the quarantine of the real bad prints
    assert any(k.startswith("quarantine/") for k in over_http)
    assert over_http == from_files
    pages = sum(math.ceil((len(bars) - 1) / 1000) for bars in real_freqtrade_bars.values())  # up to AS_OF
    assert ex.status_counts == {200: pages}  # one request per 1000 bars: no retry, no empty page


def test_a_failed_fetch_changes_nothing_already_stored(tmp_path, fake_exchange, real_freqtrade_bars):
    names = ["BTCUSDT", "ETHUSDT", "LINKUSDT", "SOLUSDT", "FTTUSDT", "DOGEUSDT"]
    symbols = [SymbolId.of("BINANCE", s) for s in names]
    ex = fake_exchange({s: real_freqtrade_bars[s] for s in names}, now=NOW)
    src = make_source(ex.data_params(retries=1, backoff_s=0.01, max_pause_s=5))
    store = store_at(tmp_path)
    first = ingest_symbols(symbols, src, store, IngestConfig(as_of=dt.date(2022, 9, 30), start=dt.date(2020, 1, 1)), now=NOW, log=quiet, progress=False)
    assert not first.failed
    before = files_bytes(tmp_path, "*")
    state_before = store.load_state()["symbols"]

    ex.inject("html_502", symbol="ETHUSDT", times=math.inf)
    ex.inject("row_11_fields", symbol="LINKUSDT", times=math.inf)
    ex.inject("truncated_json", symbol="SOLUSDT", times=math.inf)
    ex.remove_symbol("FTTUSDT")  # vanished between discovery and ingestion
    later = IngestConfig(as_of=AS_OF, start=dt.date(2020, 1, 1))
    second = ingest_symbols(symbols, src, store, later, now=NOW, log=quiet, progress=False)
    failed = {o.symbol: o.detail for o in second.failed}
    assert set(failed) == {"BINANCE:ETHUSDT", "BINANCE:LINKUSDT", "BINANCE:SOLUSDT", "BINANCE:FTTUSDT"}
    assert "HTTP 502" in failed["BINANCE:ETHUSDT"] and "got 11" in failed["BINANCE:LINKUSDT"]
    assert "unreadable JSON" in failed["BINANCE:SOLUSDT"] and "-1121" in failed["BINANCE:FTTUSDT"]
    after = files_bytes(tmp_path, "*")
    state_after = store.load_state()["symbols"]
    for sid in failed:
        file = SymbolId.parse(sid).filename
        for layer in ("bars", "quarantine"):
            assert after.get(f"{layer}/{file}") == before.get(f"{layer}/{file}"), (sid, layer)
        assert state_after[sid] == state_before[sid]
    for sid in ("BINANCE:BTCUSDT", "BINANCE:DOGEUSDT"):  # the others did move on
        assert state_after[sid]["end_date"] == AS_OF.isoformat() != state_before[sid]["end_date"]

    ex.ban_for(3600)  # the whole source fails: not one byte changes
    frozen = files_bytes(tmp_path, "*")
    third = ingest_symbols(symbols, src, store, IngestConfig(as_of=AS_OF, start=dt.date(2017, 1, 1)), now=NOW, log=quiet, progress=False)
    assert len(third.failed) == len(symbols)
    assert files_bytes(tmp_path, "*") == frozen
    assert 1 <= ex.status_counts[418] <= 4  # at most the requests already under way, then everyone stays away
