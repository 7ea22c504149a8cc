"""The gate: statuses for every injected defect, the Golden Copy's contents, refusal to publish."""

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from quantlake.contracts import SymbolId, date_to_ms, validate_catalog, validate_ohlcv
from quantlake.data.audit import AuditConfig, AuditFailure, quality_score, run_audit
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.repair import run_repair
from quantlake.data.staging import StagingStore, bars_layer
from quantlake.layer import table_digest, table_hashes
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
        "XVGUSDT": "degraded",  # contamination that cannot be isolated: a toxic tail, clean past kept
    }
    e = cat["symbols"]
    assert e["SIM:ATOMUSDT"]["gaps"] == [["2024-06-10", "2024-06-19"]]
    assert [g["status"] for g in e["SIM:ATOMUSDT"]["repairs"]] == ["unrepairable"]
    assert e["SIM:DOTUSDT"]["gaps"] == [] and e["SIM:DOTUSDT"]["repaired_days"] == 8
    assert e["SIM:DOTUSDT"]["repairs"][0]["status"] == "healed"
    assert e["SIM:ADAUSDT"]["quarantined"] == 4
    assert "cannot be isolated" in e["SIM:XVGUSDT"]["reasons"][0] and e["SIM:XVGUSDT"]["toxic_from"] == "2026-10-01"
    assert e["SIM:XVGUSDT"]["end_date"] == "2026-09-30" and e["SIM:BTCUSDT"]["toxic_from"] is None
    days = (AS_OF - dt.date(2020, 1, 1)).days + 1
    assert e["SIM:BTCUSDT"]["rows"] == days - 1  # the exchange-wide outage day
    assert e["SIM:BTCUSDT"]["data_quality_score"] == round((days - 1) / days, 6)
    assert 0 < e["SIM:XVGUSDT"]["data_quality_score"] < 1
    assert 0 < e["SIM:ATOMUSDT"]["data_quality_score"] < 1


def test_golden_copy_holds_certified_valid_files_and_no_toxic_bar(staged, tmp_path):
    lake, result = audit(staged, tmp_path)
    cert = read_json(lake / "certified.json")
    # XVG's contamination from 2026-10-01 cannot be isolated: its clean past is published, its tail never
    xvg = read_bars(lake / "SIM_XVGUSDT_1d.parquet")
    assert cert["symbols"]["SIM:XVGUSDT"]["status"] == "degraded"
    assert xvg["timestamp"].max() == date_to_ms(dt.date(2026, 9, 30)) and xvg["timestamp"].min() == date_to_ms(dt.date(2020, 1, 1))
    assert (xvg["close"] / xvg["close"].shift()).max() < 6.0  # no jump to the foreign (x1000) level
    assert len(cert["symbols"]) == len(SYMS)
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
    assert report["by_status"] == {"ok": 3, "stale": 2, "degraded": 7, "toxic": 0}
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
        run_audit(Layers(lake.parent), AuditConfig(as_of=AS_OF, processes=1))  # one process counts the calls
    assert tree(lake) == before
    assert not [p for p in lake.parent.iterdir() if p.name.startswith(".lakehouse")]


def test_a_problem_found_by_a_worker_process_stops_the_publication_too(staged, tmp_path, monkeypatch):
    lake, _ = audit(staged, tmp_path)
    before = tree(lake)
    import quantlake.data.audit as audit_mod

    real, parent = audit_mod.check_published, os.getpid()

    def in_a_worker(shared, item):  # the check of one symbol, in a pool process, finds a problem
        assert os.getpid() != parent
        return audit_mod.Published("SIM:LINKUSDT: certified file breaks the contract: boom") if item[0] == "SIM:LINKUSDT" else real(shared, item)

    monkeypatch.setattr(audit_mod, "check_published", in_a_worker)
    with pytest.raises(AuditFailure, match="SIM:LINKUSDT: certified file breaks the contract: boom"):
        run_audit(Layers(lake.parent), AuditConfig(as_of=AS_OF, processes=2))
    assert tree(lake) == before
    assert not [p for p in lake.parent.iterdir() if p.name.startswith(".lakehouse")]


def test_the_lakehouse_is_the_same_bytes_for_any_number_of_processes(staged, tmp_path):
    one, r1 = audit(staged, tmp_path / "one", processes=1)
    two, r2 = audit(staged, tmp_path / "two", processes=2)
    assert tree(one) == tree(two) and len(tree(one)) > 3 * len(SYMS)
    assert (r1.catalog, r1.certified, r1.report) == (r2.catalog, r2.certified, r2.report)
    assert (r1.linked, r1.written, r1.copied) == (r2.linked, r2.written, r2.copied) and r1.written > 0  # repairs rewrite some


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


