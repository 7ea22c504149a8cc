"""A small lakehouse built by hand, in the seed's layout (one Parquet file per table) or as
directories of fragments under the same names (bars: one per year; features: one per month).

Used by tests/test_api.py and tests/test_show.py.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quantlake.contracts import SymbolId, date_to_ms

AS_OF = dt.date(2026, 1, 20)

# symbol -> (status, first day, last day, missing days)
SPEC = {
    "SIM:AAAUSDT": ("ok", dt.date(2025, 12, 1), AS_OF, []),
    "SIM:BBBUSDT": ("degraded", dt.date(2025, 12, 20), AS_OF, [dt.date(2026, 1, 3)]),
    "SIM:CCCUSDT": ("stale", dt.date(2025, 11, 25), dt.date(2026, 1, 10), []),
    "SIM:TOXUSDT": ("toxic", dt.date(2025, 12, 1), AS_OF, []),
}
CERTIFIED = ["SIM:AAAUSDT", "SIM:BBBUSDT", "SIM:CCCUSDT"]


def make_bars(sym: str) -> pd.DataFrame:
    _, first, last, missing = SPEC[sym]
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    days = [d for d in days if d not in missing]
    seed = sum(map(ord, sym))
    close = 100.0 + seed % 17 + np.arange(len(days)) * 0.5
    return pd.DataFrame(
        {
            "timestamp": np.array([date_to_ms(d) for d in days], dtype="int64"),
            "open": close - 0.25,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": 1000.0 + np.arange(len(days)),
        }
    )


def make_features(symbols) -> pd.DataFrame:
    frames = []
    for sym in symbols:
        ts = make_bars(sym)["timestamp"].to_numpy()
        n = len(ts)
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": sym,
                    "recommend_all": np.linspace(-1, 1, n),
                    "recommend_ma": np.linspace(1, -1, n),
                    "rsi_14": np.full(n, 50.0),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values(["timestamp", "symbol"]).reset_index(drop=True)


def _write(frame: pd.DataFrame, path: Path, layout: str, period: str) -> None:
    """One file, or a directory of fragments split by `period` ("Y" or "M") of the timestamp."""
    if layout == "file":
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        return
    path.mkdir(parents=True)
    keys = pd.to_datetime(frame["timestamp"], unit="ms").dt.strftime("%Y" if period == "Y" else "%Y-%m")
    # written newest first, so directory order is not row order
    for key in sorted(keys.unique(), reverse=True):
        pq.write_table(pa.Table.from_pandas(frame[keys == key], preserve_index=False), path / f"{key}.parquet")
    (path / f".{key}.parquet.tmp-123").write_bytes(b"half-written garbage")
    (path / "_layout.json").write_text("{}")


def build_lakehouse(repo: Path, layout: str, universe: pd.DataFrame | None = None) -> Path:
    lake = repo / "data" / "lakehouse"
    lake.mkdir(parents=True)
    symbols = {}
    for sym, (status, first, last, _) in SPEC.items():
        sid = SymbolId.parse(sym)
        bars = make_bars(sym)
        if status != "toxic":
            _write(bars, lake / sid.filename, layout, "Y")
        symbols[sym] = {
            "file": None if status == "toxic" else sid.filename,
            "rows": len(bars),
            "start_date": first.isoformat(),
            "end_date": last.isoformat(),
            "gaps": [["2026-01-03", "2026-01-03"]] if sym == "SIM:BBBUSDT" else [],
            "quarantined": 3 if sym == "SIM:BBBUSDT" else (40 if status == "toxic" else 0),
            "status": status,
            "reasons": ["contamination_unisolated"] if status == "toxic" else [],
        }
    (lake / "catalog.json").write_text(json.dumps({"schema_version": 1, "as_of": AS_OF.isoformat(), "symbols": symbols}))
    certified = {s: {"file": symbols[s]["file"], "status": symbols[s]["status"]} for s in CERTIFIED}
    (lake / "certified.json").write_text(json.dumps({"schema_version": 1, "as_of": AS_OF.isoformat(), "symbols": certified}))
    _write(make_features(CERTIFIED), lake / "features" / "tv_technicals_1d.parquet", layout, "M")
    if universe is not None:
        _write(universe, lake / "universe.parquet", "file", "Y")
    return lake
