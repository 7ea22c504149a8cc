"""The `archive` and `hybrid` sources on a mirror built from the real 12-field kline CSVs."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from fake_exchange import KLINE_COLUMNS
from quantlake.contracts import ContractError, SymbolId, date_to_ms
from quantlake.sources import make_source
from quantlake.sources.archive import ArchiveConfig, daily_path, monthly_path
from quantlake.sources.base import SourceError
from quantlake.sources.files import read_bar_file

UTC = dt.timezone.utc
BTC = SymbolId.parse("BINANCE:BTCUSDT")
ETH = SymbolId.parse("BINANCE:ETHUSDT")
MONTHLY_UNTIL = dt.date(2023, 6, 30)  # July and August 2023 only have daily files yet
DAILY_UNTIL = dt.date(2023, 8, 14)  # the CSVs' last row (2023-08-15) is a partial day
MICROS_FROM = dt.date(2023, 1, 1)  # stands in for the archives' switch to microseconds in 2025


def write_archive_file(root: Path, relpath: str, lines: list[str], *, checksum: bool = True) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(path.name.replace(".zip", ".csv"), "\n".join(lines) + "\n")
    if checksum:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (root / (relpath + ".CHECKSUM")).write_text(f"{digest}  {path.name}\n")
    return path


def build_mirror(root: Path, csv: Path, symbol: str) -> None:
    """Monthly zips up to MONTHLY_UNTIL, daily zips after it: the archive's own layout."""
    months: dict[dt.date, list[str]] = {}
    for line in csv.read_text().splitlines()[1:]:
        day = dt.date.fromisoformat(line[:10])
        fields = line.split(",")[1:]  # drop the Date column: the archives have 12 fields
        if day >= MICROS_FROM:
            fields[0], fields[6] = str(int(fields[0]) * 1000), str(int(fields[6]) * 1000 + 999)
        kline = ",".join(fields)
        if day <= MONTHLY_UNTIL:
            months.setdefault(day.replace(day=1), []).append(kline)
        elif day <= DAILY_UNTIL:
            write_archive_file(root, daily_path(symbol, day), [kline])
    for month, lines in months.items():
        write_archive_file(root, monthly_path(symbol, month), lines)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, real_data_dir) -> Path:
    root = tmp_path_factory.mktemp("archive")
    for symbol in ("BTCUSDT", "ETHUSDT"):
        build_mirror(root, real_data_dir / f"binance_spot_1d_klines12_csv/{symbol}-1d.csv", symbol)
    return root


