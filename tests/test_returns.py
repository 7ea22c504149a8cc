"""Returns and traded-value panels: gaps, listings, contract errors, real Binance data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantlake.alpha.returns import returns_matrix, to_day, traded_value_matrix
from quantlake.contracts import DAY_MS, ContractError

REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real"
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


def test_gap_gives_nan_on_missing_day_and_on_resumption_never_a_multi_day_return():
    panel = returns_matrix({"SIM:AAA": bars([0, 1, 2, 4, 5], [100, 110, 99, 200, 220])})
    # day 3 is absent from the only symbol: it is not a row at all (union of bar days)
    assert list(panel.index) == [day(0), day(1), day(2), day(4), day(5)]
    r = panel["SIM:AAA"]
    assert np.isnan(r[day(0)])  # first bar: no previous close
    assert r[day(1)] == pytest.approx(0.10, abs=1e-15)
    assert r[day(2)] == pytest.approx(99 / 110 - 1, abs=1e-15)
    assert np.isnan(r[day(4)])  # 99 -> 200 spans the missing day 3: not booked on day 4
    assert r[day(5)] == pytest.approx(0.10, abs=1e-15)


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
    assert panel["SIM:OLD"].isna().tolist() == [True, False, False, False, True, True]
    np.testing.assert_allclose(panel["SIM:NEW"].dropna(), [1.0, 1.0, 1.0])
    assert (panel.fillna(-9) != 0).all().all()  # no zero padding anywhere


def test_day_missing_in_one_symbol_but_present_in_another():
    panel = returns_matrix({"SIM:AAA": bars([0, 1, 3], [1, 2, 3]), "SIM:BBB": bars([0, 1, 2, 3], [1, 1, 1, 1])})
    assert np.isnan(panel.at[day(2), "SIM:AAA"]) and np.isnan(panel.at[day(3), "SIM:AAA"])
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
    folder = REAL / "binance_spot_1d_freqtrade_json"
    if not folder.exists():
        pytest.skip(f"real data folder {folder} is absent")
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
