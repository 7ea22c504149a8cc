"""The gate: statuses for every injected defect, the Golden Copy's contents, refusal to publish."""

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from quantlake.contracts import SymbolId, validate_catalog, validate_ohlcv
from quantlake.data.audit import AuditConfig, AuditFailure, quality_score, run_audit
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.repair import run_repair
from quantlake.data.staging import StagingStore, bars_layer
from quantlake.layer import table_digest
from quantlake.lakehouse import Layers, recover_swap
from quantlake.sources.sim import SimExchange
from quantlake.storage import read_ohlcv as read_bars, read_json, sha256_file

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
AS_OF = dt.date(2026, 11, 20)
SYMS = ["BTCUSDT", "ADAUSDT", "XVGUSDT", "LINKUSDT", "FTTUSDT", "EOSUSDT", "XEMUSDT", "DOTUSDT", "ATOMUSDT", "WAVESUSDT", "LUNAUSDT", "DOGEUSDT"]


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """Ingested and repaired staging layers (never modified: tests audit copies)."""
    layers = Layers(tmp_path_factory.mktemp("stage") / "data")
    store = StagingStore(layers.staging_bars, layers.quarantine)
    sim = SimExchange(7)
    ingest_symbols(
        [SymbolId.parse(f"SIM:{s}") for s in SYMS],
        sim,
        store,
        IngestConfig(as_of=AS_OF, start=dt.date(2020, 1, 1)),
        now=NOW,
        log=lambda m: None,
    )
    run_repair(layers, sim, {"as_of": AS_OF.isoformat(), "start": "2020-01-01", "max_gap_days": 5}, {}, log=lambda m: None)
    return layers


def copy_layers(layers: Layers, dst: Path) -> Layers:
    shutil.copytree(layers.root / "staging", dst / "data" / "staging", copy_function=os.link)
    return Layers(dst / "data")


def audit(staged, tmp_path, **kw):
    layers = copy_layers(staged, tmp_path)
    result = run_audit(layers, AuditConfig(as_of=AS_OF, **kw), candidates=[f"SIM:{s}" for s in SYMS] + ["SIM:GONEUSDT"])
    return layers.lakehouse, result


def test_every_injected_defect_gets_its_status(staged, tmp_path):
    lake, _ = audit(staged, tmp_path)
    cat = read_json(lake / "catalog.json")
    assert validate_catalog(cat) == []
    status = {s.split(":")[1]: e["status"] for s, e in cat["symbols"].items()}
    assert status == {
        "BTCUSDT": "ok",
        "DOGEUSDT": "ok",  # +392% genuine move kept, no defect
        "ADAUSDT": "degraded",  # isolated contamination quarantined
        "LINKUSDT": "degraded",  # bad low print
        "FTTUSDT": "degraded",  # bad high print
        "EOSUSDT": "degraded",  # broken OHLC order
        "XEMUSDT": "degraded",  # zero-volume stall (and the gap it leaves)
        "DOTUSDT": "ok",  # gap > 5 days, healed by repair
        "ATOMUSDT": "degraded",  # permanent gap
        "WAVESUSDT": "stale",  # halted
        "LUNAUSDT": "stale",  # delisted
        "XVGUSDT": "toxic",  # contamination that cannot be isolated
    }
    e = cat["symbols"]
    assert e["SIM:ATOMUSDT"]["gaps"] == [["2024-06-10", "2024-06-19"]]
    assert [g["status"] for g in e["SIM:ATOMUSDT"]["repairs"]] == ["unrepairable"]
    assert e["SIM:DOTUSDT"]["gaps"] == [] and e["SIM:DOTUSDT"]["repaired_days"] == 8
    assert e["SIM:DOTUSDT"]["repairs"][0]["status"] == "healed"
    assert e["SIM:ADAUSDT"]["quarantined"] == 4
    assert "cannot be isolated" in e["SIM:XVGUSDT"]["reasons"][0]
    days = (AS_OF - dt.date(2020, 1, 1)).days + 1
    assert e["SIM:BTCUSDT"]["rows"] == days - 1  # the exchange-wide outage day
    assert e["SIM:BTCUSDT"]["data_quality_score"] == round((days - 1) / days, 6)
    assert e["SIM:XVGUSDT"]["data_quality_score"] == 0.0
    assert 0 < e["SIM:ATOMUSDT"]["data_quality_score"] < 1


def test_golden_copy_holds_certified_valid_files_and_no_toxic_one(staged, tmp_path):
    lake, result = audit(staged, tmp_path)
    cert = read_json(lake / "certified.json")
    assert "SIM:XVGUSDT" not in cert["symbols"] and not (lake / "SIM_XVGUSDT_1d.parquet").exists()
    assert len(cert["symbols"]) == len(SYMS) - 1
    fragments = 0
    for sym, entry in cert["symbols"].items():
        path = lake / entry["file"]
        assert {p.stem: sha256_file(p) for p in path.glob("*.parquet")} == entry["fragments"]
        assert table_digest(entry["fragments"]) == entry["sha256"]
        assert validate_ohlcv(read_bars(path), as_of=AS_OF) == []
        staged_file = lake.parent / "staging" / "bars" / entry["file"]
        fragments += len(entry["fragments"])
        for key in entry["fragments"]:
            linked = (path / f"{key}.parquet").stat().st_ino == (staged_file / f"{key}.parquet").stat().st_ino
            # DOT's closed years hold its 2025 repairs: written; every other fragment is linked
            assert linked == (sym != "SIM:DOTUSDT" or "-Q" in key), (sym, key)
            assert not (path / f"{key}.parquet").stat().st_mode & 0o222  # published read-only
        if sym == "SIM:DOTUSDT":
            assert len(read_bars(path)) == len(read_bars(staged_file)) + 8
    report = read_json(lake / "audit.json")
    assert report["by_status"] == {"ok": 3, "stale": 2, "degraded": 6, "toxic": 1}
    assert report["missing_candidates"] == ["SIM:GONEUSDT"]
    assert report["repairs"]["healed"] == 1 and report["repairs"]["unrepairable"] >= 1 and report["repaired_days"] == 8
    assert [(o["from"], o["to"]) for o in report["outages"]] == [("2024-11-11", "2024-11-11")]
    assert result.linked == fragments - 1 and result.written == 1 and result.copied == 0
    assert sorted(p.name for p in lake.iterdir() if not p.name.endswith(".parquet")) == ["audit.json", "catalog.json", "certified.json"]
    assert not [p for p in lake.parent.iterdir() if p.name.startswith(".lakehouse")]


