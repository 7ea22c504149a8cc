"""The staging bars layer owned by `ingest`: bar files, quarantine files and bookkeeping.

Layout (file names follow the lakehouse contract):

    data/staging/bars/{EXCHANGE}_{SYMBOL}_1d.parquet        sanitized bars
    data/staging/bars/_ingest_state.json                    bookkeeping, one entry per symbol
    data/staging/quarantine/{EXCHANGE}_{SYMBOL}_1d.parquet  everything a gate removed
    data/staging/.ingest.lock                               one ingest at a time

A symbol is committed file first (atomically), then bookkeeping. A crash between the two
leaves a bookkeeping entry whose sha256 does not match its file; `load_state` reconciles such
entries from the files themselves, so readers always see bookkeeping that matches the files.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ..contracts import SCHEMA_VERSION, SymbolId, find_gaps, ms_to_date
from ..storage import atomic_write_bytes, atomic_write_json, bars_to_parquet_bytes, read_bars, read_json, sha256_bytes, sha256_file, table_to_parquet_bytes
from .quality import empty_quarantine, sort_quarantine

STATE_FILE = "_ingest_state.json"


def quarantine_to_parquet_bytes(q: pd.DataFrame) -> bytes:
    import pyarrow as pa

    q = sort_quarantine(q)[list(empty_quarantine().columns)]
    table = pa.Table.from_pandas(q, preserve_index=False)
    table = table.cast(
        pa.schema(
            [
                ("symbol", pa.string()),
                ("timestamp", pa.int64()),
                ("rule", pa.string()),
                ("field", pa.string()),
                ("original", pa.float64()),
                *[(c, pa.float64()) for c in ("open", "high", "low", "close", "volume")],
            ]
        )
    )
    return table_to_parquet_bytes(table)


def bars_summary(bars: pd.DataFrame, max_gap_days: int) -> dict:
    """The derived bookkeeping fields of a bar file."""
    ts = bars["timestamp"].to_numpy()
    return {
        "rows": int(len(bars)),
        "start_date": ms_to_date(ts[0]).isoformat() if len(ts) else None,
        "end_date": ms_to_date(ts[-1]).isoformat() if len(ts) else None,
        "gaps": find_gaps(ts, max_gap_days),
    }


@dataclass
class StagingStore:
    bars_dir: Path
    quarantine_dir: Path
    max_gap_days: int = 5

    def __post_init__(self) -> None:
        self.bars_dir = Path(self.bars_dir)
        self.quarantine_dir = Path(self.quarantine_dir)

    @property
    def state_path(self) -> Path:
        return self.bars_dir / STATE_FILE

    @property
    def lock_path(self) -> Path:
        return self.bars_dir.parent / ".ingest.lock"

    def bars_path(self, sid: SymbolId) -> Path:
        return self.bars_dir / sid.filename

    def quarantine_path(self, sid: SymbolId) -> Path:
        return self.quarantine_dir / sid.filename

    # -- reading ---------------------------------------------------------------------------

    def read_bars(self, sid: SymbolId) -> pd.DataFrame | None:
        path = self.bars_path(sid)
        return read_bars(path) if path.exists() else None

    def read_quarantine(self, sid: SymbolId) -> pd.DataFrame:
        path = self.quarantine_path(sid)
        if not path.exists():
            return empty_quarantine()
        return pq.read_table(path).to_pandas()

    def bar_files(self) -> dict[str, Path]:
        """Symbol id -> bar file, for every valid lakehouse file name in the folder."""
        out = {}
        if self.bars_dir.exists():
            for path in sorted(self.bars_dir.glob("*_1d.parquet")):
                out[str(SymbolId.from_filename(path.name))] = path
        return out

    def load_state(self) -> dict:
        """Bookkeeping reconciled with the files on disk (see module docstring)."""
        state = read_json(self.state_path) if self.state_path.exists() else {}
        symbols = dict(state.get("symbols") or {})
        files = self.bar_files()
        for sym in list(symbols):
            # an entry without a file is a symbol checked and found empty; keep that record
            if sym not in files and symbols[sym].get("file") is not None:
                del symbols[sym]
        for sym, path in files.items():
            entry = dict(symbols.get(sym) or {})
            sha = sha256_file(path)
            if entry.get("sha256") != sha:
                entry.update(bars_summary(read_bars(path), self.max_gap_days))
                entry.update({"file": path.name, "sha256": sha, "reconciled": True})
            qpath = self.quarantine_path(SymbolId.parse(sym))
            qsha = sha256_file(qpath) if qpath.exists() else None
            if entry.get("quarantine_sha256") != qsha:
                entry["quarantine_sha256"] = qsha
                entry["quarantined"] = int(len(self.read_quarantine(SymbolId.parse(sym))))
                entry["reconciled"] = True
            symbols[sym] = entry
        return {"schema_version": SCHEMA_VERSION, "symbols": symbols}

    # -- writing ---------------------------------------------------------------------------

    def remove_temp_files(self) -> int:
        """Delete temp files a killed writer left behind (call with the lock held)."""
        n = 0
        for folder in (self.bars_dir, self.quarantine_dir):
            if folder.exists():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                    n += 1
        return n

    def commit(
        self, sid: SymbolId, bars: pd.DataFrame, quarantine: pd.DataFrame, entry: dict, state: dict, *, updated_at: str, write_state: bool = True
    ) -> dict:
        """Write a symbol's files (each only if its bytes changed), then the bookkeeping.

        `last_updated` becomes `updated_at` when the bar file changes. Returns the new entry;
        `state` is updated in place and, unless `write_state` is false (the caller then writes
        it in batches; `load_state` reconciles files committed after the last write), written
        atomically.
        """
        if bars.empty and quarantine.empty and not self.bars_path(sid).exists():
            # nothing served in the window (e.g. delisted before data.start): record the check only
            entry = {**entry, **bars_summary(bars, self.max_gap_days), "file": None, "sha256": None, "quarantine_sha256": None, "quarantined": 0}
            entry.pop("reconciled", None)
            state["symbols"][str(sid)] = entry
            if write_state:
                self.write_state(state)
            return entry
        qbytes = quarantine_to_parquet_bytes(quarantine) if len(quarantine) else None
        qpath = self.quarantine_path(sid)
        if qbytes is not None:
            qsha = sha256_bytes(qbytes)
            if entry.get("quarantine_sha256") != qsha:
                atomic_write_bytes(qpath, qbytes)
        else:
            qsha = None
        data = bars_to_parquet_bytes(bars)
        sha = sha256_bytes(data)
        entry = dict(entry)
        if entry.get("sha256") != sha or not self.bars_path(sid).exists():
            atomic_write_bytes(self.bars_path(sid), data)
            entry["last_updated"] = updated_at
        entry.update(bars_summary(bars, self.max_gap_days))
        entry.update({"file": sid.filename, "sha256": sha, "quarantine_sha256": qsha, "quarantined": int(len(quarantine))})
        entry.pop("reconciled", None)
        state["symbols"][str(sid)] = entry
        if write_state:
            self.write_state(state)
        return entry

    def write_state(self, state: dict) -> None:
        clean = {"schema_version": SCHEMA_VERSION, "symbols": {k: {f: v for f, v in e.items() if f != "reconciled"} for k, e in sorted(state["symbols"].items())}}
        atomic_write_json(self.state_path, clean)


def utc_iso(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
