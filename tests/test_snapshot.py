"""Snapshot.features(): projection and filters, on a single file and on a directory dataset."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quantlake.alpha.snapshot import FEATURES_FILE, Snapshot, SnapshotError

DAY_MS = 86_400_000


def feature_table() -> pd.DataFrame:
    days = pd.date_range("2024-01-30", "2024-03-02", freq="D")
    symbols = ["SIM:AUSDT", "SIM:BUSDT", "SIM:CUSDT"]
    rows = [(d.value // 1_000_000, s) for d in days for s in symbols]
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "timestamp": np.array([r[0] for r in rows], dtype="int64"),
        "symbol": [r[1] for r in rows],
        "recommend_all": rng.normal(size=len(rows)),
        "recommend_ma": rng.normal(size=len(rows)),
        "rsi": rng.normal(size=len(rows)),
    })


@pytest.fixture(params=["file", "fragments"])
def snap(request, tmp_path) -> Snapshot:
    table = feature_table()
    path = tmp_path / "features" / FEATURES_FILE
    if request.param == "file":
        path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    else:  # one fragment per month, as the lakehouse's directory dataset
        path.mkdir(parents=True)
        month = pd.to_datetime(table["timestamp"], unit="ms").dt.strftime("%Y-%m")
        for m, part in table.groupby(month):
            pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False), path / f"{m}.parquet")
    return Snapshot(tmp_path, {"snapshot_id": "x", "as_of": "2024-03-02", "files": {}})


def test_whole_table_by_default(snap):
    pd.testing.assert_frame_equal(snap.features(), feature_table())


def test_columns_symbols_and_days(snap):
    got = snap.features(columns=["timestamp", "symbol", "recommend_all"], symbols={"SIM:CUSDT", "SIM:AUSDT"},
                        start=dt.date(2024, 2, 1), end="2024-02-29")
    t = feature_table()
    day = pd.to_datetime(t["timestamp"], unit="ms")
    keep = t["symbol"].isin(["SIM:AUSDT", "SIM:CUSDT"]) & (day >= "2024-02-01") & (day <= "2024-02-29")
    want = t.loc[keep, ["timestamp", "symbol", "recommend_all"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
    # the bounds are inclusive days: both ends are in, the days around them are not
    days = pd.to_datetime(got["timestamp"], unit="ms")
    assert days.min() == pd.Timestamp("2024-02-01") and days.max() == pd.Timestamp("2024-02-29")


def test_a_rating_late_on_the_end_day_is_kept_and_the_next_day_is_not(tmp_path):
    path = tmp_path / "features" / FEATURES_FILE
    path.parent.mkdir(parents=True)
    ts = np.array([0, DAY_MS - 1, DAY_MS], dtype="int64")  # 1970-01-01 00:00, 23:59:59.999, 01-02 00:00
    pq.write_table(pa.table({"timestamp": ts, "symbol": ["S"] * 3}), path)
    got = Snapshot(tmp_path, {}).features(end=pd.Timestamp("1970-01-01"))
    assert got["timestamp"].tolist() == [0, DAY_MS - 1]
    assert Snapshot(tmp_path, {}).features(start="1970-01-02")["timestamp"].tolist() == [DAY_MS]


def test_unknown_column_is_named(snap):
    with pytest.raises(SnapshotError, match=r"no column\(s\) \['recommend_nope'\]"):
        snap.features(columns=["timestamp", "recommend_nope"])


def test_no_feature_table_gives_none(tmp_path):
    assert Snapshot(tmp_path, {}).features(columns=["timestamp"]) is None
