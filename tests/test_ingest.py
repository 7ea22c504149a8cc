"""Idempotent, incremental ingestion on the sim: what is fetched, what is written, what is kept."""

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantlake.contracts import SymbolId, validate_ohlcv
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.staging import StagingStore
from quantlake.sources.base import SourceError
from conftest import RecordingSource as Recording

from quantlake.sources.sim import SimExchange
from quantlake.storage import sha256_file

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
SYMS = [SymbolId.parse(s) for s in ("SIM:BTCUSDT", "SIM:ADAUSDT", "SIM:LINKUSDT", "SIM:XEMUSDT", "SIM:WAVESUSDT")]


@pytest.fixture(scope="module")
def sim():
    return SimExchange(seed=7)


def cfg(start="2024-01-01", as_of="2026-11-20", **kw):
    return IngestConfig(as_of=dt.date.fromisoformat(as_of), start=dt.date.fromisoformat(start), **kw)


def store_at(path: Path) -> StagingStore:
    return StagingStore(path / "bars", path / "quarantine")


def snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def quiet(msg):
    pass


def tree_bytes(path: Path) -> dict:
    """{fragment name: bytes} of a table directory."""
    return {p.name: p.read_bytes() for p in sorted(path.glob("*.parquet"))}


def test_first_run_fetches_everything_and_writes_valid_files(tmp_path, sim):
    src = Recording(sim)
    summary = ingest_symbols(SYMS, src, store_at(tmp_path), cfg(), now=NOW, log=quiet)
    assert summary.count("fetched") == 5 and not summary.failed
    assert len(src.calls) == 5
    store = store_at(tmp_path)
    state = store.load_state()["symbols"]
    for sid in SYMS:
        bars = store.read_bars(sid)
        assert validate_ohlcv(bars, as_of=dt.date(2026, 11, 20)) == []
        assert state[str(sid)]["rows"] == len(bars)
    assert state["SIM:WAVESUSDT"]["end_date"] == "2026-08-15"
    q = store.read_quarantine(SymbolId.parse("SIM:XEMUSDT"))
    assert set(q["rule"]) == {"zero_volume_stall"} and len(q) == 10 and (q["volume"] == 0).all()
    assert state["SIM:XEMUSDT"]["gaps"] == [["2024-02-01", "2024-02-10"]]


def test_rerun_when_fresh_makes_no_call_and_changes_no_byte(tmp_path, sim):
    ingest_symbols(SYMS, sim, store_at(tmp_path), cfg(), now=NOW, log=quiet)
    before = snapshot(tmp_path)
    src = Recording(sim)
    later = NOW + dt.timedelta(hours=1)
    summary = ingest_symbols(SYMS, src, store_at(tmp_path), cfg(), now=later, log=quiet)
    assert src.calls == [] and summary.count("skipped") == 5 and summary.source_calls == 0
    assert snapshot(tmp_path) == before


def test_only_the_missing_tail_and_head_are_fetched(tmp_path, sim):
    ingest_symbols(SYMS, sim, store_at(tmp_path), cfg(as_of="2026-11-10"), now=NOW, log=quiet)
    src = Recording(sim)
    ingest_symbols(SYMS, src, store_at(tmp_path), cfg(as_of="2026-11-20"), now=NOW, log=quiet)
    tails = {c for c in src.calls if c[0] != "SIM:WAVESUSDT"}
    assert tails == {(str(s), dt.date(2026, 11, 11), dt.date(2026, 11, 20)) for s in SYMS if str(s) != "SIM:WAVESUSDT"}
    # the halted symbol's tail is asked from its last bar on
    assert ("SIM:WAVESUSDT", dt.date(2026, 8, 16), dt.date(2026, 11, 20)) in src.calls
    src = Recording(sim)
    ingest_symbols(SYMS, src, store_at(tmp_path), cfg(start="2023-06-01"), now=NOW + dt.timedelta(hours=13), log=quiet)
    heads = [c for c in src.calls if c[1] == dt.date(2023, 6, 1)]
    assert sorted(heads) == sorted((str(s), dt.date(2023, 6, 1), dt.date(2023, 12, 31)) for s in SYMS)
    # the halted symbol is re-checked after freshness_hours, the others cover as_of
    assert [c for c in src.calls if c[1] != dt.date(2023, 6, 1)] == [("SIM:WAVESUSDT", dt.date(2026, 8, 16), dt.date(2026, 11, 20))]


def test_a_symbol_checked_recently_for_this_as_of_is_skipped(tmp_path, sim):
    halted = [SymbolId.parse("SIM:WAVESUSDT")]
    ingest_symbols(halted, sim, store_at(tmp_path), cfg(), now=NOW, log=quiet)
    src = Recording(sim)
    ingest_symbols(halted, src, store_at(tmp_path), cfg(), now=NOW + dt.timedelta(hours=11), log=quiet)
    assert src.calls == []
    ingest_symbols(halted, src, store_at(tmp_path), cfg(), now=NOW + dt.timedelta(hours=13), log=quiet)
    assert len(src.calls) == 1


