"""The staging bars layer owned by `ingest`: bar tables, quarantine tables and bookkeeping.

Layout (table names follow the lakehouse contract; each table is a directory of yearly
fragments, see `quantlake.layer`):

    data/staging/bars/{EXCHANGE}_{SYMBOL}_1d.parquet/{YEAR}.parquet        sanitized bars
    data/staging/bars/_ingest_state.json                    bookkeeping, one entry per symbol
    data/staging/quarantine/{EXCHANGE}_{SYMBOL}_1d.parquet/{YEAR}.parquet  what a gate removed
    data/staging/.ingest.lock                               one ingest at a time
    data/staging/.freshness.json                            when each symbol was last checked
                                                            (wall clock: local, never versioned)
    data/staging/.corrupt/                                  staged files that failed verification
    data/staging/.other-sources/{source}/                   symbols staged from an earlier data.source

A symbol is committed fragments first (atomically, after an intent record naming them), then
bookkeeping. `load_state` verifies every table against the bookkeeping: a difference the intent
record explains is an interrupted commit and is adopted; any other difference (a hand edit, a
truncated or unreadable file) is corruption: the table is moved to `.corrupt/` with a message
naming it and the symbol is dropped from the bookkeeping, so the next ingest fetches it anew.
An unreadable bookkeeping file is moved aside the same way and rebuilt from readable tables.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import pyarrow as pa

from ..contracts import SCHEMA_VERSION, SymbolId, find_gaps, ms_to_date, validate_ohlcv
from ..layer import Layer, LayerError, table_digest
from ..lakehouse import bars_layer  # noqa: F401  (the bars layer, re-exported for the stages)
from ..storage import atomic_write_json, read_json
from .quality import empty_quarantine, sort_quarantine

STATE_FILE = "_ingest_state.json"
FRESHNESS_FILE = ".freshness.json"
CORRUPT_DIR = ".corrupt"
OTHER_SOURCES_DIR = ".other-sources"  # symbols staged from an earlier data.source
VOLATILE = ("last_checked", "last_updated")  # wall-clock fields: kept out of versioned files

QUARANTINE_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("timestamp", pa.int64()),
        ("rule", pa.string()),
        ("field", pa.string()),
        ("original", pa.float64()),
        *[(c, pa.float64()) for c in ("open", "high", "low", "close", "volume")],
    ]
)


def quarantine_layer(root: Path) -> Layer:
    """A layer of quarantine tables: yearly fragments, rows in `sort_quarantine` order."""
    return Layer(Path(root), QUARANTINE_SCHEMA, "year")


def quarantine_frame(q: pd.DataFrame) -> pd.DataFrame:
    return empty_quarantine() if q.empty else sort_quarantine(q)[list(empty_quarantine().columns)]


def bars_summary(bars: pd.DataFrame, max_gap_days: int) -> dict:
    """The derived bookkeeping fields of a bar table."""
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
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr), repr=False)

    def __post_init__(self) -> None:
        self.bars_dir = Path(self.bars_dir)
        self.quarantine_dir = Path(self.quarantine_dir)
        self.bars = bars_layer(self.bars_dir)
        self.quarantine = quarantine_layer(self.quarantine_dir)

    @property
    def state_path(self) -> Path:
        return self.bars_dir / STATE_FILE

    @property
    def lock_path(self) -> Path:
        return self.bars_dir.parent / ".ingest.lock"

    @property
    def freshness_path(self) -> Path:
        return self.bars_dir.parent / FRESHNESS_FILE

    def bars_path(self, sid: SymbolId) -> Path:
        return self.bars.path(sid.filename)

    def quarantine_path(self, sid: SymbolId) -> Path:
        return self.quarantine.path(sid.filename)

    # -- reading ---------------------------------------------------------------------------

    def read_bars(self, sid: SymbolId) -> pd.DataFrame | None:
        return self.bars.read(sid.filename)

    def read_quarantine(self, sid: SymbolId) -> pd.DataFrame:
        q = self.quarantine.read(sid.filename)
        return empty_quarantine() if q is None else q

    def bar_files(self) -> dict[str, Path]:
        """Symbol id -> bar table, for every valid lakehouse table name in the folder."""
        return {str(SymbolId.from_filename(name)): self.bars.path(name) for name in self.bars.names()}

    def load_state(self, *, heal: bool = False) -> dict:
        """Bookkeeping verified against the tables on disk (see module docstring).

        Only ingest (`heal=True`, with its lock held) moves a corrupt symbol aside and drops
        it; every other reader gets its entry marked `corrupt` (the reason) and must not use it.
        """
        state = self._read_state_file()
        symbols = dict(state.get("symbols") or {})
        fresh = self._read_freshness()
        files = self.bar_files()
        for sym in list(symbols):
            # an entry without a file is a symbol checked and found empty; keep that record
            if sym not in files and symbols[sym].get("file") is not None:
                del symbols[sym]
        changed = bool(state.get("_rebuilt"))
        for sym in files:
            sid = SymbolId.parse(sym)
            entry = self._verified(sid, dict(symbols.get(sym) or {}), trust_disk=bool(state.get("_rebuilt")), heal=heal)
            if entry is None:
                symbols.pop(sym, None)
                changed = True
            else:
                symbols[sym] = entry
                changed |= bool(entry.get("reconciled"))
        for sym, entry in symbols.items():
            entry.update({k: v for k, v in (fresh.get(sym) or {}).items() if k in VOLATILE})
        # `changed`: the bookkeeping on disk no longer matches (ingest writes it back)
        return {"schema_version": SCHEMA_VERSION, "symbols": symbols, "changed": changed}

    def _verified(self, sid: SymbolId, entry: dict, *, trust_disk: bool = False, heal: bool = False) -> dict | None:
        """The entry of a staged symbol whose tables match it (or an interrupted commit of it);
        None after moving unexplained or unreadable tables to `.corrupt/`. With `trust_disk`
        (the bookkeeping was lost) readable tables that meet the contract are adopted."""
        name = sid.filename
        problems = []
        for layer, key in ((self.bars, "fragments"), (self.quarantine, "quarantine_fragments")):
            on_disk = layer.hashes(name) if not layer.is_legacy(name) else None
            if on_disk is None:  # an old-layout file: convert it (ingest), then trust its rows once
                if not heal:
                    problems.append(f"{layer.path(name)} is in the old layout (run `quantlake migrate` or `dvc repro`)")
                    continue
                layer.migrate_table(name)
                entry[key] = layer.hashes(name)
                entry["reconciled"] = True
                continue
            recorded = entry.get(key) or {}
            if on_disk == recorded:
                continue
            differing = {k for k in set(on_disk) | set(recorded) if on_disk.get(k) != recorded.get(k)}
            if trust_disk or layer.explains(name, recorded, on_disk):
                entry[key] = on_disk  # an interrupted commit: every difference was announced
                entry["reconciled"] = True
            else:
                problems.append(f"{layer.path(name)}: fragment(s) {sorted(differing)} differ from the bookkeeping")
        # Fragments whose hashes are the recorded ones hold the bytes a commit wrote: they are
        # not read again (that read cost every stage a decode of every table). Only adopted
        # fragments (an interrupted commit, lost bookkeeping) are read and checked.
        if not problems and entry.get("reconciled"):
            try:
                bars = self.bars.read(name)
                q = self.read_quarantine(sid)
            except LayerError as exc:
                problems.append(str(exc))
            else:
                found = validate_ohlcv(bars, file=str(self.bars_path(sid)), limit=1)
                if found:
                    problems.append(f"contract violation {found[0]}")
                entry.update(bars_summary(bars, self.max_gap_days))
                entry.update({"file": name, "sha256": table_digest(entry["fragments"]), "quarantined": int(len(q))})
                entry["quarantine_sha256"] = table_digest(entry["quarantine_fragments"]) if entry.get("quarantine_fragments") else None
        if problems and heal:
            self.set_aside(sid, "; ".join(problems))
            return None
        if problems:
            entry.update({"file": name, "corrupt": "staged table failed verification: " + "; ".join(problems)})
        return entry

    def set_aside(self, sid: SymbolId, reason: str, *, folder: str = CORRUPT_DIR, quiet: bool = False) -> None:
        """Move a symbol's staged tables to `folder` (`.corrupt/`; nothing is deleted) so ingest
        re-fetches it."""
        dest = self.bars_dir.parent / folder
        for layer in (self.bars, self.quarantine):
            path = layer.path(sid.filename)
            if path.exists():
                target = dest / layer.root.name / sid.filename
                n = 0
                while target.exists():
                    n += 1
                    target = dest / layer.root.name / f"{sid.filename}.{n}"
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        if not quiet:
            self.log(f"ingest: {sid}: staged data failed verification and was moved to {dest} ({reason}); it will be fetched again")

    def drop_other_sources(self, state: dict, source: str) -> list[str]:
        """Move aside every symbol staged from another `data.source` (so sources never mix);
        returns their ids. Their tables go to `.other-sources/{source}/`, with one message."""
        foreign = sorted(sym for sym, e in state["symbols"].items() if e.get("source") not in (None, source))
        for sym in foreign:
            entry = state["symbols"].pop(sym)
            if entry.get("file"):
                self.set_aside(SymbolId.parse(sym), "", folder=f"{OTHER_SOURCES_DIR}/{entry['source']}", quiet=True)
        if foreign:
            self.log(f"ingest: data.source is now {source!r}: {len(foreign)} symbol(s) staged from another source "
                     f"moved to {self.bars_dir.parent / OTHER_SOURCES_DIR} ({', '.join(foreign[:10])}{', ...' if len(foreign) > 10 else ''})")
        return foreign

    def _read_state_file(self) -> dict:
        if not self.state_path.exists():
            return {}
        try:
            state = read_json(self.state_path)
            if not isinstance(state, dict) or not isinstance(state.get("symbols", {}), dict):
                raise ValueError("not a bookkeeping document")
            return state
        except (OSError, ValueError) as exc:
            dest = self.bars_dir.parent / CORRUPT_DIR / STATE_FILE
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.state_path, dest)
            self.log(f"ingest: {self.state_path} is unreadable ({exc}); moved to {dest}, bookkeeping rebuilt from the staged tables")
            return {"_rebuilt": True}

    def _read_freshness(self) -> dict:
        try:
            doc = read_json(self.freshness_path) if self.freshness_path.exists() else {}
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}  # local wall-clock hints only: losing them costs a re-check, nothing else

    # -- writing ---------------------------------------------------------------------------

    def remove_temp_files(self) -> int:
        """Delete temp files a killed writer left behind (call with the lock held)."""
        return self.bars.remove_temp_files() + self.quarantine.remove_temp_files()

    def commit(self, sid: SymbolId, bars: pd.DataFrame, quarantine: pd.DataFrame, entry: dict, *, updated_at: str) -> dict:
        """Write a symbol's fragments (each only if its bytes changed); returns its new entry.

        `last_updated` becomes `updated_at` when the bars change. The caller records the entry
        in the bookkeeping (`write_state`, in batches: `load_state` adopts fragments announced
        by an intent record), so commits can run in worker processes.
        """
        name = sid.filename
        if bars.empty and quarantine.empty and not self.bars.exists(name):
            # nothing served in the window (e.g. delisted before data.start): record the check only
            entry = {**entry, **bars_summary(bars, self.max_gap_days), "file": None, "sha256": None, "fragments": {},
                     "quarantine_sha256": None, "quarantine_fragments": {}, "quarantined": 0}
            entry.pop("reconciled", None)
            return entry
        entry = dict(entry)
        qfrags = self.quarantine.write(name, quarantine_frame(quarantine), known=entry.get("quarantine_fragments"))
        frags = self.bars.write(name, bars, known=entry.get("fragments"))
        if frags != (entry.get("fragments") or {}):
            entry["last_updated"] = updated_at
        entry.update(bars_summary(bars, self.max_gap_days))
        entry.update({"file": name, "sha256": table_digest(frags), "fragments": frags,
                      "quarantine_sha256": table_digest(qfrags) if qfrags else None, "quarantine_fragments": qfrags,
                      "quarantined": int(len(quarantine))})
        entry.pop("reconciled", None)
        return entry

    def write_state(self, state: dict, *, settled: Iterable[str] | None = None) -> None:
        """The versioned bookkeeping (no wall clock), then the local freshness file, then the
        intent records of the `settled` symbols (default: all) are no longer needed; those of
        commits the bookkeeping does not hold yet stay."""
        symbols = sorted(state["symbols"].items())
        clean = {"schema_version": SCHEMA_VERSION, "symbols": {k: {f: v for f, v in e.items() if f not in ("reconciled", "corrupt") and f not in VOLATILE} for k, e in symbols}}
        atomic_write_json(self.state_path, clean)
        fresh = {k: {f: e[f] for f in VOLATILE if e.get(f)} for k, e in symbols}
        atomic_write_json(self.freshness_path, {k: v for k, v in fresh.items() if v})
        names = None if settled is None else [SymbolId.parse(sym).filename for sym in settled]
        self.bars.clear_intents(names)
        self.quarantine.clear_intents(names)


def utc_iso(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

