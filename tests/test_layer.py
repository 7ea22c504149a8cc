"""The one layer abstraction: fragment layout, reading, write-if-changed, intents, temp files."""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quantlake.contracts import OHLCV_SCHEMA, date_to_ms
from quantlake.data.features import LONG_SCHEMA, features_layer
from quantlake.layer import Layer, LayerError, key_bounds, period_keys, table_digest, table_hashes
from quantlake.storage import atomic_write_bytes, table_to_parquet_bytes


def bars(first: str, days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = date_to_ms(dt.date.fromisoformat(first)) + np.arange(days, dtype="int64") * 86_400_000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, days)))
    return pd.DataFrame({"timestamp": ts, "open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": rng.uniform(1, 2, days)})


NAME = "SIM_BTCUSDT_1d.parquet"


def test_period_keys_and_bounds():
    ts = np.array([date_to_ms(dt.date(2024, 12, 31)), date_to_ms(dt.date(2025, 1, 1)), date_to_ms(dt.date(2025, 2, 28))])
    assert period_keys(ts, "year").tolist() == ["2024-2024", "2025-Q1", "2025-Q1"]  # closed years, then quarters
    assert period_keys(ts[:1], "year").tolist() == ["2024-Q4"]
    assert period_keys(ts, "month").tolist() == ["2024-12", "2025-01", "2025-02"]
    assert key_bounds("2025") == (date_to_ms(dt.date(2025, 1, 1)), date_to_ms(dt.date(2026, 1, 1)) - 1)
    assert key_bounds("2020-2025") == (date_to_ms(dt.date(2020, 1, 1)), date_to_ms(dt.date(2026, 1, 1)) - 1)
    assert key_bounds("2025-Q4") == (date_to_ms(dt.date(2025, 10, 1)), date_to_ms(dt.date(2026, 1, 1)) - 1)
    assert key_bounds("2024-02") == (date_to_ms(dt.date(2024, 2, 1)), date_to_ms(dt.date(2024, 3, 1)) - 1)


def test_a_table_is_a_directory_of_yearly_fragments_any_parquet_reader_reads_whole(tmp_path):
    layer = Layer(tmp_path, OHLCV_SCHEMA)
    frame = bars("2023-11-01", 500)
    hashes = layer.write(NAME, frame)
    assert sorted(hashes) == ["2023-2024", "2025-Q1"] and hashes == table_hashes(tmp_path / NAME)
    whole = pd.read_parquet(tmp_path / NAME)
    pd.testing.assert_frame_equal(whole, frame, check_exact=True)  # same rows, order, columns and dtypes
    assert pq.read_table(tmp_path / NAME, columns=["close"], filters=[("timestamp", ">=", int(frame["timestamp"].iat[400]))]).num_rows == 100
    assert layer.names() == [NAME] and layer.exists(NAME) and not layer.is_legacy(NAME)


def test_reading_only_some_columns_rows_and_dates_opens_only_the_fragments_in_range(tmp_path):
    layer = Layer(tmp_path, OHLCV_SCHEMA)
    frame = bars("2023-11-01", 500)
    layer.write(NAME, frame)
    (tmp_path / NAME / "2023-2024.parquet").write_bytes(b"not parquet")  # never opened below
    lo, hi = date_to_ms(dt.date(2025, 2, 1)), date_to_ms(dt.date(2025, 2, 28))
    got = layer.read(NAME, columns=["timestamp", "close"], start=lo, end=hi)
    assert list(got.columns) == ["timestamp", "close"] and len(got) == 28
    assert got["timestamp"].min() == lo and got["timestamp"].max() == hi
    assert len(layer.read(NAME, filters=[("close", ">", 1e9)], start=lo)) == 0
    with pytest.raises(LayerError, match="SIM_BTCUSDT_1d.parquet"):
        layer.read(NAME)  # the unreadable fragment is named
    assert layer.read("SIM_NONEUSDT_1d.parquet") is None


def test_a_new_year_folds_the_quarters_of_the_closed_year_into_one_fragment(tmp_path):
    layer = Layer(tmp_path, OHLCV_SCHEMA)
    frame = bars("2024-11-01", 61)  # to 2024-12-31
    assert sorted(layer.write(NAME, frame)) == ["2024-Q4"]
    assert sorted(layer.write(NAME, bars("2024-11-01", 62))) == ["2024-2024", "2025-Q1"]
    assert not (tmp_path / NAME / "2024-Q4.parquet").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / NAME), bars("2024-11-01", 62), check_exact=True)