def test_one_failing_symbol_does_not_sink_the_batch_and_keeps_its_files(tmp_path, sim):
    ingest_symbols(SYMS, sim, store_at(tmp_path), cfg(as_of="2026-11-10"), now=NOW, log=quiet)
    ada = tmp_path / "bars" / "SIM_ADAUSDT_1d.parquet"
    before = tree_bytes(ada)
    messages = []
    src = Recording(sim, fail={"SIM:ADAUSDT"})
    summary = ingest_symbols(SYMS, src, store_at(tmp_path), cfg(), now=NOW, log=messages.append)
    assert [o.symbol for o in summary.failed] == ["SIM:ADAUSDT"]
    assert "SIM:ADAUSDT: HTTP 502" in summary.failed[0].detail
    assert any("FAILED SIM:ADAUSDT" in m for m in messages)
    assert summary.count("fetched") == 4
    assert tree_bytes(ada) == before
    assert store_at(tmp_path).load_state()["symbols"]["SIM:ADAUSDT"]["end_date"] == "2026-11-10"
    assert "1 failed" in summary.line()


def test_toxic_bars_never_reach_staging(tmp_path, sim):
    ingest_symbols([SymbolId.parse("SIM:XVGUSDT")], sim, store_at(tmp_path), cfg(), now=NOW, log=quiet)
    store = store_at(tmp_path)
    entry = store.load_state()["symbols"]["SIM:XVGUSDT"]
    assert entry["toxic_from"] == "2026-10-01" and "toxic_reason" not in entry
    assert store.read_bars(SymbolId.parse("SIM:XVGUSDT"))["close"].max() < 1.0e3 * store.read_bars(SymbolId.parse("SIM:XVGUSDT"))["close"].min()
    assert entry["end_date"] == "2026-09-30"


def test_bookkeeping_is_reconciled_with_the_files(tmp_path, sim):
    ingest_symbols(SYMS[:2], sim, store_at(tmp_path), cfg(), now=NOW, log=quiet)
    store = store_at(tmp_path)
    # simulate a crash between a fragment commit and its bookkeeping: the commit's intent
    # record announces the new fragment, so it is adopted
    bars = store.read_bars(SYMS[0]).iloc[:-5]
    store.bars.write(SYMS[0].filename, bars)
    entry = store.load_state()["symbols"][str(SYMS[0])]
    assert entry["rows"] == len(bars) and entry["end_date"] == "2026-11-15"
    # and the next run heals the tail
    ingest_symbols(SYMS[:2], sim, store_at(tmp_path), cfg(), now=NOW + dt.timedelta(hours=13), log=quiet)
    assert store_at(tmp_path).load_state()["symbols"][str(SYMS[0])]["end_date"] == "2026-11-20"


# --------------------------------------------------------------------------- property

PROP_SYMS = [SymbolId.parse(s) for s in ("SIM:ADAUSDT", "SIM:LINKUSDT", "SIM:EOSUSDT")]
P_START, P_END = dt.date(2020, 2, 1), dt.date(2023, 6, 30)
SPAN = (P_END - P_START).days


def _files(path: Path) -> dict:
    return {str(p.relative_to(path)): sha256_file(p) for d in ("bars", "quarantine") for p in sorted((path / d).rglob("*.parquet")) if p.is_file()}