def test_audit_is_deterministic(staged, tmp_path):
    a, _ = audit(staged, tmp_path / "a")
    b, _ = audit(staged, tmp_path / "b")
    for name in ("catalog.json", "certified.json", "audit.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_a_file_breaking_the_contract_is_never_certified(staged, tmp_path):
    layers = copy_layers(staged, tmp_path)
    bad = read_bars(layers.staging_bars / "SIM_DOGEUSDT_1d.parquet")
    bad.loc[5, "low"] = bad.loc[5, "high"] * 2  # broken order, committed as an interrupted commit would
    bars_layer(layers.staging_bars).write("SIM_DOGEUSDT_1d.parquet", bad)
    lake = layers.lakehouse
    run_audit(layers, AuditConfig(as_of=AS_OF))
    cat = read_json(lake / "catalog.json")["symbols"]
    assert cat["SIM:DOGEUSDT"]["status"] == "toxic"
    assert "contract violation" in cat["SIM:DOGEUSDT"]["reasons"][0] and "row 5" in cat["SIM:DOGEUSDT"]["reasons"][0]
    assert "SIM:DOGEUSDT" not in read_json(lake / "certified.json")["symbols"]


def tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_failed_publication_keeps_the_previous_lakehouse(staged, tmp_path, monkeypatch):
    lake, _ = audit(staged, tmp_path)
    before = tree(lake)
    import quantlake.data.audit as audit_mod

    real = audit_mod.validate_ohlcv
    calls = {"n": 0}

    def flaky(df, **kw):  # the post-build check finds a problem the pre-check missed
        calls["n"] += 1
        return real(df, **kw) if calls["n"] <= len(SYMS) else ["boom"]

    monkeypatch.setattr(audit_mod, "validate_ohlcv", flaky)
    with pytest.raises(AuditFailure, match="certified file breaks the contract"):
        run_audit(Layers(lake.parent), AuditConfig(as_of=AS_OF))
    assert tree(lake) == before
    assert not [p for p in lake.parent.iterdir() if p.name.startswith(".lakehouse")]


def test_a_crash_between_the_two_renames_is_recovered(tmp_path):
    lake = tmp_path / "lakehouse"
    old = tmp_path / ".lakehouse.old"
    old.mkdir()
    (old / "catalog.json").write_text("{}")
    assert recover_swap(lake) and (lake / "catalog.json").exists() and not old.exists()


def test_quality_score_formula():
    assert quality_score(10, "2024-01-01", "2024-01-10", 0) == 1.0
    assert quality_score(8, "2024-01-01", "2024-01-10", 0) == 0.8
    assert quality_score(10, "2024-01-01", "2024-01-10", 10) == 0.5
    assert quality_score(0, None, None, 0) == 0.0


def test_drift_on_a_head_extension_is_flagged_and_the_stored_bar_kept(tmp_path):
    """A day stored first and served again later with other values: kept as stored, flagged."""
    from conftest import RecordingSource

    layers = Layers(tmp_path / "data")
    store = StagingStore(layers.staging_bars, layers.quarantine)
    sid = SymbolId.parse("SIM:SOLUSDT")
    drift_day = dt.date(2024, 3, 5)

    def rewrite(sym, bars):  # the source now serves a different close for an already stored day
        bars = bars.copy()
        bars.loc[bars["timestamp"] == pd.Timestamp(drift_day).value // 1_000_000, ["close", "high"]] *= 1.01
        return bars

    sim = SimExchange(7)
    ingest_symbols([sid], sim, store, IngestConfig(as_of=AS_OF, start=dt.date(2024, 3, 1)), now=NOW, log=lambda m: None)
    stored = read_bars(layers.staging_bars / sid.filename)
    # data.start moves earlier; the head window is asked with an overlap that includes the drift day
    src = RecordingSource(sim, rewrite=rewrite)
    src_fetch = src.fetch_bars
    src.fetch_bars = lambda s, a, b: src_fetch(s, a, max(b, drift_day))
    ingest_symbols([sid], src, store, IngestConfig(as_of=AS_OF, start=dt.date(2024, 1, 1)), now=NOW, log=lambda m: None)
    after = read_bars(layers.staging_bars / sid.filename).set_index("timestamp")
    day_ms = pd.Timestamp(drift_day).value // 1_000_000
    assert after.loc[day_ms, "close"] == stored.set_index("timestamp").loc[day_ms, "close"]  # never overwritten
    run_audit(layers, AuditConfig(as_of=AS_OF))
    entry = read_json(layers.lakehouse / "catalog.json")["symbols"]["SIM:SOLUSDT"]
    assert entry["drift"] == ["2024-03-05"] and entry["status"] == "degraded"