def test_a_new_day_rewrites_only_the_open_fragment(tmp_path):
    layer = Layer(tmp_path, OHLCV_SCHEMA)
    frame = bars("2023-11-01", 500)
    first = layer.write(NAME, frame.iloc[:-1])
    closed = {k: (tmp_path / NAME / f"{k}.parquet").stat() for k in ("2023-2024",)}
    second = layer.write(NAME, frame, known=first)
    assert {k: v for k, v in second.items() if k != "2025-Q1"} == {k: v for k, v in first.items() if k != "2025-Q1"}
    assert second["2025-Q1"] != first["2025-Q1"]
    for key, st in closed.items():  # not rewritten: same inode, same mtime
        now = (tmp_path / NAME / f"{key}.parquet").stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), key
    assert layer.write(NAME, frame, known=second) == second  # nothing changed: nothing written


def test_fragments_no_longer_held_are_dropped_and_an_empty_table_disappears(tmp_path):
    layer = Layer(tmp_path, OHLCV_SCHEMA)
    frame = bars("2023-11-01", 500)
    layer.write(NAME, frame)
    assert sorted(layer.write(NAME, frame[frame["timestamp"] >= date_to_ms(dt.date(2024, 1, 1))])) == ["2024-2024", "2025-Q1"]
    assert not (tmp_path / NAME / "2023-2024.parquet").exists()
    assert layer.write(NAME, frame.iloc[:0]) == {} and not (tmp_path / NAME).exists()


def test_the_intent_record_explains_an_interrupted_commit_and_nothing_else(tmp_path):
    layer = Layer(tmp_path, OHLCV_SCHEMA)
    frame = bars("2023-11-01", 500)
    recorded = layer.write(NAME, frame.iloc[:-3])
    layer.clear_intents()
    new = layer.write(NAME, frame, known=recorded)  # bookkeeping not written yet: a crash here
    assert layer.explains(NAME, recorded, new)
    layer.clear_intents()
    assert not layer.explains(NAME, recorded, new)  # the same difference with no intent: tampering
    tampered = dict(new, **{"2023-2024": "0" * 64})
    layer.write_intent(NAME, new, complete=True)
    assert not layer.explains(NAME, recorded, tampered)  # a fragment the intent did not announce
    assert not layer.explains(NAME, recorded, {k: v for k, v in recorded.items() if k != "2023-2024"})  # a deleted one
    assert table_digest(new) == table_digest(dict(reversed(list(new.items()))))


def test_temp_files_of_a_killed_writer_are_removed(tmp_path):
    layer = Layer(tmp_path, OHLCV_SCHEMA)
    layer.write(NAME, bars("2024-01-01", 10))
    (tmp_path / NAME / ".2024.parquet.abc.tmp").write_bytes(b"half")
    (tmp_path / ".x.tmp").write_bytes(b"half")
    assert layer.remove_temp_files() == 2
    assert pd.read_parquet(tmp_path / NAME).shape == (10, 6)


def test_an_old_layout_file_reads_the_same_and_migrates_to_the_same_rows(tmp_path):
    layer = Layer(tmp_path, OHLCV_SCHEMA)
    frame = bars("2023-11-01", 500)
    atomic_write_bytes(tmp_path / NAME, table_to_parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False)))
    assert layer.is_legacy(NAME) and layer.fragments(NAME) == {}
    pd.testing.assert_frame_equal(layer.read(NAME), frame, check_exact=True)
    assert layer.migrate() == [NAME] and (tmp_path / NAME).is_dir()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / NAME), frame, check_exact=True)
    assert layer.migrate() == []