@pytest.fixture(scope="module")
def full_ingestion(sim, tmp_path_factory):
    path = tmp_path_factory.mktemp("full")
    ingest_symbols(PROP_SYMS, sim, store_at(path), cfg(start=P_START.isoformat(), as_of=P_END.isoformat()), now=NOW, log=quiet)
    return _files(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=SPAN), min_size=1, max_size=5, unique=True),
    order=st.randoms(use_true_random=False),
    workers=st.integers(min_value=1, max_value=3),
    processes=st.integers(min_value=1, max_value=2),
)
def test_any_split_in_any_order_gives_byte_identical_files(sim, full_ingestion, cuts, order, workers, processes):
    bounds = [0, *sorted(cuts), SPAN + 1]
    windows = [(P_START + dt.timedelta(days=a), P_START + dt.timedelta(days=b - 1)) for a, b in zip(bounds, bounds[1:])]
    order.shuffle(windows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        for a, b in windows:
            ingest_symbols(PROP_SYMS, sim, store_at(path), cfg(start=a.isoformat(), as_of=b.isoformat(), workers=workers, processes=processes),
                           now=NOW, log=quiet)
        assert _files(path) == full_ingestion


def test_a_toxic_tail_bar_stays_restorable_when_an_earlier_window_is_ingested_later(sim, full_ingestion, tmp_path):
    """The case hypothesis found: a run ending on the first day of ADA's contamination quarantines
    that day as a toxic tail; a later head extension (as_of before it) must not re-label it
    `not_closed` (never restorable), so the full history ends byte-identical."""
    for a, b in (("2020-02-02", "2021-09-01"), ("2020-02-01", "2020-02-01"), ("2021-09-02", P_END.isoformat())):
        ingest_symbols(PROP_SYMS, sim, store_at(tmp_path), cfg(start=a, as_of=b), now=NOW, log=quiet)
    assert _files(tmp_path) == full_ingestion


def test_a_symbol_with_no_bar_in_the_window_is_recorded_once_without_a_file(tmp_path, sim):
    luna = [SymbolId.parse("SIM:LUNAUSDT")]  # delisted 2022-05-12, before data.start
    src = Recording(sim)
    summary = ingest_symbols(luna, src, store_at(tmp_path), cfg(start="2024-01-01"), now=NOW, log=quiet)
    assert summary.count("fetched") == 1 and len(src.calls) == 1
    store = store_at(tmp_path)
    assert not store.bars_path(luna[0]).exists()
    entry = store.load_state()["symbols"]["SIM:LUNAUSDT"]
    assert entry["file"] is None and entry["rows"] == 0
    ingest_symbols(luna, src, store_at(tmp_path), cfg(start="2024-01-01"), now=NOW + dt.timedelta(hours=1), log=quiet)
    assert len(src.calls) == 1  # fresh: not asked again
    ingest_symbols(luna, src, store_at(tmp_path), cfg(start="2022-01-01"), now=NOW + dt.timedelta(hours=1), log=quiet)
    assert src.calls[-1] == ("SIM:LUNAUSDT", dt.date(2022, 1, 1), dt.date(2026, 11, 20))  # start moved earlier
    assert store_at(tmp_path).load_state()["symbols"]["SIM:LUNAUSDT"]["end_date"] == "2022-05-12"


def test_the_bookkeeping_write_period_grows_with_its_cost():
    # issue 14 item 8: a fixed one-second period made ingestion quadratic at 5,000 symbols
    # (writes ~ run time ~ N, each write ~ N); the period keeps the writes to a fixed share.
    from quantlake.data.ingest import STATE_FLUSH_S, STATE_FLUSH_SHARE, next_flush_after

    assert next_flush_after(0.001) == STATE_FLUSH_S
    assert next_flush_after(0.4) == pytest.approx(0.4 / STATE_FLUSH_SHARE)
    assert 0.4 / next_flush_after(0.4) <= STATE_FLUSH_SHARE + 1e-12


def _tree(path: Path) -> dict:
    """sha256 of every file a run leaves (tables, bookkeeping, freshness), by relative path."""
    return {str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def test_one_and_two_commit_processes_give_byte_identical_staging_trees(tmp_path, sim):
    defects = [SymbolId.parse(f"SIM:{s}") for s in ("XVGUSDT", "FTTUSDT", "EOSUSDT", "DOTUSDT", "ATOMUSDT")]
    symbols = [*SYMS, *defects, SymbolId.parse("SIM:LUNAUSDT")]  # LUNA: nothing in the window, no file
    trees = {}
    for processes in (1, 2):
        root = tmp_path / f"p{processes}"
        summary = ingest_symbols(symbols, sim, store_at(root), cfg(as_of="2026-11-10", processes=processes), now=NOW, log=quiet)
        assert summary.count("fetched") == len(symbols) and not summary.failed
        # and an incremental run on top: a tail, a head, and the symbols already fresh
        ingest_symbols(symbols, sim, store_at(root), cfg(start="2023-06-01", processes=processes), now=NOW + dt.timedelta(hours=13), log=quiet)
        trees[processes] = _tree(root)
    assert trees[1] == trees[2]
    assert sum(name.endswith(".parquet") for name in trees[1]) >= 2 * len(SYMS)
    assert {"bars/_ingest_state.json", ".freshness.json"} <= set(trees[1])
    assert any(name.startswith("quarantine/SIM_XVGUSDT") for name in trees[1])


def test_the_bookkeeping_keeps_the_intent_records_of_commits_it_does_not_hold(tmp_path, sim):
    """A batched bookkeeping write while other symbols' commits run (in worker processes)
    drops only the intent records of the symbols it holds: a crash right after it still
    finds the running commits' files announced, so they are adopted, never set aside."""
    store = store_at(tmp_path)
    ingest_symbols(SYMS[:2], sim, store, cfg(as_of="2026-11-10"), now=NOW, log=quiet)
    state = store.load_state()
    longer = {sid: store.read_bars(sid) for sid in SYMS[:2]}
    running = SYMS[1]  # its commit is "still running" when the bookkeeping is written
    for sid in SYMS[:2]:
        bars = longer[sid].iloc[:-3]  # any change: three bars fewer
        entry = store.commit(sid, bars, store.read_quarantine(sid), state["symbols"][str(sid)], updated_at="2026-11-26T12:00:00Z")
        if sid != running:
            state["symbols"][str(sid)] = entry
    store.write_state(state, settled=[str(SYMS[0])])
    assert store.bars.intent_path(running.filename).exists()
    assert not store.bars.intent_path(SYMS[0].filename).exists()
    healed = store_at(tmp_path).load_state()["symbols"]
    assert healed[str(running)]["rows"] == len(longer[running]) - 3 and not healed[str(running)].get("corrupt")
    assert healed[str(SYMS[0])]["rows"] == len(longer[SYMS[0]]) - 3
