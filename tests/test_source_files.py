"""The `files` source on the real folders and on files written in every supported format."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlake.contracts import DAY_MS, ContractError, SymbolId, date_to_ms
from quantlake.sources import make_source
from quantlake.sources.base import SourceError
from quantlake.sources.files import FilesConfig, read_bar_file

BTC = SymbolId.parse("BINANCE:BTCUSDT")
ALL = (dt.date(2010, 1, 1), dt.date(2030, 1, 1))


def files(path, **options):
    return make_source({"source": "files", "files": {"path": str(path), **options}})


# --------------------------------------------------------------------------- the real folders


def test_freqtrade_json_folder(real_data_dir, real_freqtrade_bars):
    src = files(real_data_dir / "binance_spot_1d_freqtrade_json")
    for name in ("BTCUSDT", "LINKUSDT", "APEUSDT"):
        pd.testing.assert_frame_equal(src.fetch_bars(SymbolId.of("BINANCE", name), *ALL), real_freqtrade_bars[name])


def test_discovery_on_the_real_folder(real_data_dir, real_freqtrade_bars):
    as_of = dt.date(2022, 3, 10)
    markets = {m.symbol.symbol: m for m in files(real_data_dir / "binance_spot_1d_freqtrade_json").list_markets(as_of)}
    assert len(markets) == 32 and "APEUSDT" not in markets  # APE lists on 2022-03-17: not yet
    manifest = pd.read_csv(real_data_dir / "MANIFEST.csv")
    manifest = manifest[manifest["dir"] == "binance_spot_1d_freqtrade_json"]
    for _, row in manifest.iterrows():
        name = row["file"].replace("_", "").replace("-1d.json", "")
        first = dt.date.fromisoformat(row["first_bar"][:10])
        if first > as_of:
            assert name not in markets
            continue
        m = markets[name]
        assert (m.base + m.quote, m.quote, m.listed_on, m.last_trade_on) == (name, "USDT", first, as_of)
        bars = real_freqtrade_bars[name]
        days = pd.to_datetime(bars["timestamp"], unit="ms").dt.date
        window = bars[(days > as_of - dt.timedelta(days=30)) & (days <= as_of)]
        assert m.traded_value_30d == pytest.approx(float(np.median(window["close"] * window["volume"])))
        assert m.traded_value_24h == pytest.approx(float(window["close"].iloc[-1] * window["volume"].iloc[-1]))


def test_klines12_csv_folder_with_date_header(real_data_dir):
    src = files(real_data_dir / "binance_spot_1d_klines12_csv")
    assert sorted(str(m.symbol) for m in src.list_markets(dt.date(2023, 7, 1))) == [
        f"BINANCE:{s}USDT" for s in ("BNB", "BTC", "ETH", "LTC", "TRX", "XRP")
    ]
    raw = pd.read_csv(real_data_dir / "binance_spot_1d_klines12_csv/BTCUSDT-1d.csv")
    bars = src.fetch_bars(BTC, *ALL)
    assert bars["timestamp"].tolist() == raw["Open Time"].tolist()
    assert bars["close"].tolist() == raw["Close"].tolist()
    day = bars[bars["timestamp"] == date_to_ms(dt.date(2018, 2, 8))].iloc[0]
    row = raw[raw["Date"] == "2018-02-08"].iloc[0]
    assert row["Close Time"] - row["Open Time"] < 3600_000  # the short outage bar...
    assert (day["open"], day["close"], day["volume"]) == (row["Open"], row["Close"], row["Volume"])  # ...is that day's bar


# --------------------------------------------------------------------------- formats and names


def write_formats(bars: pd.DataFrame, folder: Path) -> dict[str, Path]:
    """The same bars in every supported format, each in its own folder (one symbol each)."""
    out = {}

    def place(kind: str, name: str) -> Path:
        (folder / kind).mkdir(parents=True)
        return folder / kind / name

    rows = [[int(t), o, h, l, c, v] for t, o, h, l, c, v in bars.itertuples(index=False)]
    out["freqtrade_json"] = place("json", "BTC_USDT-1d.json")
    out["freqtrade_json"].write_text(json.dumps(rows))
    out["csv_epoch_ms"] = place("csv_ms", "BTCUSDT_1d.csv")
    bars.to_csv(out["csv_epoch_ms"], index=False)
    out["csv_iso_date"] = place("csv_iso", "BTCUSDT-1d.csv")
    iso = bars.assign(timestamp=pd.to_datetime(bars["timestamp"], unit="ms").dt.strftime("%Y-%m-%d"))
    iso.to_csv(out["csv_iso_date"], index=False)
    out["kline_csv_no_header"] = place("klines", "BTCUSDT.csv")
    with open(out["kline_csv_no_header"], "w", newline="") as fh:
        w = csv.writer(fh)
        for t, o, h, l, c, v in rows:
            w.writerow([t, repr(o), repr(h), repr(l), repr(c), repr(v), t + DAY_MS - 1, repr(c * v), 7, repr(v / 2), repr(c * v / 2), "123.4"])
    out["feather"] = place("feather", "BTC_USDT-1d.feather")
    ft = bars.assign(date=pd.to_datetime(bars["timestamp"], unit="ms", utc=True)).drop(columns="timestamp")
    ft[["date", "open", "high", "low", "close", "volume"]].to_feather(out["feather"])
    return out


def test_every_format_and_name_gives_the_same_bars(tmp_path, real_freqtrade_bars):
    bars = real_freqtrade_bars["BTCUSDT"].iloc[:300]
    for kind, path in write_formats(bars, tmp_path).items():
        src = files(path.parent)
        assert [str(m.symbol) for m in src.list_markets(dt.date(2022, 1, 1))] == ["BINANCE:BTCUSDT"], kind
        pd.testing.assert_frame_equal(src.fetch_bars(BTC, *ALL), bars, obj=kind)


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4000),
            *[st.floats(1e-8, 1e7, allow_nan=False, allow_infinity=False) for _ in range(5)],
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda r: r[0],
    )
)
def test_formats_agree_bit_for_bit(tmp_path_factory, rows):
    bars = pd.DataFrame(
        [(date_to_ms(dt.date(2015, 1, 1)) + d * DAY_MS, *v) for d, *v in rows],
        columns=["timestamp", "open", "high", "low", "close", "volume"],
    )
    bars = bars.sort_values("timestamp").reset_index(drop=True)
    for kind, path in write_formats(bars, tmp_path_factory.mktemp("f")).items():
        got = read_bar_file(path)
        pd.testing.assert_frame_equal(got, bars, check_exact=True, obj=kind)


def test_unsorted_and_duplicate_rows_are_sorted_and_deduped(tmp_path):
    (tmp_path / "ETHBTC_1d.csv").write_text(
        "timestamp,open,high,low,close,volume\n2021-01-03,3,3,3,3,1\n2021-01-01,1,1,1,1,1\n2021-01-02,2,2,2,2,1\n2021-01-01,9,9,9,9,9\n"
    )
    src = files(tmp_path)
    bars = src.fetch_bars(SymbolId.parse("BINANCE:ETHBTC"), *ALL)
    assert bars["close"].tolist() == [9.0, 2.0, 3.0]  # the later duplicate wins
    m = src.list_markets(dt.date(2021, 1, 3))[0]
    assert (m.base, m.quote, m.listed_on, m.traded_value_30d) == ("ETH", "BTC", dt.date(2021, 1, 1), 3.0)  # median of 81, 2, 3


def test_names_exchange_and_ignored_files(tmp_path, real_data_dir):
    src_json = real_data_dir / "binance_spot_1d_freqtrade_json"
    shutil.copy(src_json / "XMR_USDT-1d.json", tmp_path / "XMR_USDT-1d.json")
    shutil.copy(src_json / "BTC_USDT-1d.json", tmp_path / "BTCUSDT-1h.json")  # not daily: ignored
    (tmp_path / "README.md").write_text("notes")
    shutil.copy(src_json / "SOL_USDT-1d.json", tmp_path / "SOLFOO-1d.json")  # unknown quote
    markets = files(tmp_path, exchange="MYEX").list_markets(dt.date(2022, 1, 1))
    assert [(str(m.symbol), m.base, m.quote) for m in markets] == [("MYEX:SOLFOO", "SOLFOO", ""), ("MYEX:XMRUSDT", "XMR", "USDT")]
    shutil.copy(src_json / "XMR_USDT-1d.json", tmp_path / "XMRUSDT_1d.json")
    with pytest.raises(SourceError, match="MYEX:XMRUSDT: XMRUSDT_1d.json and XMR_USDT-1d.json both hold this symbol"):
        files(tmp_path, exchange="MYEX").list_markets(dt.date(2022, 1, 1))


def test_invalid_names_are_rejected(tmp_path):
    (tmp_path / "btc usdt.csv").write_text("timestamp,open,high,low,close,volume\n")
    with pytest.raises(SourceError, match="cannot tell the symbol from the file name"):
        files(tmp_path).list_markets(dt.date(2022, 1, 1))


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("AAAUSDT_1d.json", "[[1609459200000, 1, 2, 0.5, 1.5, 10], [1609545600000, 1, 2, 0.5]]", r"AAAUSDT_1d.json: row 1: expected \[timestamp, open, high, low, close, volume\], got 4 fields"),
        ("AAAUSDT_1d.json", '[[1609459200000, 1, 2, 0.5, "x", 10]]', r"AAAUSDT_1d.json: row 0: field 'close': 'x' is not a number"),
        ("AAAUSDT_1d.json", "[[1609459200000, 1, 2", r"AAAUSDT_1d.json: not valid JSON"),
        ("AAAUSDT_1d.csv", "timestamp,open,high,low,close,volume\n2021-01-01,1,2,0.5,1.5,10\n2021-01-02,1,2,0.5,abc,10\n", r"AAAUSDT_1d.csv: line 3: field 'close': 'abc' is not a number"),
        ("AAAUSDT_1d.csv", "timestamp,open,high,low,close\n2021-01-01,1,2,0.5,1.5\n", r"AAAUSDT_1d.csv: missing column\(s\) \['volume'\]"),
        ("AAAUSDT_1d.csv", "timestamp,open,high,low,close,volume\nyesterday,1,2,0.5,1.5,10\n", r"AAAUSDT_1d.csv: line 2: field 'timestamp': 'yesterday' is neither"),
        ("AAAUSDT_1d.csv", "1609459200000,1,2,0.5,1.5,10,1609545599999,15,3,5,7\n", r"AAAUSDT_1d.csv: a CSV needs a header"),
        ("AAAUSDT_1d.csv", "1609459200000,1,2,0.5,1.5,10,1609545599999,15,3,5,7,0\n1609545600000,1,2,0.5,1.5,10,1609631999999,15,x,5,7,0\n1609632000000,1,2,0.5,1.5,10,oops,15,3,5,7,0\n", r"AAAUSDT_1d.csv: line 3: field 'close_time': 'oops'"),
        ("AAAUSDT_1d.feather", "not feather", r"AAAUSDT_1d.feather: not a readable feather file"),
    ],
)
def test_bad_files_name_the_file_and_field(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    src = files(tmp_path)
    with pytest.raises(SourceError, match=message) as info:
        src.fetch_bars(SymbolId.parse("BINANCE:AAAUSDT"), *ALL)
    assert info.value.symbol == "BINANCE:AAAUSDT"
    with pytest.raises(SourceError, match=message):  # discovery does not skip it silently
        src.list_markets(dt.date(2021, 1, 5))


def test_missing_folder_symbol_and_params(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        files(tmp_path / "nope").list_markets(dt.date(2022, 1, 1))
    with pytest.raises(SourceError, match="no file for this symbol"):
        files(tmp_path).fetch_bars(BTC, *ALL)
    assert FilesConfig.from_params({}).exchange == "BINANCE"
    with pytest.raises(ContractError, match="data.files.folder: unknown key"):
        FilesConfig.from_params({"folder": "x"})
    with pytest.raises(ContractError, match="data.files.exchange"):
        FilesConfig.from_params({"exchange": "bin ance"})
