import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quantlake.contracts import (
    DAY_MS,
    ContractError,
    SymbolId,
    check_as_of,
    date_to_ms,
    find_gaps,
    last_closed_day,
    validate_catalog,
    validate_ohlcv,
)


@pytest.mark.parametrize("text", ["BINANCE:BTCUSDT", "SIM:1INCHUSDT", "KRAKEN:XBT.USD", "AB:X-Y_Z"])
def test_valid_symbols_round_trip_through_file_names(text):
    sid = SymbolId.parse(text)
    assert str(sid) == text
    assert SymbolId.from_filename(sid.filename) == sid
    assert sid.filename == text.replace(":", "_", 1) + "_1d.parquet"


@pytest.mark.parametrize(
    "text",
    ["btc", "binance:BTCUSDT", "BINANCE:../etc/passwd", "BINANCE:BTC/USDT", "B:BTC", "BINANCE:", "", None, 42, "BINANCE:BTC USDT"],
)
def test_invalid_symbols_are_rejected_with_their_origin(text):
    with pytest.raises(ContractError) as err:
        SymbolId.parse(text, where="configs/x.yaml")
    assert "configs/x.yaml" in str(err.value)
    assert repr(text) in str(err.value)


def test_file_names_that_are_not_lakehouse_files_are_rejected():
    for name in ["BTCUSDT.parquet", "SIM_BTC USDT_1d.parquet", "x_1d.parquet", "_ingest_state.json"]:
        with pytest.raises(ContractError):
            SymbolId.from_filename(name)


def _bars(n=5):
    ts = date_to_ms(dt.date(2024, 1, 1)) + np.arange(n, dtype="int64") * DAY_MS
    c = np.linspace(10, 14, n)
    return pd.DataFrame({"timestamp": ts, "open": c, "high": c * 1.1, "low": c * 0.9, "close": c, "volume": np.ones(n)})


def test_validator_accepts_a_clean_frame():
    assert validate_ohlcv(_bars(), file="f.parquet", as_of=dt.date(2024, 1, 5)) == []


def test_validator_reports_every_violation_with_file_column_row_and_value():
    df = _bars(6)
    df.loc[1, "low"] = 50.0  # above the body
    df.loc[2, "high"] = 1.0  # below the body
    df.loc[3, "close"] = -1.0
    df.loc[4, "volume"] = -5.0
    df.loc[5, "timestamp"] = df.loc[4, "timestamp"] + 3_600_000
    found = validate_ohlcv(df, file="SIM_X_1d.parquet", as_of=dt.date(2024, 1, 3))
    text = "\n".join(map(str, found))
    assert all(v.file == "SIM_X_1d.parquet" for v in found)
    got = {(v.column, v.row) for v in found}
    assert {("low", 1), ("high", 2), ("close", 3), ("volume", 4), ("timestamp", 5)} <= got
    assert ("timestamp", 3) in got and ("timestamp", 4) in got  # after as_of 2024-01-03
    assert "value -5.0" in text and "not at 00:00 UTC" in text


def test_validator_reports_duplicates_unsorted_and_wrong_schema():
    df = _bars(4)
    df.loc[2, "timestamp"] = df.loc[1, "timestamp"]
    df.loc[3, "timestamp"] = df.loc[0, "timestamp"]
    rules = {(v.row, v.rule) for v in validate_ohlcv(df)}
    assert (2, "duplicate timestamp") in rules and (3, "not sorted ascending") in rules
    assert validate_ohlcv(df.drop(columns="volume"))[0].rule.startswith("columns must be exactly")
    wrong = _bars().astype({"volume": "int64"})
    assert validate_ohlcv(wrong)[0].column == "volume"


def test_gaps_are_runs_of_missing_days_longer_than_the_threshold():
    days = [dt.date(2024, 1, d) for d in (1, 2, 8, 9, 16)]  # 5 missing (3..7), then 6 missing (10..15)
    ts = [date_to_ms(d) for d in days]
    assert find_gaps(ts, 5) == [["2024-01-10", "2024-01-15"]]
    assert find_gaps(ts, 4) == [["2024-01-03", "2024-01-07"], ["2024-01-10", "2024-01-15"]]


def test_as_of_must_have_closed_in_utc():
    now = dt.datetime(2026, 11, 26, 0, 30, tzinfo=dt.timezone.utc)
    assert last_closed_day(now) == dt.date(2026, 11, 25)
    assert check_as_of(dt.date(2026, 11, 25), now) == dt.date(2026, 11, 25)
    with pytest.raises(ContractError, match="has not closed yet"):
        check_as_of(dt.date(2026, 11, 26), now)


def test_catalog_validator_names_symbol_and_field():
    bad = {"schema_version": 1, "as_of": "2024-01-01", "symbols": {"SIM:X": {"status": "great", "data_quality_score": 2}}}
    problems = "\n".join(validate_catalog(bad))
    assert "SIM:X: missing field 'sha256'" in problems
    assert "status 'great'" in problems and "data_quality_score 2" in problems