def reference(real_data_dir: Path, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    bars = read_bar_file(real_data_dir / f"binance_spot_1d_klines12_csv/{symbol}-1d.csv")
    ts = bars["timestamp"]
    return bars[(ts >= date_to_ms(start)) & (ts <= date_to_ms(end))].reset_index(drop=True)


def archive(base, **options):
    return make_source({"source": "archive", "archive": {"base": str(base), **options}})


def test_local_mirror_auto_mode_reads_monthly_then_daily_files(mirror, real_data_dir):
    start = dt.date(2017, 1, 1)
    bars = archive(mirror).fetch_bars(BTC, start, DAILY_UNTIL)
    pd.testing.assert_frame_equal(bars, reference(real_data_dir, "BTCUSDT", start, DAILY_UNTIL))
    assert bars["timestamp"].iloc[-1] == date_to_ms(DAILY_UNTIL)  # from the daily files, in microseconds
    short = bars[bars["timestamp"] == date_to_ms(dt.date(2018, 2, 8))]
    assert short["volume"].tolist() == [1521.537318]  # the 28-minute outage bar, keyed by its open time


def test_monthly_mode_and_a_window_inside_a_month(mirror, real_data_dir):
    src = archive(mirror, mode="monthly")
    assert src.fetch_bars(ETH, dt.date(2023, 1, 1), DAILY_UNTIL)["timestamp"].iloc[-1] == date_to_ms(MONTHLY_UNTIL)
    start, end = dt.date(2020, 3, 10), dt.date(2020, 3, 14)
    pd.testing.assert_frame_equal(src.fetch_bars(ETH, start, end), reference(real_data_dir, "ETHUSDT", start, end))


def test_url_mode_over_http(mirror, real_data_dir):
    handler = functools.partial(QuietHandler, directory=str(mirror))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = archive(f"http://127.0.0.1:{server.server_address[1]}")
        start = dt.date(2023, 5, 20)
        bars = src.fetch_bars(BTC, start, DAILY_UNTIL)
        pd.testing.assert_frame_equal(bars, reference(real_data_dir, "BTCUSDT", start, DAILY_UNTIL))
        with pytest.raises(SourceError, match="cannot list markets"):
            src.list_markets(DAILY_UNTIL)
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def test_checksum_mismatch_and_corrupted_zip_are_per_symbol_errors(tmp_path, real_data_dir):
    build_mirror(tmp_path, real_data_dir / "binance_spot_1d_klines12_csv/ETHUSDT-1d.csv", "ETHUSDT")
    src = archive(tmp_path)
    good = src.fetch_bars(ETH, dt.date(2021, 1, 1), dt.date(2021, 3, 31))
    assert len(good) == 90

    relpath = monthly_path("ETHUSDT", dt.date(2021, 2, 1))
    zpath = tmp_path / relpath
    data = bytearray(zpath.read_bytes())
    data[len(data) // 2] ^= 0xFF
    zpath.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="checksum mismatch") as info:
        src.fetch_bars(ETH, dt.date(2021, 1, 1), dt.date(2021, 3, 31))
    assert info.value.symbol == "BINANCE:ETHUSDT" and relpath in str(info.value)

    (tmp_path / (relpath + ".CHECKSUM")).unlink()  # no checksum to catch it: the zip itself must
    with pytest.raises(SourceError, match="corrupted zip") as info:
        src.fetch_bars(ETH, dt.date(2021, 1, 1), dt.date(2021, 3, 31))
    assert info.value.symbol == "BINANCE:ETHUSDT" and relpath in str(info.value)

    write_archive_file(tmp_path, relpath, ["1612137600000,1,2,0.5,1.5,10,1612223999999,15,3,5"], checksum=False)
    with pytest.raises(SourceError, match=r"expected 12 kline columns"):
        src.fetch_bars(ETH, dt.date(2021, 1, 1), dt.date(2021, 3, 31))


def test_list_markets_on_a_local_mirror(mirror, real_data_dir):
    markets = archive(mirror).list_markets(dt.date(2023, 8, 1))
    assert [str(m.symbol) for m in markets] == ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT"]
    btc = markets[0]
    assert (btc.base, btc.quote, btc.listed_on, btc.last_trade_on) == ("BTC", "USDT", dt.date(2017, 8, 17), dt.date(2023, 8, 1))
    window = reference(real_data_dir, "BTCUSDT", dt.date(2023, 7, 3), dt.date(2023, 8, 1))
    assert len(window) == 30
    assert btc.traded_value_30d == pytest.approx((window["close"] * window["volume"]).median())
    assert archive(mirror).list_markets(dt.date(2017, 8, 1)) == []


def test_hybrid_takes_history_from_the_archive_and_the_tail_from_rest(mirror, real_data_dir, fake_exchange):
    table = pd.read_csv(real_data_dir / "binance_spot_1d_klines12_csv/BTCUSDT-1d.csv").iloc[:, 1:]
    table.columns = list(KLINE_COLUMNS)
    ex = fake_exchange({"BTCUSDT": table}, now=dt.datetime(2023, 8, 15, 12, tzinfo=UTC))
    params = ex.data_params()
    params.update({"source": "hybrid", "archive": {"base": str(mirror)}})
    src = make_source(params)
    start = dt.date(2017, 1, 1)
    bars = src.fetch_bars(BTC, start, dt.date(2023, 8, 15))
    pd.testing.assert_frame_equal(bars, reference(real_data_dir, "BTCUSDT", start, DAILY_UNTIL))  # 08-15 is unclosed
    klines = ex.requests_for("/api/v3/klines")
    assert len(klines) == 1 and klines[0].status == 200
    assert klines[0].query["startTime"] == str(date_to_ms(dt.date(2023, 7, 1)))  # only the days after the archive
    assert [str(m.symbol) for m in src.list_markets(DAILY_UNTIL)] == ["BINANCE:BTCUSDT"]


def test_params():
    assert ArchiveConfig.from_params({}).base == "https://data.binance.vision"
    with pytest.raises(ContractError, match="data.archive.folder: unknown key"):
        ArchiveConfig.from_params({"folder": "x"})
    with pytest.raises(ContractError, match="data.archive.mode"):
        ArchiveConfig.from_params({"mode": "weekly"})