def test_the_feature_table_holds_one_fragment_per_month_with_every_symbol(tmp_path):
    layer = features_layer(tmp_path)
    rows = []
    for sym in ("SIM:ETHUSDT", "SIM:BTCUSDT"):
        b = bars("2025-01-20", 20)
        rows.append(pd.DataFrame({"timestamp": b["timestamp"], "symbol": sym, **{c: 0.5 for c in LONG_SCHEMA.names[2:]}}))
    frame = pd.concat(rows, ignore_index=True)
    hashes = layer.write("tv_technicals_1d.parquet", frame)
    assert sorted(hashes) == ["2025-01", "2025-02"]
    jan = pd.read_parquet(tmp_path / "tv_technicals_1d.parquet" / "2025-01.parquet")
    assert jan["symbol"].tolist() == ["SIM:BTCUSDT"] * 12 + ["SIM:ETHUSDT"] * 12  # sorted by (symbol, timestamp)
    assert len(pd.read_parquet(tmp_path / "tv_technicals_1d.parquet")) == 40


def test_the_features_stage_encodes_a_month_from_arrow_slices_exactly_as_layer_encode(tmp_path):
    # issue 14 item 8: the features stage splits each symbol's rows into month slices once and
    # encodes a month from Arrow tables; the bytes must be those of `Layer.encode` on pandas
    # (NaN stored as null, rows sorted by (symbol, timestamp), whatever order the parts come in).
    from quantlake.data.feature_months import encode_rows, months_of

    def rows_table(frame):
        return pa.Table.from_pandas(frame, schema=LONG_SCHEMA, preserve_index=False)

    layer = features_layer(tmp_path)
    frames = []
    for i, sym in enumerate(("SIM:ETHUSDT", "SIM:BTCUSDT", "SIM:ADAUSDT")):
        b = bars("2025-01-10", 45 + 7 * i, seed=i)
        values = {c: np.where(np.arange(len(b)) % (3 + j % 4) == 0, np.nan, b["close"].to_numpy() * j) for j, c in enumerate(LONG_SCHEMA.names[2:])}
        frames.append(pd.DataFrame({"timestamp": b["timestamp"], "symbol": sym, **values}))
    expected = layer.encode(pd.concat(frames, ignore_index=True))
    by_month: dict[str, list[pa.Table]] = {}
    for frame in frames:
        for key, part in months_of(rows_table(frame)).items():
            assert part.num_rows == int((period_keys(frame["timestamp"].to_numpy(), "month") == key).sum())
            by_month.setdefault(key, []).append(part)
    assert sorted(by_month) == sorted(expected) == ["2025-01", "2025-02", "2025-03"]
    for key, parts in by_month.items():
        assert encode_rows(layer, parts) == {key: expected[key]}
        assert encode_rows(layer, parts[::-1]) == {key: expected[key]}
    assert months_of(rows_table(frames[0].iloc[:0])) == {}
    # several symbols at once (a spill chunk): grouped by month, each month encodes the same
    chunk = months_of(pa.concat_tables([rows_table(f) for f in frames]).combine_chunks())
    assert {k: encode_rows(layer, [v]) for k, v in chunk.items()} == {k: {k: v} for k, v in expected.items()}


def test_encode_gives_the_bytes_of_the_pandas_conversion_whatever_the_row_order(tmp_path):
    """`encode` skips the sort of sorted rows and converts plain number columns itself; the
    fragments must stay those of a stable sort and `Table.from_pandas` (NaN is null)."""
    layer = Layer(tmp_path, OHLCV_SCHEMA)
    frame = bars("2024-11-01", 200, seed=3)
    frame.loc[[5, 150], "volume"] = np.nan  # a value some layers hold (features: warm-up NaN)

    def reference(frame):
        frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
        table = pa.Table.from_pandas(frame[list(OHLCV_SCHEMA.names)], schema=OHLCV_SCHEMA, preserve_index=False)
        keys = period_keys(frame["timestamp"].to_numpy(), "year")
        return {k: table_to_parquet_bytes(table.take(pa.array(np.flatnonzero(keys == k)))) for k in sorted(set(keys.tolist()))}

    expected = reference(frame)
    assert set(expected) == {"2024-2024", "2025-Q1", "2025-Q2"}
    assert pq.read_table(pa.BufferReader(expected["2024-2024"])).column("volume").null_count == 1
    shuffled = frame.sample(frac=1.0, random_state=1)  # takes the sorting path
    assert layer.encode(frame) == expected and layer.encode(shuffled) == expected
    assert layer.encode(frame.astype({"open": "object"})) == expected  # not plain numbers: from_pandas
