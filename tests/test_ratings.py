"""RatingsTable (alpha/ratings.py): the ratings read a fragment at a time answer every date as the frame does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quantlake.alpha.ratings import RATING_SOURCE_COLUMNS, RatingsTable
from quantlake.data.feature_months import LONG_FILE
from quantlake.layer import fragment_files


def test_reading_the_fragments_indexes_the_same_rows_as_the_frame(sim_lakehouse, tmp_path):
    files = fragment_files(sim_lakehouse / "lakehouse" / "features" / LONG_FILE)
    assert len(files) > 12
    frame = pq.read_table([str(f) for f in files], columns=list(RATING_SOURCE_COLUMNS)).to_pandas()
    read, indexed = RatingsTable.read(files), RatingsTable(frame)
    assert len(read) == len(indexed) == len(frame) > 1000
    days = pd.to_datetime(np.unique(frame["timestamp"]), unit="ms")
    for as_of in days[::9]:
        for window in (1, 30, 365):
            start = as_of - pd.Timedelta(days=window - 1)
            names, values = read.latest(start, as_of)
            want_names, want_values = indexed.latest(start, as_of)
            assert names == want_names and np.array_equal(values, want_values, equal_nan=True)
    assert len(read.latest(days[-1], days[-1])[0]) > 5


def test_a_repeated_day_keeps_the_later_row_and_a_missing_symbol_is_skipped(tmp_path):
    ts = np.array([0, 86_400_000, 86_400_000, 0], dtype="int64")
    first = pa.table({"timestamp": ts[:2], "symbol": ["SIM:B", "SIM:A"], "recommend_all": [0.1, 0.2], "recommend_ma": [0.0, 0.0], "recommend_other": [1.0, None]})
    second = pa.table({"timestamp": ts[2:], "symbol": pa.array(["SIM:A", None], pa.string()), "recommend_all": [0.3, 0.4], "recommend_ma": [0.0, 0.0], "recommend_other": [0.0, 0.0]})
    paths = []
    for i, t in enumerate((first, second)):
        paths.append(tmp_path / f"{i}.parquet")
        pq.write_table(t, paths[-1])
    table = RatingsTable.read(paths)
    names, values = table.latest(pd.Timestamp(0), pd.Timestamp(86_400_000, unit="ms"))
    assert names == ["SIM:A", "SIM:B"] and values[:, 0].tolist() == [0.3, 0.1]  # the later row of SIM:A's day 1
    names, values = table.latest(pd.Timestamp(0), pd.Timestamp(0))
    assert names == ["SIM:B"] and values.tolist() == [[0.1, 0.0, 1.0]]
    names, values = RatingsTable.read(paths[:1]).latest(pd.Timestamp(0), pd.Timestamp(86_400_000, unit="ms"))
    assert names == ["SIM:A", "SIM:B"] and values[0, :2].tolist() == [0.2, 0.0] and np.isnan(values[0, 2])  # a null is NaN
