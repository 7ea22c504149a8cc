"""Gap repair on the sim: exact windows, retry policy, bounds, outages, merge and drift."""

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantlake.contracts import DAY_MS, ContractError, SymbolId, date_to_ms, find_gaps, validate_ohlcv
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.outages import detect_outages, detect_outages_from_timestamps, listed_range, missing_days
from quantlake.data.repair import RepairConfig, RepairLayer, load_repair_log, run_repair
from quantlake.lakehouse import drift_rows, merged_bars, read_bars
from quantlake.data.staging import StagingStore
from quantlake.lakehouse import Layers
from quantlake.sources.base import SourceError
from conftest import RecordingSource as Recording

from quantlake.sources.sim import SimExchange
from quantlake.data.staging import bars_layer
from quantlake.storage import read_ohlcv as read_bar_file

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
AS_OF = "2026-11-20"
SYMS = ("SIM:ATOMUSDT", "SIM:BTCUSDT", "SIM:DOTUSDT", "SIM:ETHUSDT")
DOT, ATOM, BTC = (SymbolId.parse(s) for s in ("SIM:DOTUSDT", "SIM:ATOMUSDT", "SIM:BTCUSDT"))
D = dt.date


class Clock:
    """A fake monotonic clock that advances `step` seconds on every reading."""

    def __init__(self, step):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


@pytest.fixture(scope="module")
def sim():
    return SimExchange(seed=7)


@pytest.fixture(scope="module")
def staged(tmp_path_factory, sim):
    root = tmp_path_factory.mktemp("staged")
    layers = Layers(root)
    ingest_symbols(
        [SymbolId.parse(s) for s in SYMS],
        sim,
        StagingStore(layers.staging_bars, layers.quarantine),
        IngestConfig(as_of=D(2026, 11, 20), start=D(2024, 1, 1)),
        now=NOW,
        log=lambda m: None,
    )
    return root


@pytest.fixture
def layers(staged, tmp_path):
    shutil.copytree(staged / "staging", tmp_path / "staging")
    return Layers(tmp_path)


def data(**kw):
    return {"as_of": AS_OF, "max_gap_days": 5, "workers": 2, **kw}


def repair(layers, source, *, repair_params=None, **kw):
    return run_repair(layers, source, data(**{k: v for k, v in kw.items() if k != "clock"}), repair_params or {},
                      now_monotonic=kw.get("clock", Clock(0.0)), log=lambda m: None)


def gap_record(layers, sym, first):
    recs = load_repair_log(layers.repairs)["symbols"][sym]["gaps"]
    return next(r for r in recs if r["from"] == first)


