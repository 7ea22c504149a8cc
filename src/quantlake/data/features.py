"""The feature store stage: point-in-time technical ratings per symbol, kept incrementally.

Layout (owned by the `features` stage, `persist: true`):

    data/staging/features/{EXCHANGE}_{SYMBOL}_1d.parquet   `technical_ratings` of the symbol's bars
    data/staging/features/_features_state.json            per symbol: sha256 of the bars it was
                                                          computed from, rows, file sha256

A symbol whose bars did not change is not touched. When bars grew, the new rows are appended
to the stored ones (`technical_ratings_incremental` checks that the stored rows are still what
a full computation gives, and recomputes from the first row that is not). The gate publishes
the certified symbols' rows as one long table, `data/lakehouse/features/tv_technicals_1d.parquet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..contracts import SCHEMA_VERSION, SymbolId
from ..progress import track
from ..storage import atomic_write_bytes, atomic_write_json, bars_to_parquet_bytes, read_json, sha256_bytes, table_to_parquet_bytes
from .technicals import LONG_COLUMNS, OUTPUT_COLUMNS, technical_ratings_incremental

STATE_FILE = "_features_state.json"
LONG_FILE = "tv_technicals_1d.parquet"


def features_to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    schema = pa.schema([("timestamp", pa.int64())] + [(c, pa.float64()) for c in OUTPUT_COLUMNS[1:]])
    return table_to_parquet_bytes(pa.Table.from_pandas(frame[list(OUTPUT_COLUMNS)], schema=schema, preserve_index=False))


def long_features_to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    schema = pa.schema([("timestamp", pa.int64()), ("symbol", pa.string())] + [(c, pa.float64()) for c in LONG_COLUMNS[2:]])
    return table_to_parquet_bytes(pa.Table.from_pandas(frame[list(LONG_COLUMNS)], schema=schema, preserve_index=False))


@dataclass
class FeaturesSummary:
    computed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    recomputed_from: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"features: {len(self.computed)} computed ({len(self.recomputed_from)} with changed history), "
            f"{len(self.unchanged)} unchanged, {len(self.failed)} failed"
        )


def run_features(symbols: Iterable[SymbolId], read_bars: Callable[[SymbolId], pd.DataFrame], out_dir: Path, *, progress: bool | None = False) -> FeaturesSummary:
    """Compute (incrementally) the feature file of every symbol; `progress` as `progress.progress_bar`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / STATE_FILE
    state = read_json(state_path) if state_path.exists() else {"schema_version": SCHEMA_VERSION, "symbols": {}}
    entries = state["symbols"]
    summary = FeaturesSummary()
    wanted = sorted(set(symbols))
    for sid in track(wanted, len(wanted), "features", "symbols", progress):
        sym = str(sid)
        try:
            bars = read_bars(sid)
            bars_sha = sha256_bytes(bars_to_parquet_bytes(bars))
            path = out_dir / sid.filename
            entry = entries.get(sym)
            if entry and entry.get("bars_sha256") == bars_sha and path.exists() and entry.get("sha256") == sha256_bytes(path.read_bytes()):
                summary.unchanged.append(sym)
                continue
            previous = pq.read_table(path).to_pandas() if path.exists() else None
            result = technical_ratings_incremental(bars, previous, where=sym)
            data = features_to_parquet_bytes(result.frame)
            atomic_write_bytes(path, data)
            entries[sym] = {"file": sid.filename, "bars_sha256": bars_sha, "rows": int(len(result.frame)), "sha256": sha256_bytes(data)}
            summary.computed.append(sym)
            if result.diverged_at is not None:
                summary.recomputed_from[sym] = int(result.diverged_at)
        except Exception as exc:  # one bad symbol never sinks the batch
            summary.failed[sym] = f"{sym}: {type(exc).__name__}: {exc}"
    if summary.computed:
        atomic_write_json(state_path, {"schema_version": SCHEMA_VERSION, "symbols": dict(sorted(entries.items()))})
    return summary


def read_symbol_features(features_dir: Path, sid: SymbolId) -> pd.DataFrame | None:
    path = Path(features_dir) / sid.filename
    return pq.read_table(path).to_pandas() if path.exists() else None


def long_table(features_dir: Path, symbols: Iterable[str]) -> pd.DataFrame:
    """The long feature table (timestamp, symbol, ...) of `symbols`, sorted by (symbol, timestamp)."""
    frames = []
    for sym in sorted(symbols):
        frame = read_symbol_features(features_dir, SymbolId.parse(sym))
        if frame is not None:
            frame.insert(1, "symbol", sym)
            frames.append(frame)
    if not frames:
        return pd.DataFrame({c: pd.Series([], dtype="int64" if c == "timestamp" else ("object" if c == "symbol" else "float64")) for c in LONG_COLUMNS})
    return pd.concat(frames, ignore_index=True)[list(LONG_COLUMNS)]
