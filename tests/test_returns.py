"""Returns and traded-value panels: gaps, listings, contract errors, real Binance data."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from quantlake.alpha.returns import bars_at, close_matrix, returns_matrix, to_day, traded_value_matrix
from quantlake.contracts import DAY_MS, ContractError

from real_data import real_data_root
DAY0 = dt.date(2024, 1, 1)


def bars(days: list[int], closes: list[float], volumes: list[float] | None = None) -> pd.DataFrame:
    """Bars on DAY0 + each offset in `days` (flat candles: only close and volume matter here)."""
    start = (DAY0 - dt.date(1970, 1, 1)).days
    close = np.asarray(closes, dtype="float64")
    return pd.DataFrame(
        {
            "timestamp": np.asarray([(start + d) * DAY_MS for d in days], dtype="int64"),
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": np.asarray(volumes if volumes is not None else [1.0] * len(days), dtype="float64"),
        }
    )


def day(offset: int) -> pd.Timestamp:
    return pd.Timestamp(DAY0) + pd.Timedelta(days=offset)


def test_close_matrix_has_the_panel_layout_with_nan_where_a_symbol_has_no_bar():
    data = {"SIM:BBBUSDT": bars([1, 3], [20.0, 21.0]), "SIM:AAAUSDT": bars([0, 1, 2], [10.0, 11.0, 12.0])}
    closes = close_matrix(data)
    assert list(closes.columns) == ["SIM:AAAUSDT", "SIM:BBBUSDT"]
    assert closes.index.equals(returns_matrix(data).index) and list(closes.index) == [day(0), day(1), day(2), day(3)]
    np.testing.assert_array_equal(closes["SIM:AAAUSDT"].to_numpy(), [10.0, 11.0, 12.0, np.nan])
    np.testing.assert_array_equal(closes["SIM:BBBUSDT"].to_numpy(), [np.nan, 20.0, np.nan, 21.0])  # never filled


def test_a_gap_is_booked_close_to_close_on_the_day_trading_resumes():
    panel = returns_matrix({"SIM:AAA": bars([0, 1, 2, 4, 5], [100, 110, 99, 200, 220])})
    # day 3 is absent from the only symbol: it is not a row at all (union of bar days)
    assert list(panel.index) == [day(0), day(1), day(2), day(4), day(5)]
    r = panel["SIM:AAA"]
    assert np.isnan(r[day(0)])  # first bar: no previous close
    assert r[day(1)] == pytest.approx(0.10, abs=1e-15)
    assert r[day(2)] == pytest.approx(99 / 110 - 1, abs=1e-15)
    assert r[day(4)] == pytest.approx(200 / 99 - 1, abs=1e-15)  # 99 -> 200 across the missing day 3
    assert r[day(5)] == pytest.approx(0.10, abs=1e-15)
    # compounding the returns gives the price ratio: no P&L is lost across the gap
    assert (1 + r.dropna()).prod() == pytest.approx(220 / 100, rel=1e-14)


def test_an_exchange_wide_missing_day_keeps_every_symbols_two_day_move():
    closes = {"SIM:AAA": [10, 11, 12, 15], "SIM:BBB": [5, 4, 4, 2]}
    panel = returns_matrix({s: bars([0, 1, 3, 4], c) for s, c in closes.items()})  # day 2: no bar anywhere
    assert list(panel.index) == [day(0), day(1), day(3), day(4)]
    assert panel.at[day(3), "SIM:AAA"] == pytest.approx(12 / 11 - 1, abs=1e-15)
    assert panel.at[day(3), "SIM:BBB"] == 0.0
    for s, c in closes.items():
        assert (1 + panel[s].dropna()).prod() == pytest.approx(c[-1] / c[0], rel=1e-14)


def test_bars_at_reads_returns_and_traded_value_and_skips_a_day_without_any_bar():
    data = {"SIM:AAA": bars([0, 1, 3, 4], [1, 2, 3, 4]), "SIM:BBB": bars([1, 3], [5, 6]), "SIM:CCC": bars([0, 1], [1, 1])}
    returns, value = returns_matrix(data), traded_value_matrix(data)
    calendar = pd.date_range(day(0), day(4), freq="D", name="date")
    returns, value = returns.reindex(calendar), value.reindex(calendar)  # day 2: an all-NaN row
    assert bars_at(returns, value, day(0)).to_dict() == {"SIM:AAA": True, "SIM:BBB": False, "SIM:CCC": True}
    # BBB's first bar (day 1) has no return, but a traded value: it has a bar
    assert bars_at(returns, value, day(1)).to_dict() == {"SIM:AAA": True, "SIM:BBB": True, "SIM:CCC": True}
    # nobody traded on day 2: the last market close (day 1) answers; no future row is read
    assert bars_at(returns, value, day(2)).equals(bars_at(returns.loc[: day(2)], value.loc[: day(2)], day(2)))
    assert bars_at(returns, value, day(2)).to_dict() == {"SIM:AAA": True, "SIM:BBB": True, "SIM:CCC": True}
    assert bars_at(returns, value, day(3)).to_dict() == {"SIM:AAA": True, "SIM:BBB": True, "SIM:CCC": False}
    assert bars_at(returns, value, day(4)).to_dict() == {"SIM:AAA": True, "SIM:BBB": False, "SIM:CCC": False}
    assert bars_at(returns, None, day(1)).to_dict() == {"SIM:AAA": True, "SIM:BBB": False, "SIM:CCC": True}
    assert not bars_at(returns, value, day(-1)).any()  # before any data


def test_union_of_days_listing_and_delisting_stay_nan_not_zero():
    panel = returns_matrix(
        {
            "SIM:OLD": bars([0, 1, 2, 3], [10, 11, 12, 13]),  # delisted after day 3
            "SIM:NEW": bars([2, 3, 4, 5], [1, 2, 4, 8]),  # listed on day 2
        }
    )
    assert list(panel.columns) == ["SIM:NEW", "SIM:OLD"]  # sorted
    assert list(panel.index) == [day(i) for i in range(6)]
    assert panel.index.name == "date" and panel.index.tz is None
    assert panel["SIM:NEW"].isna().tolist() == [True, True, True, False, False, False]
    assert panel["SIM:OLD"].isna().tolist() == [True, False, False, False, True, True]  # no bar: NaN
    np.testing.assert_allclose(panel["SIM:NEW"].dropna(), [1.0, 1.0, 1.0])
    assert (panel.fillna(-9) != 0).all().all()  # no zero padding anywhere


def test_day_missing_in_one_symbol_but_present_in_another():
    panel = returns_matrix({"SIM:AAA": bars([0, 1, 3], [1, 2, 3]), "SIM:BBB": bars([0, 1, 2, 3], [1, 1, 1, 1])})
    assert np.isnan(panel.at[day(2), "SIM:AAA"])  # no bar that day
    assert panel.at[day(3), "SIM:AAA"] == pytest.approx(0.5, abs=1e-15)  # 2 -> 3 across day 2
    assert panel.at[day(3), "SIM:BBB"] == 0.0  # a real zero return stays a zero


def test_traded_value_is_close_times_volume_on_the_same_grid():
    data = {"SIM:AAA": bars([0, 1, 3], [2, 3, 4], [10, 20, 30]), "SIM:BBB": bars([1, 2], [5, 6], [1, 2])}
    value = traded_value_matrix(data)
    assert value.index.equals(returns_matrix(data).index)
    assert list(value.columns) == ["SIM:AAA", "SIM:BBB"]
    np.testing.assert_array_equal(value["SIM:AAA"].to_numpy(), [20.0, 60.0, np.nan, 120.0])
    np.testing.assert_array_equal(value["SIM:BBB"].to_numpy(), [np.nan, 5.0, 12.0, np.nan])


def test_empty_input_and_single_bar():
    assert returns_matrix({}).empty
    one = returns_matrix({"SIM:AAA": bars([0], [1.0])})
    assert one.shape == (1, 1) and np.isnan(one.iat[0, 0])


@pytest.mark.parametrize(
    "name, frame, message",
    [
        ("BTCUSDT", bars([0, 1], [1, 2]), "invalid symbol id"),
        ("SIM:AAA", bars([0, 1], [1, 2]).drop(columns="close"), "bars of SIM:AAA: missing column"),
        ("SIM:AAA", bars([1, 0], [1, 2]), "bars of SIM:AAA: timestamps not strictly increasing"),
        ("SIM:AAA", bars([0, 0], [1, 2]), "bars of SIM:AAA: timestamps not strictly increasing"),
        ("SIM:AAA", bars([0, 1], [1, 2]).assign(timestamp=lambda f: f.timestamp + 3600_000), "not at 00:00 UTC"),
        ("SIM:AAA", bars([0, 1], [1, 2]).assign(timestamp=lambda f: f.timestamp.astype("float64")), "must be int64"),
    ],
)
def test_contract_errors_name_the_symbol(name, frame, message):
    with pytest.raises(ContractError, match=message):
        returns_matrix({name: frame})


def test_deterministic():
    data = {"SIM:AAA": bars([0, 1, 3, 4], [1, 2, 3, 4]), "SIM:BBB": bars([1, 2, 3], [5, 6, 7])}
    pd.testing.assert_frame_equal(returns_matrix(data), returns_matrix(dict(reversed(list(data.items())))))


def test_to_day_normalises_dates_strings_and_timestamps():
    expected = pd.Timestamp("2024-03-05")
    assert to_day(dt.date(2024, 3, 5)) == expected
    assert to_day("2024-03-05") == expected
    assert to_day(pd.Timestamp("2024-03-05 17:00", tz="UTC")) == expected
    assert to_day(dt.datetime(2024, 3, 5, 23, 59)) == expected


def test_real_binance_daily_returns_match_pct_change():
    folder = real_data_root() / "binance_spot_1d_freqtrade_json"
    loaded = {}
    for base in ("BTC", "AAVE"):
        rows = np.asarray(json.loads((folder / f"{base}_USDT-1d.json").read_text()), dtype="float64")
        loaded[f"BINANCE:{base}USDT"] = pd.DataFrame(
            {"timestamp": rows[:, 0].astype("int64"), "open": rows[:, 1], "high": rows[:, 2],
             "low": rows[:, 3], "close": rows[:, 4], "volume": rows[:, 5]}
        )
    panel = returns_matrix(loaded)
    btc = loaded["BINANCE:BTCUSDT"]
    expected = btc["close"].pct_change().to_numpy()
    np.testing.assert_allclose(panel["BINANCE:BTCUSDT"].to_numpy(), expected, rtol=0, atol=1e-15, equal_nan=True)
    aave = panel["BINANCE:AAVEUSDT"]
    first = aave.first_valid_index()
    assert aave.loc[:first].isna().sum() == len(aave.loc[:first]) - 1  # NaN until the day after listing
    # the 2020-03-12 crash close is kept as a real return
    assert panel.at[pd.Timestamp("2020-03-12"), "BINANCE:BTCUSDT"] < -0.35


def test_the_file_reader_gives_the_same_panels_as_the_in_memory_path(tmp_path):
    """`panels_from_files` (the returns stage's fast path) equals the matrices built from read_bars."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from quantlake.alpha.returns import panels_from_files, returns_matrix, traded_value_matrix
    from quantlake.contracts import SymbolId
    from quantlake.sources.sim import SimExchange
    from quantlake.storage import atomic_write_bars, read_ohlcv as read_bars

    sim = SimExchange(7)
    files = {}
    for sym in ("SIM:BTCUSDT", "SIM:ATOMUSDT", "SIM:WAVESUSDT", "SIM:APEUSDT"):
        path = tmp_path / SymbolId.parse(sym).filename
        atomic_write_bars(path, sim.fetch_bars(SymbolId.parse(sym), dt.date(2022, 1, 1), dt.date(2026, 11, 20)))
        files[sym] = path
    bars = {s: read_bars(p) for s, p in files.items()}
    returns, value = panels_from_files(files)
    pd.testing.assert_frame_equal(returns, returns_matrix(bars), check_exact=True)
    pd.testing.assert_frame_equal(value, traded_value_matrix(bars), check_exact=True)
    bad = tmp_path / "SIM_BADUSDT_1d.parquet"
    pq.write_table(pa.table({"timestamp": [0], "close": [1.0]}), bad)
    with pytest.raises(Exception, match="SIM_BADUSDT_1d.parquet"):
        panels_from_files({"SIM:BADUSDT": bad})


# --------------------------------------------------------------------------- the file readers (fragments)


def _sim_bars(sym: str, start: dt.date = dt.date(2022, 1, 1), end: dt.date = dt.date(2026, 11, 20)) -> pd.DataFrame:
    from quantlake.contracts import SymbolId
    from quantlake.sources.sim import SimExchange

    return SimExchange(7).fetch_bars(SymbolId.parse(sym), start, end)


def _write_both_layouts(tmp_path, symbols):
    """{sym: fragmented table}, {sym: one file} and {sym: bars} of the same bars."""
    from quantlake.contracts import SymbolId
    from quantlake.data.staging import bars_layer
    from quantlake.storage import atomic_write_bars

    fragmented, single, frames = {}, {}, {}
    for sym in symbols:
        name = SymbolId.parse(sym).filename
        frames[sym] = _sim_bars(sym)
        bars_layer(tmp_path / "frag").write(name, frames[sym])
        (tmp_path / "file").mkdir(exist_ok=True)
        atomic_write_bars(tmp_path / "file" / name, frames[sym])
        fragmented[sym], single[sym] = tmp_path / "frag" / name, tmp_path / "file" / name
    return fragmented, single, frames


def test_a_fragmented_table_gives_the_panels_of_one_file(tmp_path):
    from quantlake.alpha.returns import panels_from_files, read_bar_columns, returns_from_files
    from quantlake.layer import fragment_files
    from quantlake.storage import read_ohlcv as read_bars

    fragmented, single, _ = _write_both_layouts(tmp_path, ("SIM:BTCUSDT", "SIM:ATOMUSDT", "SIM:APEUSDT"))
    assert all(len(fragment_files(p)) > 1 for p in fragmented.values())  # closed years + quarters
    bars = {s: read_bars(p) for s, p in single.items()}
    for files in (fragmented, single):
        returns, value = panels_from_files(files)
        pd.testing.assert_frame_equal(returns, returns_matrix(bars), check_exact=True)
        pd.testing.assert_frame_equal(value, traded_value_matrix(bars), check_exact=True)
        pd.testing.assert_frame_equal(returns_from_files(files), returns, check_exact=True)
    for sym in fragmented:
        a, b = read_bar_columns(fragmented[sym], ("timestamp", "close")), read_bar_columns(single[sym], ("close", "timestamp"))
        assert a["timestamp"].dtype == np.dtype("int64") and a["close"].dtype == np.dtype("float64")
        np.testing.assert_array_equal(a["timestamp"], b["timestamp"])
        np.testing.assert_array_equal(a["close"], b["close"])


def test_columns_of_other_types_are_cast_to_the_contract_as_read_bars_does(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from quantlake.alpha.returns import panels_from_files

    frame = bars([0, 1, 3], [2.5, 3.0, 4.0], [10, 20, 30])
    path = tmp_path / "SIM_AAAUSDT_1d.parquet"
    pq.write_table(pa.table({"timestamp": frame.timestamp.to_numpy(), "close": frame.close.to_numpy("float32"),
                             "volume": frame.volume.to_numpy("float32")}), path)
    returns, value = panels_from_files({"SIM:AAAUSDT": path})
    pd.testing.assert_frame_equal(returns, returns_matrix({"SIM:AAAUSDT": frame}), check_exact=True)
    pd.testing.assert_frame_equal(value, traded_value_matrix({"SIM:AAAUSDT": frame}), check_exact=True)


def test_a_bad_fragment_is_an_error_naming_the_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from quantlake.alpha.returns import panels_from_files, returns_from_files
    from quantlake.layer import fragment_files

    fragmented, _, _ = _write_both_layouts(tmp_path, ("SIM:BTCUSDT", "SIM:ATOMUSDT"))
    table = fragmented["SIM:ATOMUSDT"]
    last = fragment_files(table)[-1]
    day = pq.read_table(last).column("timestamp")[0].as_py()
    pq.write_table(pa.table({"timestamp": [day], "close": [1.0]}), last)  # no volume
    with pytest.raises(ContractError, match=f"bar file {last}: missing column.*volume"):
        panels_from_files(fragmented)
    returns_from_files(fragmented)  # reads only timestamp and close: the fragment has them
    last.write_bytes(b"PAR1 not a parquet file PAR1")
    for read in (panels_from_files, returns_from_files):
        with pytest.raises(ContractError, match=f"bar file {last}: unreadable Parquet"):
            read(fragmented)
    pq.write_table(pa.table({"timestamp": pa.array([None, day], pa.int64()), "close": [1.0, 1.0], "volume": [1.0, 1.0]}), last)
    with pytest.raises(ContractError, match=f"bar table {table}: column 'timestamp' has 1 null"):
        panels_from_files(fragmented)


def test_a_table_without_fragments_is_an_error_naming_it(tmp_path):
    from quantlake.alpha.returns import panels_from_files, read_bar_columns

    empty = tmp_path / "SIM_AAAUSDT_1d.parquet"
    empty.mkdir()
    (empty / ".tmp-2026-Q1.parquet").write_bytes(b"")  # a killed writer's temp file is no fragment
    for path in (empty, tmp_path / "SIM_BBBUSDT_1d.parquet"):  # an empty directory, nothing at all
        with pytest.raises(ContractError, match=f"bar table {path}: no Parquet file or fragment"):
            panels_from_files({"SIM:AAAUSDT": path})
        with pytest.raises(ContractError, match="no Parquet file or fragment"):
            read_bar_columns(path, ("timestamp",))


def test_the_first_symbol_in_order_with_bad_timestamps_is_named():
    data = {
        "SIM:BBB": bars([0, 1], [1, 2]).assign(timestamp=lambda f: f.timestamp + 1),
        "SIM:AAA": bars([0, 2, 1], [1, 2, 3]),
        "SIM:CCC": bars([0, 1], [1, 2]).drop(columns="close"),
    }
    with pytest.raises(ContractError, match="bars of SIM:AAA: timestamps not strictly increasing at row 2"):
        returns_matrix(data)
    del data["SIM:AAA"]
    with pytest.raises(ContractError, match="bars of SIM:BBB: timestamp not at 00:00 UTC at row 0"):
        returns_matrix(data)


def test_a_tables_fragments_are_listed_in_key_order_without_leftovers(tmp_path):
    """`layer.fragment_paths` (one scandir, what the readers use): key order, no temporary,
    hidden or bookkeeping file; the old layout's single file; nothing for a missing table."""
    from quantlake.layer import fragment_files, fragment_paths

    table = tmp_path / "SIM_AAAUSDT_1d.parquet"
    table.mkdir()
    for name in ("2026-Q2.parquet", "2020-2025.parquet", "2026-Q1.parquet", ".2026-Q3.parquet.tmp", ".tmp-x.parquet",
                 "_intent.parquet", "notes.txt"):
        (table / name).write_bytes(b"")
    single = tmp_path / "SIM_BBBUSDT_1d.parquet"
    single.write_bytes(b"")
    assert [p.rsplit("/", 1)[-1] for p in fragment_paths(table)] == ["2020-2025.parquet", "2026-Q1.parquet", "2026-Q2.parquet"]
    assert fragment_paths(single) == [str(single)] and fragment_paths(tmp_path / "SIM_CCCUSDT_1d.parquet") == []
    for path in (table, single, str(table)):
        assert [str(f) for f in fragment_files(path)] == fragment_paths(path)