def days(ms):
    return [(D(1970, 1, 1) + dt.timedelta(days=int(t) // DAY_MS)).isoformat() for t in ms]


def snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")}


# --------------------------------------------------------------------------- the sim's gaps


def test_the_healable_gap_is_healed_by_fetching_exactly_its_window(layers, sim):
    assert find_gaps(read_bar_file(layers.staging_bars / DOT.filename)["timestamp"].to_numpy(), 5) == [["2025-03-01", "2025-03-08"]]
    src = Recording(sim)
    summary = repair(layers, src)
    assert sorted(src.calls) == [("SIM:ATOMUSDT", D(2024, 6, 10), D(2024, 6, 19)), ("SIM:DOTUSDT", D(2025, 3, 1), D(2025, 3, 8))]
    assert (summary.healed, summary.unrepairable, summary.windows, summary.source_calls) == (1, 1, 2, 2)

    healed = RepairLayer(layers.repairs).read_bars(DOT)
    assert days(healed["timestamp"]) == [f"2025-03-0{i}" for i in range(1, 9)]
    served = sim.fetch_bars(DOT, D(2025, 3, 1), D(2025, 3, 8))
    pd.testing.assert_frame_equal(healed, served)
    rec = gap_record(layers, "SIM:DOTUSDT", "2025-03-01")
    assert rec | {} == {"from": "2025-03-01", "to": "2025-03-08", "status": "healed", "filled_days": 8, "missing_days": 0,
                        "outage_days": 0, "attempts": 1, "last_tried": AS_OF, "last_error": None}


def test_the_permanent_gap_is_unrepairable_and_retried_only_after_retry_after_days(layers, sim):
    repair(layers, sim)
    rec = gap_record(layers, "SIM:ATOMUSDT", "2024-06-10")
    assert (rec["status"], rec["last_tried"], rec["attempts"], rec["missing_days"]) == ("unrepairable", AS_OF, 1, 10)
    assert not RepairLayer(layers.repairs).bars_path(ATOM).exists()

    before = snapshot(layers.repairs)
    src = Recording(sim)
    again = repair(layers, src)
    assert src.calls == [] and again.skipped_recent == 1 and again.already_healed == 1
    assert snapshot(layers.repairs) == before  # not a byte, not an mtime changed

    src = Recording(sim)
    repair(layers, src, as_of="2026-11-26")  # 6 days later: still waiting
    assert src.calls == []

    src = Recording(sim)
    later = repair(layers, src, as_of="2026-11-28")  # 8 days later: tried again, the healed gap is not
    assert src.calls == [("SIM:ATOMUSDT", D(2024, 6, 10), D(2024, 6, 19))]
    assert later.unrepairable == 1
    rec = gap_record(layers, "SIM:ATOMUSDT", "2024-06-10")
    assert (rec["status"], rec["last_tried"], rec["attempts"]) == ("unrepairable", "2026-11-28", 2)


def test_max_fills_bounds_the_windows_of_a_run_and_the_rest_waits(layers, sim):
    src = Recording(sim)
    first = repair(layers, src, repair_params={"max_fills": 1})
    assert src.calls == [("SIM:ATOMUSDT", D(2024, 6, 10), D(2024, 6, 19))]  # never-tried gaps in symbol order
    assert (first.windows, first.deferred) == (1, 1)
    assert gap_record(layers, "SIM:DOTUSDT", "2025-03-01")["status"] == "pending"

    src = Recording(sim)
    second = repair(layers, src, repair_params={"max_fills": 1})
    assert src.calls == [("SIM:DOTUSDT", D(2025, 3, 1), D(2025, 3, 8))]
    assert second.healed == 1 and second.skipped_recent == 1


def punch_holes(layers, sid, holes):
    """Remove whole windows of days from a staged file (as if a source had lost them)."""
    path = layers.staging_bars / sid.filename
    bars = read_bar_file(path)
    keep = np.ones(len(bars), dtype=bool)
    for a, b in holes:
        keep &= ~((bars["timestamp"] >= date_to_ms(a)) & (bars["timestamp"] <= date_to_ms(b)))
    bars_layer(path.parent).write(path.name, bars[keep])  # through the layer, as ingest would
    return bars


def test_a_symbol_over_its_time_budget_stops_and_its_other_gaps_wait(layers, sim):
    holes = [(D(2025, 1, 10), D(2025, 1, 16)), (D(2025, 4, 10), D(2025, 4, 16)), (D(2025, 7, 10), D(2025, 7, 16))]
    original = punch_holes(layers, BTC, holes)
    src = Recording(sim)
    # every clock reading is 10 s later: after two windows a symbol has spent 20 s >= 15 s
    summary = repair(layers, src, workers=1, clock=Clock(10.0), repair_params={"symbol_budget_s": 15})
    btc = [c for c in src.calls if c[0] == "SIM:BTCUSDT"]
    assert btc == [("SIM:BTCUSDT", a, b) for a, b in holes[:2]]
    assert summary.deferred == 1
    assert [gap_record(layers, "SIM:BTCUSDT", a.isoformat())["status"] for a, _ in holes] == ["healed", "healed", "pending"]
    assert gap_record(layers, "SIM:DOTUSDT", "2025-03-01")["status"] == "healed"  # other symbols have their own budget

    src = Recording(sim)
    repair(layers, src, workers=1, clock=Clock(10.0), repair_params={"symbol_budget_s": 15})
    assert src.calls == [("SIM:BTCUSDT", *holes[2])]
    pd.testing.assert_frame_equal(read_bars(layers, BTC), original)


def test_the_exchange_wide_day_is_one_outage_and_never_a_per_symbol_repair(layers, sim):
    src = Recording(sim)
    summary = repair(layers, src, max_gap_days=0)  # every missing day is now a gap
    assert summary.outages == 1
    assert load_repair_log(layers.repairs)["outages"] == [{"exchange": "SIM", "from": "2024-11-11", "to": "2024-11-11", "days": 1, "symbols": 4}]
    outage_ms = date_to_ms(D(2024, 11, 11))
    assert not any(date_to_ms(a) <= outage_ms <= date_to_ms(b) for _, a, b in src.calls)
    for sym in SYMS:
        rec = gap_record(layers, sym, "2024-11-11")
        assert (rec["status"], rec["outage_days"], rec["attempts"]) == ("outage", 1, 0)


def test_merged_bars_are_staging_plus_healed_bars_and_meet_the_contract(layers, sim):
    staging = read_bar_file(layers.staging_bars / DOT.filename)
    repair(layers, sim)
    merged = read_bars(layers, DOT)
    healed = RepairLayer(layers.repairs).read_bars(DOT)
    assert len(merged) == len(staging) + len(healed) == len(staging) + 8
    assert validate_ohlcv(merged, as_of=D(2026, 11, 20)) == []
    assert find_gaps(merged["timestamp"].to_numpy(), 5) == []
    assert set(merged["timestamp"]) == set(staging["timestamp"]) | set(healed["timestamp"])
    # a symbol with nothing repaired reads as its staged file
    pd.testing.assert_frame_equal(read_bars(layers, BTC), read_bar_file(layers.staging_bars / BTC.filename))
    with pytest.raises(ContractError, match="SIM:SOLUSDT"):
        read_bars(layers, SymbolId.parse("SIM:SOLUSDT"))


def test_merge_keeps_the_staging_bar_and_reports_drift():
    ts = np.arange(4, dtype="int64") * DAY_MS + date_to_ms(D(2025, 1, 1))
    staging = pd.DataFrame({"timestamp": ts[[0, 1, 3]], "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0})
    repairs = pd.DataFrame({"timestamp": ts[[1, 2]], "open": [1.0, 1.0], "high": [2.0, 2.0], "low": [0.5, 0.5], "close": [1.7, 1.6], "volume": [10.0, 9.0]})
    merged = merged_bars(staging, repairs)
    assert merged["timestamp"].tolist() == ts.tolist()
    assert merged["close"].tolist() == [1.5, 1.5, 1.6, 1.5]  # day 1: staging wins
    drift = drift_rows(staging, repairs)
    assert drift["timestamp"].tolist() == [ts[1]]
    assert (drift["close_staging"].iat[0], drift["close_repair"].iat[0]) == (1.5, 1.7)
    same = repairs.assign(close=[1.5, 1.6])
    assert drift_rows(staging, same).empty and merged_bars(staging, None).equals(staging)


def test_staging_disagreeing_with_a_repaired_bar_is_drift_and_staging_is_kept(layers, sim):
    repair(layers, sim)
    path = layers.staging_bars / DOT.filename
    staging = read_bar_file(path)
    healed = RepairLayer(layers.repairs).read_bars(DOT)
    day = healed[healed["timestamp"] == date_to_ms(D(2025, 3, 3))]
    changed = day.assign(close=day["close"] * 1.01, high=day[["high", "close"]].max(axis=1) * 1.01)
    bars_layer(path.parent).write(path.name, pd.concat([staging, changed]).sort_values("timestamp"))  # as if ingest had re-fetched the day

    merged = read_bars(layers, DOT)
    assert merged.loc[merged["timestamp"] == changed["timestamp"].iat[0], "close"].iat[0] == changed["close"].iat[0]
    summary = repair(layers, Recording(sim))
    assert summary.drift == 1
    entry = load_repair_log(layers.repairs)["symbols"]["SIM:DOTUSDT"]
    assert entry["drift"] == ["2025-03-03"] and entry["rows"] == 7
    assert date_to_ms(D(2025, 3, 3)) not in set(RepairLayer(layers.repairs).read_bars(DOT)["timestamp"])
    assert validate_ohlcv(read_bars(layers, DOT)) == []


def test_a_failing_source_for_one_symbol_does_not_stop_the_others(layers, sim):
    summary = repair(layers, Recording(sim, fail={"SIM:ATOMUSDT"}))
    assert list(summary.failed) == ["SIM:ATOMUSDT"] and "502" in summary.failed["SIM:ATOMUSDT"]
    assert summary.healed == 1
    rec = gap_record(layers, "SIM:ATOMUSDT", "2024-06-10")
    assert (rec["status"], rec["attempts"], rec["last_tried"]) == ("pending", 0, None) and "502" in rec["last_error"]

    src = Recording(sim)  # a source error is not evidence: the next run asks again at once
    repair(layers, src)
    assert src.calls == [("SIM:ATOMUSDT", D(2024, 6, 10), D(2024, 6, 19))]
    rec = gap_record(layers, "SIM:ATOMUSDT", "2024-06-10")
    assert (rec["status"], rec["attempts"], rec["last_error"]) == ("unrepairable", 1, None)


def test_refetched_bars_pass_the_gates_against_the_stored_bars_around_the_gap(layers, sim):
    """The first two days served at a foreign level can only be seen as contamination next to
    the stored bar before the gap; a bad wick is fixed and its original kept."""
    first, wick = date_to_ms(D(2025, 3, 1)), date_to_ms(D(2025, 3, 5))

    def corrupt(sym, bars):
        if sym != "SIM:DOTUSDT":
            return bars
        bars = bars.copy()
        foreign = bars["timestamp"] < first + 2 * DAY_MS
        bars.loc[foreign, ["open", "high", "low", "close"]] *= 1000.0
        bars.loc[bars["timestamp"] == wick, "high"] = bars.loc[bars["timestamp"] == wick, "close"] * 50.0
        return bars

    summary = repair(layers, Recording(sim, rewrite=corrupt))
    layer = RepairLayer(layers.repairs)
    q = layer.read_quarantine(DOT)
    assert sorted(zip(days(q["timestamp"]), q["rule"])) == [("2025-03-01", "contamination"), ("2025-03-02", "contamination"), ("2025-03-05", "bad_wick_high")]
    assert summary.quarantined == 3
    healed = layer.read_bars(DOT)
    assert days(healed["timestamp"]) == [f"2025-03-0{i}" for i in range(3, 9)]
    fixed = healed[healed["timestamp"] == wick]
    assert fixed["high"].iat[0] == max(fixed["open"].iat[0], fixed["close"].iat[0])
    rec = gap_record(layers, "SIM:DOTUSDT", "2025-03-01")
    assert (rec["status"], rec["filled_days"], rec["missing_days"]) == ("partial", 6, 2)
    assert load_repair_log(layers.repairs)["symbols"]["SIM:DOTUSDT"]["quarantined"] == 3


def test_the_config_rejects_unknown_or_impossible_settings():
    with pytest.raises(ContractError, match="max_fill"):
        RepairConfig.from_params(data(), {"max_fill": 3})
    with pytest.raises(ContractError, match="repair.max_fills"):
        RepairConfig.from_params(data(), {"max_fills": 0})
    cfg = RepairConfig.from_params(data(), {"retry_after_days": 3})
    assert (cfg.max_fills, cfg.symbol_budget_s, cfg.retry_after_days, cfg.as_of) == (50, 30.0, 3, D(2026, 11, 20))


# --------------------------------------------------------------------------- outages (pure)


def day_ms(*isos):
    return np.array([date_to_ms(D.fromisoformat(i)) for i in isos], dtype="int64")


def span(a, b, skip=()):
    n = (D.fromisoformat(b) - D.fromisoformat(a)).days + 1
    ts = date_to_ms(D.fromisoformat(a)) + np.arange(n, dtype="int64") * DAY_MS
    return ts[~np.isin(ts, day_ms(*skip))] if skip else ts


def test_outages_are_days_missing_on_every_listed_symbol_grouped_in_runs():
    series = {
        "X:A": span("2024-01-01", "2024-01-31", skip=("2024-01-10", "2024-01-11", "2024-01-20")),
        "X:B": span("2024-01-01", "2024-01-31", skip=("2024-01-10", "2024-01-11")),
        # listed on the 5th, delisted after the 25th: it does not vote outside that span
        "X:C": span("2024-01-05", "2024-01-25", skip=("2024-01-10", "2024-01-11", "2024-01-20")),
    }
    assert detect_outages_from_timestamps(series) == [{"from": "2024-01-10", "to": "2024-01-11", "days": 2, "symbols": 3}]
    # the day missing on A and C but not B is theirs, not the exchange's
    series["X:B"] = span("2024-01-01", "2024-01-31", skip=("2024-01-10", "2024-01-11", "2024-01-20"))
    assert [o["from"] for o in detect_outages_from_timestamps(series)] == ["2024-01-10", "2024-01-20"]


def test_one_symbol_cannot_tell_an_outage_and_listing_edges_are_not_outages():
    alone = {"X:A": span("2024-01-01", "2024-01-31", skip=("2024-01-10",))}
    assert detect_outages_from_timestamps(alone) == []
    # B ends on the 9th and C starts on the 12th: the 10th-11th have only A listed
    staggered = {"X:A": span("2024-01-01", "2024-01-31", skip=("2024-01-10", "2024-01-11")), "X:B": span("2024-01-01", "2024-01-09"), "X:C": span("2024-01-12", "2024-01-31")}
    assert detect_outages_from_timestamps(staggered) == []
    assert detect_outages({"X:A": missing_days(alone["X:A"]), "X:B": missing_days(alone["X:A"])}, {"X:A": listed_range(alone["X:A"]), "X:B": listed_range(alone["X:A"])}) == [
        {"from": "2024-01-10", "to": "2024-01-10", "days": 1, "symbols": 2}
    ]


def test_one_and_two_reading_processes_give_byte_identical_repairs(staged, tmp_path, sim):
    trees = {}
    for processes in (1, 2):
        shutil.copytree(staged / "staging", tmp_path / f"p{processes}" / "staging")
        layers = Layers(tmp_path / f"p{processes}")
        summary = repair(layers, sim, processes=processes)
        assert summary.healed >= 1 and summary.unrepairable >= 1
        trees[processes] = {str(p.relative_to(layers.repairs)): p.read_bytes() for p in sorted(layers.repairs.rglob("*")) if p.is_file()}
    assert trees[1] == trees[2] and any(name.endswith(".parquet") for name in trees[1])
