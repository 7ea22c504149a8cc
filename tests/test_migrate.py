"""`quantlake migrate`: a repository in the first layout (one file per table) converts to
fragmented tables holding exactly the same rows."""

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quantlake.alpha.snapshot import take_snapshot
from quantlake.cli import main
from quantlake.data.audit import AuditConfig, run_audit
from quantlake.data.discovery import ScannerConfig
from quantlake.data.features import LONG_FILE
from quantlake.data.staging import StagingStore
from quantlake.data.universe import UniverseSpec, read_universe
from quantlake.lakehouse import Layers
from quantlake.layer import table_digest, table_hashes
from quantlake.storage import atomic_write_bytes, atomic_write_json, read_json, sha256_file, table_to_parquet_bytes

AS_OF = dt.date(2026, 11, 20)


def _flatten(table: Path) -> str:
    """Replace a fragment directory by the single file of the first layout; returns its sha256."""
    data = table_to_parquet_bytes(pq.read_table(table))
    shutil.rmtree(table)
    atomic_write_bytes(table, data)
    return sha256_file(table)


def to_first_layout(root: Path) -> None:
    """Rewrite a data/ folder the way the first layout stored it (what users' repositories hold)."""
    layers = Layers(root)
    for folder in (layers.staging_bars, layers.quarantine, layers.repairs, layers.repairs / "quarantine", layers.lakehouse):
        for table in sorted(folder.glob("*_1d.parquet")):
            _flatten(table)
    state = read_json(layers.staging_bars / "_ingest_state.json")
    for sym, e in state["symbols"].items():
        if e.get("file"):
            e["sha256"] = sha256_file(layers.staging_bars / e["file"])
            q = layers.quarantine / e["file"]
            e["quarantine_sha256"] = sha256_file(q) if q.exists() else None
        e.pop("fragments", None), e.pop("quarantine_fragments", None)
        e["last_checked"] = "2026-11-26T12:00:00Z"  # the first layout versioned the wall clock
    atomic_write_json(layers.staging_bars / "_ingest_state.json", state)
    # features: one file per symbol in staging, one long file in the lakehouse
    long = pq.read_table(layers.features / LONG_FILE).to_pandas()
    shutil.rmtree(layers.features / LONG_FILE)
    for sym, rows in long.groupby("symbol"):
        name = sym.replace(":", "_") + "_1d.parquet"
        atomic_write_bytes(layers.features / name, table_to_parquet_bytes(pa.Table.from_pandas(rows.drop(columns="symbol"), preserve_index=False)))
    atomic_write_json(layers.features / "_features_state.json", {"schema_version": 1, "symbols": {s: {"bars_sha256": "x"} for s in long["symbol"].unique()}})
    _flatten(layers.lakehouse / "features" / LONG_FILE)
    for name in ("catalog.json", "certified.json"):
        doc = read_json(layers.lakehouse / name)
        for e in doc["symbols"].values():
            e.pop("fragments", None)
            if e.get("file"):
                e["sha256"] = sha256_file(layers.lakehouse / e["file"])
        atomic_write_json(layers.lakehouse / name, doc)


def tables(lake: Path) -> dict:
    out = {p.name: pd.read_parquet(p) for p in sorted(lake.glob("*_1d.parquet"))}
    # the long table reads month by month: compare it in one order
    out[LONG_FILE] = pd.read_parquet(lake / "features" / LONG_FILE).sort_values(["symbol", "timestamp"], ignore_index=True)
    return out


def test_migrate_converts_the_first_layout_keeping_exactly_the_same_rows(sim_lakehouse, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sim_lakehouse, root)
    to_first_layout(root)
    lake = root / "lakehouse"
    assert (lake / "SIM_BTCUSDT_1d.parquet").is_file() and (lake / "features" / LONG_FILE).is_file()
    before = tables(lake)

    assert main(["migrate", "--root", str(root)]) == 0
    after = tables(lake)
    assert before.keys() == after.keys() and len(before) > 10
    for name, frame in before.items():
        assert (lake / name).is_dir() or (lake / "features" / name).is_dir(), name
        pd.testing.assert_frame_equal(after[name], frame, check_exact=True)  # same rows, columns, dtypes
    certified = read_json(lake / "certified.json")["symbols"]
    for entry in certified.values():
        assert entry["fragments"] == table_hashes(lake / entry["file"]) and entry["sha256"] == table_digest(entry["fragments"])
    # staging verifies cleanly (nothing marked corrupt), the wall clock left the versioned bookkeeping
    state = StagingStore(root / "staging/bars", root / "staging/quarantine").load_state()["symbols"]
    assert state and not [s for s, e in state.items() if e.get("corrupt")]
    assert "last_checked" not in (root / "staging/bars/_ingest_state.json").read_text()
    assert [p.name for p in (root / "staging/features").glob("*_1d.parquet")] == [LONG_FILE]  # per-symbol feature files are gone
    # the Alpha Cycle reads the migrated lakehouse, and the gate publishes the very same bytes from migrated staging
    assert take_snapshot(lake, tmp_path / "snap", AS_OF).symbols == sorted(certified)
    migrated = {str(p.relative_to(lake)): sha256_file(p) for p in lake.rglob("*.parquet") if p.is_file()}
    published = read_universe(lake / "universe.parquet")  # the gate publishes the universe again from the same scanners
    run_audit(Layers(root), AuditConfig(as_of=AS_OF), universe=UniverseSpec(tuple(ScannerConfig(**c) for c in published.attrs["scanners"])))
    assert {str(p.relative_to(lake)): sha256_file(p) for p in lake.rglob("*.parquet") if p.is_file()} == migrated
    # a second run has nothing left to convert
    from quantlake.data.migrate import migrate_repository

    assert "nothing to convert" in migrate_repository(Layers(root), log=lambda m: None).line()
