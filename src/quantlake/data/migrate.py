"""`quantlake migrate`: convert a repository from the first layout (one Parquet file per table)
to fragmented tables (`quantlake.layer`), keeping exactly the same rows.

The next `dvc repro` converts the staging layers as well (the stages' code changed, so they
run, and each layer converts old-layout tables on its first write); this command does it in
one step, including the published lakehouse (so the Alpha Cycle can read it before the next
audit). It is idempotent: a second run, or a run after a crash, finishes what is left.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..contracts import SymbolId
from ..layer import table_digest
from ..lakehouse import CATALOG, CERTIFIED, Layers
from ..storage import atomic_write_json, file_lock, make_read_only, read_json
from .features import features_layer, run_features
from .repair import RepairLayer
from .staging import StagingStore, bars_layer


@dataclass
class MigrationSummary:
    converted: dict[str, int] = field(default_factory=dict)  # layer -> tables converted

    def line(self) -> str:
        done = ", ".join(f"{k} {v}" for k, v in self.converted.items() if v)
        return f"migrate: {done or 'nothing to convert (already in the fragmented layout)'}"


def migrate_repository(layers: Layers, *, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> MigrationSummary:
    summary = MigrationSummary()
    store = StagingStore(layers.staging_bars, layers.quarantine, log=log)
    with file_lock(store.lock_path, what="`quantlake ingest`", on_wait=log):
        legacy = sum(store.bars.is_legacy(n) for n in store.bars.names())
        legacy_q = sum(store.quarantine.is_legacy(n) for n in store.quarantine.names())
        if legacy or legacy_q or store.state_path.exists():
            state = store.load_state(heal=True)  # converts each old-layout table it verifies
            store.write_state(state)
        summary.converted["staging bars"], summary.converted["staging quarantine"] = legacy, legacy_q
    repairs = RepairLayer(layers.repairs)
    with file_lock(repairs.lock_path, what="`quantlake repair`", on_wait=log):
        summary.converted["repairs"] = len(repairs.bars.migrate()) + len(repairs.quarantine.migrate())
        if repairs.log_path.exists():
            doc = repairs.load_log()
            for sym, entry in (doc.get("symbols") or {}).items():
                frags = repairs.bars.hashes(SymbolId.parse(sym).filename)
                entry.update({"file": SymbolId.parse(sym).filename if frags else None, "sha256": table_digest(frags) if frags else None, "fragments": frags})
            repairs.write_log(doc)
    summary.converted["features"] = _migrate_features(layers, store)
    summary.converted["lakehouse"] = migrate_lakehouse(layers.lakehouse)
    return summary


def _migrate_features(layers: Layers, store: StagingStore) -> int:
    """The first layout kept one feature file per symbol: rebuild the long table from the bars."""
    folder = layers.features
    old = sorted(p for p in folder.glob("*_1d.parquet") if p.is_file()) if folder.exists() else []
    state = folder / "_features_state.json"
    if not old and (not state.exists() or "fragments" in read_json(state)):
        return 0
    symbols = [SymbolId.parse(s) for s, e in store.load_state()["symbols"].items() if not e.get("toxic_reason") and not e.get("corrupt") and e.get("rows")]
    run_features(symbols, layers)
    return len(old)


def migrate_lakehouse(lakehouse: Path) -> int:
    """Convert the published tables in place and give catalog/certified their fragment hashes."""
    lakehouse = Path(lakehouse)
    if not (lakehouse / CATALOG).exists():
        return 0
    bars = bars_layer(lakehouse)
    # only the catalog's bar tables: other published files (universe.parquet) keep their own format
    tables = sorted({e["file"] for e in (read_json(lakehouse / CATALOG).get("symbols") or {}).values() if e.get("file")})
    converted = [name for name in tables if bars.migrate_table(name)]
    feats = features_layer(lakehouse / "features")
    converted += feats.migrate()
    for name in (CATALOG, CERTIFIED):
        doc = read_json(lakehouse / name)
        for entry in (doc.get("symbols") or {}).values():
            if entry.get("file"):
                frags = bars.hashes(entry["file"])
                entry.update({"fragments": frags, "sha256": table_digest(frags)})
            else:
                entry.setdefault("fragments", None)
            for volatile in ("last_checked", "last_updated"):
                entry.pop(volatile, None)
        atomic_write_json(lakehouse / name, doc)
    for path in lakehouse.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            make_read_only(path)
    return len(converted)
