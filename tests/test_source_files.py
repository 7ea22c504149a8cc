"""The `files` source on the real folders and on files written in every supported format."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
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
from quantlake.sources.files import FilesConfig, FilesSource, read_bar_file

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


def test_unsorted_rows_are_sorted_and_conflicting_duplicates_kept_for_the_gates(tmp_path):
    (tmp_path / "ETHBTC_1d.csv").write_text(
        "timestamp,open,high,low,close,volume\n2021-01-03,3,3,3,3,1\n2021-01-01,1,1,1,1,1\n2021-01-02,2,2,2,2,1\n"
        "2021-01-01,9,9,9,9,9\n2021-01-02,2,2,2,2,1\n"
    )
    src = files(tmp_path)
    bars = src.fetch_bars(SymbolId.parse("BINANCE:ETHBTC"), *ALL)
    assert bars["close"].tolist() == [1.0, 9.0, 2.0, 3.0]  # identical rows merged, the conflict kept in file order
    m = src.list_markets(dt.date(2021, 1, 3))[0]
    assert (m.base, m.quote, m.listed_on, m.traded_value_30d) == ("ETH", "BTC", dt.date(2021, 1, 1), 2.0)  # median of 1, 2, 3


def test_names_exchange_and_ignored_files(tmp_path, real_data_dir):
    src_json = real_data_dir / "binance_spot_1d_freqtrade_json"
    shutil.copy(src_json / "XMR_USDT-1d.json", tmp_path / "XMR_USDT-1d.json")
    shutil.copy(src_json / "BTC_USDT-1d.json", tmp_path / "BTCUSDT-1h.json")  # not daily: ignored
    (tmp_path / "README.md").write_text("notes")
    shutil.copy(src_json / "SOL_USDT-1d.json", tmp_path / "SOLFOO-1d.json")  # unknown quote
    markets = files(tmp_path, exchange="MYEX").list_markets(dt.date(2022, 1, 1))
    assert [(str(m.symbol), m.base, m.quote) for m in markets] == [("MYEX:SOLFOO", "SOLFOO", ""), ("MYEX:XMRUSDT", "XMR", "USDT")]
    shutil.copy(src_json / "XMR_USDT-1d.json", tmp_path / "XMRUSDT_1d.json")
    src = files(tmp_path, exchange="MYEX")
    assert [str(m.symbol) for m in src.list_markets(dt.date(2022, 1, 1))] == ["MYEX:SOLFOO"]  # the others go on
    assert src.problems == {"MYEX:XMRUSDT": f"XMRUSDT_1d.json and XMR_USDT-1d.json both hold this symbol in {tmp_path}; keep one"}
    with pytest.raises(SourceError, match="MYEX:XMRUSDT: XMRUSDT_1d.json and XMR_USDT-1d.json both hold this symbol"):
        src.fetch_bars(SymbolId.parse("MYEX:XMRUSDT"), *ALL)


def test_invalid_names_are_a_problem_of_that_file_only(tmp_path):
    (tmp_path / "btc usdt.csv").write_text("timestamp,open,high,low,close,volume\n")
    (tmp_path / "ETHUSDT_1d.csv").write_text("timestamp,open,high,low,close,volume\n2021-12-31,1,1,1,1,1\n")
    logged = []
    src = FilesSource(FilesConfig(path=str(tmp_path)), log=logged.append)
    assert [str(m.symbol) for m in src.list_markets(dt.date(2022, 1, 1))] == ["BINANCE:ETHUSDT"]
    assert list(src.problems) == ["btc usdt.csv"] and "cannot tell the symbol from the file name" in src.problems["btc usdt.csv"]
    assert any("btc usdt.csv" in line and "cannot tell the symbol" in line for line in logged)


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
        ("AAAUSDT_1d.csv", "", r"AAAUSDT_1d.csv: empty file \(0 bytes\)"),
        ("AAAUSDT_1d.csv", "\n\n", r"AAAUSDT_1d.csv: empty file \(no header, no rows\)"),
        ("AAAUSDT_1d.json", "", r"AAAUSDT_1d.json: empty file \(0 bytes\)"),
        ("AAAUSDT_1d.csv", "timestamp,open,high,low,close,volume\n1609459200,1,2,0.5,1.5,10\n86400,1,2,0.5,1.5,10\n", r"AAAUSDT_1d.csv: line 3: field 'timestamp': 86400 is too small to tell its unit"),
        ("AAAUSDT_1d.json", "[[1609459200000, 1, 2, 0.5, 1.5, 10], [0, 1, 2, 0.5, 1.5, 10]]", r"AAAUSDT_1d.json: row 1: field 'timestamp': 0 is too small to tell its unit"),
        ("AAAUSDT_1d.csv", "1609459200000,1,2,0.5,1.5,10,1609545599999,15,3,5,7\n", r"AAAUSDT_1d.csv: a CSV needs a header"),
        ("AAAUSDT_1d.csv", "1609459200000,1,2,0.5,1.5,10,1609545599999,15,3,5,7,0\n1609545600000,1,2,0.5,1.5,10,1609631999999,15,x,5,7,0\n1609632000000,1,2,0.5,1.5,10,oops,15,3,5,7,0\n", r"AAAUSDT_1d.csv: line 3: field 'close_time': 'oops'"),
        ("AAAUSDT_1d.feather", "not feather", r"AAAUSDT_1d.feather: not a readable feather file"),
    ],
)
def test_bad_files_name_the_file_and_field(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    (tmp_path / "BBBUSDT_1d.csv").write_text("timestamp,open,high,low,close,volume\n2021-01-01,1,2,0.5,1.5,10\n")
    logged = []
    src = FilesSource(FilesConfig(path=str(tmp_path)), log=logged.append)
    with pytest.raises(SourceError, match=message) as info:
        src.fetch_bars(SymbolId.parse("BINANCE:AAAUSDT"), *ALL)
    assert info.value.symbol == "BINANCE:AAAUSDT"
    # discovery goes on with the other file, and does not skip the bad one silently
    assert [str(m.symbol) for m in src.list_markets(dt.date(2021, 1, 5))] == ["BINANCE:BBBUSDT"]
    assert list(src.problems) == ["BINANCE:AAAUSDT"] and re.search(message, src.problems["BINANCE:AAAUSDT"])
    assert any(re.search(message, line) for line in logged), logged


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


# --------------------------------------------------------------------------- epoch units


HEADER = "timestamp,open,high,low,close,volume\n"
DAYS = [dt.date(2021, 1, 1) + dt.timedelta(days=i) for i in range(4)]
SECONDS = [date_to_ms(d) // 1000 for d in DAYS]


def _csv_rows(stamps) -> str:
    return HEADER + "".join(f"{t},{i + 1},{i + 2},{i + 0.5},{i + 1.5},10\n" for i, t in enumerate(stamps))


@pytest.mark.parametrize(
    "unit, stamps",
    [
        ("seconds", SECONDS),
        ("seconds written as floats", [f"{s}.0" for s in SECONDS]),
        ("milliseconds", [s * 1000 for s in SECONDS]),
        ("microseconds", [s * 1_000_000 for s in SECONDS]),
        ("nanoseconds", [s * 1_000_000_000 for s in SECONDS]),
        ("seconds and milliseconds mixed", [SECONDS[0], SECONDS[1] * 1000, SECONDS[2], SECONDS[3] * 1000]),
        ("milliseconds and microseconds mixed", [SECONDS[0] * 1000, SECONDS[1] * 10**6, SECONDS[2] * 1000, SECONDS[3] * 10**6]),
    ],
)
def test_epoch_units_are_told_by_magnitude_and_no_row_is_lost(tmp_path, unit, stamps):
    (tmp_path / "AAAUSDT_1d.csv").write_text(_csv_rows(stamps))
    (tmp_path / "BBB_USDT-1d.json").write_text(json.dumps([[t, 1, 2, 0.5, 1.5, 10] for t in stamps]))
    ints = [int(float(t)) for t in stamps]
    klines = "".join(f"{t},1,2,0.5,1.5,10,{n + (86_399 if n < 10**11 else 86_399_999)},15,3,5,7,0\n" for t, n in zip(stamps, ints))
    (tmp_path / "CCCUSDT.csv").write_text(klines)
    src = files(tmp_path)
    assert [m.listed_on for m in src.list_markets(DAYS[-1])] == [DAYS[0]] * 3, unit
    for name in ("AAAUSDT", "BBBUSDT", "CCCUSDT"):
        bars = src.fetch_bars(SymbolId.of("BINANCE", name), DAYS[0], DAYS[-1])
        assert bars["timestamp"].tolist() == [date_to_ms(d) for d in DAYS], (unit, name)


def test_a_kline_csv_with_a_too_small_open_time_is_refused_naming_the_cell(tmp_path):
    (tmp_path / "AAAUSDT.csv").write_text("1609459200000,1,2,0.5,1.5,10,1609545599999,15,3,5,7,0\n99999999,1,2,0.5,1.5,10,1609545599999,15,3,5,7,0\n")
    with pytest.raises(SourceError, match=r"AAAUSDT.csv: line 2: field 'open_time': 99999999 is too small to tell its unit"):
        files(tmp_path).fetch_bars(SymbolId.parse("BINANCE:AAAUSDT"), *ALL)


# --------------------------------------------------------------------------- through ingestion


def _ingest(src, symbols, root):
    from quantlake.data.ingest import IngestConfig, ingest_symbols
    from quantlake.data.staging import StagingStore

    store = StagingStore(root / "bars", root / "quarantine")
    cfg = IngestConfig(as_of=dt.date(2021, 1, 10), start=dt.date(2020, 12, 1), workers=1)
    now = dt.datetime(2021, 1, 12, tzinfo=dt.timezone.utc)
    summary = ingest_symbols([SymbolId.parse(s) for s in symbols], src, store, cfg, now=now, log=lambda m: None, progress=False)
    return store, summary


def test_conflicting_duplicate_days_are_quarantined_by_ingestion(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "ETHUSDT_1d.csv").write_text(
        HEADER + "2021-01-01,1,2,0.5,1.5,10\n2021-01-02,2,3,1.5,2.5,10\n2021-01-01,7,8,6.5,7.5,70\n2021-01-02,2,3,1.5,2.5,10\n"
    )
    store, summary = _ingest(files(folder), ["BINANCE:ETHUSDT"], tmp_path)
    assert summary.count("fetched") == 1
    sid = SymbolId.parse("BINANCE:ETHUSDT")
    bars, q = store.read_bars(sid), store.read_quarantine(sid)
    assert bars["close"].tolist() == [1.5, 2.5]  # the first row of the day is kept
    assert q[["timestamp", "rule", "close"]].values.tolist() == [[date_to_ms(dt.date(2021, 1, 1)), "duplicate_timestamp", 7.5]]


def test_one_bad_file_never_sinks_discovery_or_ingestion(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    good = HEADER + "".join(f"2021-01-0{d},1,2,0.5,1.5,10\n" for d in range(1, 10))
    (folder / "BTCUSDT_1d.csv").write_text(good)
    (folder / "ETHUSDT_1d.csv").write_text("")  # 0 bytes
    (folder / "SOLUSDT_1d.csv").write_text(good.replace("1.5,10\n2021-01-05", "x,10\n2021-01-05"))  # a bad value
    (folder / "LTC USDT_1d.csv").write_text(good)  # a name that says no symbol
    (folder / "ADAUSDT_1d.csv").write_text(good)
    (folder / "ADA_USDT-1d.json").write_text("[]")  # two files for one symbol
    (folder / "XRPUSDT_1d.json").symlink_to(folder / "missing.json")  # a dangling link: unreadable
    logged = []
    src = FilesSource(FilesConfig(path=str(folder)), log=logged.append)
    assert [str(m.symbol) for m in src.list_markets(dt.date(2021, 1, 9))] == ["BINANCE:BTCUSDT"]
    assert sorted(src.problems) == ["BINANCE:ADAUSDT", "BINANCE:ETHUSDT", "BINANCE:SOLUSDT", "BINANCE:XRPUSDT", "LTC USDT_1d.csv"]
    for key, file_name in [("BINANCE:ETHUSDT", "ETHUSDT_1d.csv"), ("BINANCE:SOLUSDT", "SOLUSDT_1d.csv"), ("BINANCE:XRPUSDT", "XRPUSDT_1d.json")]:
        assert file_name in src.problems[key]
        assert any(key in line and file_name in line for line in logged), (key, logged)
    assert any("5 bad file(s) left out" in line and "1 market(s) read" in line for line in logged), logged
    symbols = ["BINANCE:BTCUSDT", "BINANCE:ETHUSDT", "BINANCE:SOLUSDT", "BINANCE:ADAUSDT", "BINANCE:XRPUSDT"]
    store, summary = _ingest(src, symbols, tmp_path)
    outcome = {o.symbol: o for o in summary.outcomes}
    assert outcome["BINANCE:BTCUSDT"].action == "fetched" and outcome["BINANCE:BTCUSDT"].new_rows == 9
    for sym, file_name in [("ETHUSDT", "ETHUSDT_1d.csv"), ("SOLUSDT", "SOLUSDT_1d.csv"), ("ADAUSDT", "ADA_USDT-1d.json"), ("XRPUSDT", "XRPUSDT_1d.json")]:
        o = outcome[f"BINANCE:{sym}"]
        assert o.action == "failed" and file_name in o.detail, o