def test_moving_as_of_back_publishes_that_day_s_version_and_keeps_staging(staged, tmp_path):
    early = AS_OF - dt.timedelta(days=31)
    moved = copy_layers(staged, tmp_path / "moved")
    staged_before = {p.name: table_hashes(p) for p in moved.staging_bars.glob("*.parquet")}
    result = run_audit(moved, AuditConfig(as_of=early))
    # a fresh Data Cycle run at that as_of, for comparison
    fresh = Layers(tmp_path / "fresh" / "data")
    sim = SimExchange(7)
    ingest_symbols([SymbolId.parse(f"SIM:{s}") for s in SYMS], sim, StagingStore(fresh.staging_bars, fresh.quarantine),
                   IngestConfig(as_of=early, start=dt.date(2020, 1, 1)), now=NOW, log=lambda m: None)
    run_repair(fresh, sim, {"as_of": early.isoformat(), "start": "2020-01-01", "max_gap_days": 5}, {}, log=lambda m: None)
    expected = run_audit(fresh, AuditConfig(as_of=early))

    assert not [s for s, e in result.catalog["symbols"].items() if any("after as_of" in r for r in e["reasons"])]
    assert set(result.certified["symbols"]) == set(expected.certified["symbols"])
    assert result.report["by_status"]["toxic"] == expected.report["by_status"]["toxic"]
    for sym, entry in expected.certified["symbols"].items():
        got = read_bars(moved.lakehouse / result.certified["symbols"][sym]["file"])
        assert got.equals(read_bars(fresh.lakehouse / entry["file"])), sym
        assert result.catalog["symbols"][sym]["end_date"] == expected.catalog["symbols"][sym]["end_date"] <= early.isoformat()
    # staging keeps the later bars for the next version
    assert {p.name: table_hashes(p) for p in moved.staging_bars.glob("*.parquet")} == staged_before
    assert run_audit(moved, AuditConfig(as_of=AS_OF)).certified == run_audit(copy_layers(staged, tmp_path / "again"), AuditConfig(as_of=AS_OF)).certified


@pytest.mark.parametrize("lag, stale", [(3, False), (4, True)])  # audit.stale_days 3: `lag > stale_days`
def test_the_stale_days_boundary(lag, stale):
    from quantlake.data.audit import classify

    end = AS_OF - dt.timedelta(days=lag)
    entry = {"rows": 100, "start_date": (end - dt.timedelta(days=99)).isoformat(), "end_date": end.isoformat(), "quarantined": 0, "gaps": []}
    status, reasons = classify(entry, [], AuditConfig(as_of=AS_OF, stale_days=3))
    assert status == ("stale" if stale else "ok"), reasons


def test_a_toxic_tail_makes_a_symbol_degraded_not_toxic_nor_stale():
    from quantlake.data.audit import classify

    cfg = AuditConfig(as_of=AS_OF)
    entry = {"rows": 100, "start_date": "2026-06-23", "end_date": "2026-09-30", "quarantined": 0, "gaps": []}
    assert classify(entry, [], cfg)[0] == "stale"  # no toxic tail: the series just stopped
    status, reasons = classify({**entry, "toxic_from": "2026-10-01"}, [], cfg)
    assert status == "degraded" and "from 2026-10-01 cannot be isolated" in reasons[0]
    fresh = {**entry, "end_date": "2026-11-19", "rows": 150, "start_date": "2026-06-23"}
    assert classify({**fresh, "toxic_from": "2026-11-20"}, [], cfg)[0] == "degraded"
    assert classify({**fresh, "toxic_from": None}, [], cfg)[0] == "ok"


def test_the_gate_publishes_the_point_in_time_universe(staged, tmp_path):
    from quantlake.data.discovery import discover, scanner_files, scanner_from_file
    from quantlake.data.universe import UniverseSpec, membership_matrix, read_universe

    root = Path(__file__).resolve().parents[1]
    scanners = [scanner_from_file(p) for p in scanner_files(root / "configs" / "scanners")]
    doc = discover(scanners, SimExchange(7).list_markets(AS_OF), as_of=AS_OF, source="sim")
    doc["candidates"] = [c for c in doc["candidates"] if c["symbol"].split(":")[1] in SYMS]
    spec = UniverseSpec.from_candidates(json.loads(json.dumps(doc)))
    layers = copy_layers(staged, tmp_path / "a")
    result = run_audit(layers, AuditConfig(as_of=AS_OF), universe=spec)
    path = layers.lakehouse / "universe.parquet"
    universe = read_universe(path)
    assert result.report["universe"]["file"] == "universe.parquet" and universe.attrs["as_of"] == AS_OF.isoformat()
    days = pd.DatetimeIndex(["2022-05-01", "2022-05-20", "2026-09-30", "2026-10-03", "2026-11-20"])
    syms = [f"SIM:{s}" for s in SYMS]
    liquid = membership_matrix(universe, days, syms, ["usdt_liquid"])
    inactive = membership_matrix(universe, days, syms, ["usdt_inactive"])
    assert liquid["SIM:LUNAUSDT"].tolist() == [True, False, False, False, False]  # last bar 2022-05-12
    assert inactive["SIM:LUNAUSDT"].tolist() == [False, True, True, True, True]
    # XVG's toxic tail from 2026-10-01: a member on its clean past, halted once its bars stop
    assert liquid["SIM:XVGUSDT"].tolist() == [True, True, True, False, False]
    assert not (liquid & inactive).any().any()
    again = copy_layers(staged, tmp_path / "b")
    run_audit(again, AuditConfig(as_of=AS_OF), universe=spec)
    assert (again.lakehouse / "universe.parquet").read_bytes() == path.read_bytes()
