"""The feature store stage (data/features.py, data/feature_months.py): exact rows, incremental
updates, bounded memory through the spill folder, and the same bytes for any number of processes."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from conftest import NOW
from quantlake.contracts import SymbolId
from quantlake.data import feature_months
from quantlake.data.feature_months import LONG_FILE, SPILL_DIR
from quantlake.data.features import STATE_FILE, features_layer, run_features
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.staging import StagingStore, bars_layer
from quantlake.data.technicals import technical_ratings
from quantlake.lakehouse import Layers, read_bars
from quantlake.sources.sim import SimExchange

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT", "LINKUSDT", "AVAXUSDT")
START, AS_OF = dt.date(2025, 6, 1), dt.date(2026, 3, 10)


def staged(root: Path, as_of: dt.date = AS_OF, symbols=SYMBOLS) -> Layers:
    layers = Layers(root / "data")
    store = StagingStore(layers.staging_bars, layers.quarantine)
    sids = [SymbolId.parse(f"SIM:{s}") for s in symbols]
    ingest_symbols(sids, SimExchange(7), store, IngestConfig(as_of=as_of, start=START, freshness_hours=0), now=NOW, log=lambda m: None)
    return layers


def sids(symbols=SYMBOLS) -> list[SymbolId]:
    return [SymbolId.parse(f"SIM:{s}") for s in symbols]


def table_bytes(layers: Layers) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((layers.features / LONG_FILE).glob("*.parquet"))}


def expected_bytes(layers: Layers, symbols=SYMBOLS) -> dict[str, bytes]:
    """The table as `Layer.encode` writes every symbol's rows at once (the reference)."""
    frames = []
    for sid in sids(symbols):
        frame = technical_ratings(read_bars(layers, sid), where=str(sid))
        frame.insert(1, "symbol", str(sid))
        frames.append(frame)
    return {f"{k}.parquet": v for k, v in features_layer(layers.features).encode(pd.concat(frames, ignore_index=True)).items()}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Layers:
    """Staged bars of SYMBOLS as of AS_OF (read-only: tests copy it)."""
    return staged(tmp_path_factory.mktemp("features"))


def copy_of(base: Layers, dst: Path) -> Layers:
    shutil.copytree(base.root, dst / "data")
    return Layers(dst / "data")


@pytest.mark.parametrize("processes", [1, 2])
def test_a_fresh_build_is_every_symbols_rows_encoded_at_once(base, tmp_path, processes, monkeypatch):
    monkeypatch.setattr(feature_months, "CHUNK_SYMBOLS", 2)  # several spill files, months spread across them
    layers = copy_of(base, tmp_path)
    summary = run_features(sids(), layers, processes=processes)
    assert summary.computed == sorted(str(s) for s in sids()) and not summary.failed
    assert table_bytes(layers) == expected_bytes(layers)
    assert summary.months_written == len(table_bytes(layers)) == 10  # 2025-06 .. 2026-03
    assert not (layers.features / SPILL_DIR).exists()


def test_the_number_of_processes_and_the_chunking_change_no_byte(base, tmp_path, monkeypatch):
    outputs = []
    for processes, chunk in ((1, 64), (2, 1), (3, 4)):
        monkeypatch.setattr(feature_months, "CHUNK_SYMBOLS", chunk)
        layers = copy_of(base, tmp_path / f"p{processes}")
        run_features(sids(), layers, processes=processes)
        outputs.append((table_bytes(layers), (layers.features / STATE_FILE).read_bytes()))
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_new_day_recomputes_only_its_symbols_rows_and_rewrites_only_its_month(base, tmp_path):
    layers = copy_of(base, tmp_path)
    run_features(sids(), layers, processes=2)
    table = layers.features / LONG_FILE
    before = {p.name: os.stat(p).st_ino for p in table.glob("*.parquet")}
    # the next day arrives for two symbols only (ingest as of AS_OF + 1 for them)
    staged(tmp_path, AS_OF + dt.timedelta(days=1), symbols=("BTCUSDT", "ETHUSDT"))
    summary = run_features(sids(), layers, processes=2)
    assert summary.computed == ["SIM:BTCUSDT", "SIM:ETHUSDT"] and summary.recomputed_from == {}
    assert sorted(summary.unchanged) == sorted(str(s) for s in sids() if s.symbol not in ("BTCUSDT", "ETHUSDT"))
    assert summary.months_written == 1
    after = {p.name: os.stat(p).st_ino for p in table.glob("*.parquet")}
    assert {k for k in after if after[k] != before.get(k)} == {"2026-03.parquet"}  # closed months untouched
    assert table_bytes(layers) == expected_bytes(layers)
    # and a run with nothing new writes nothing
    again = run_features(sids(), layers, processes=2)
    assert again.computed == [] and again.months_written == 0


def test_changed_history_recomputes_the_symbol_from_the_changed_fragment_on(base, tmp_path):
    layers = copy_of(base, tmp_path)
    run_features(sids(), layers, processes=1)
    bars = bars_layer(layers.staging_bars)
    name = SymbolId.parse("SIM:SOLUSDT").filename
    frame = bars.read(name)
    frame.loc[frame["timestamp"] == frame["timestamp"].iloc[40], "close"] *= 1.01  # a 2025 day (closed years)
    bars.write(name, frame)
    summary = run_features(sids(), layers, processes=2)
    assert summary.computed == ["SIM:SOLUSDT"] and list(summary.recomputed_from) == ["SIM:SOLUSDT"]
    assert table_bytes(layers) == expected_bytes(layers)


def test_a_repaired_day_recomputes_the_symbol(base, tmp_path):
    layers = copy_of(base, tmp_path)
    run_features(sids(), layers, processes=1)
    name = SymbolId.parse("SIM:ETHUSDT").filename
    staged_bars = bars_layer(layers.staging_bars).read(name)
    day = staged_bars.iloc[[100]]
    bars_layer(layers.staging_bars).write(name, staged_bars.drop(index=100))  # a gap in staging ...
    run_features(sids(), layers, processes=1)
    bars_layer(layers.repairs).write(name, day)  # ... healed by a repair: the merged bars are whole again
    summary = run_features(sids(), layers, processes=2)
    assert summary.computed == ["SIM:ETHUSDT"]
    assert table_bytes(layers) == expected_bytes(layers)


def test_a_symbol_that_fails_keeps_its_rows_and_the_others_go_on(base, tmp_path):
    layers = copy_of(base, tmp_path)
    run_features(sids(), layers, processes=1)
    good = table_bytes(layers)
    bad = SymbolId.parse("SIM:DOGEUSDT").filename
    frag = sorted((layers.staging_bars / bad).glob("*.parquet"))[-1]
    frag.chmod(0o644)
    frag.write_bytes(b"not parquet")  # unreadable bars
    staged(tmp_path, AS_OF + dt.timedelta(days=1), symbols=("BTCUSDT",))
    summary = run_features(sids(), layers, processes=2)
    assert list(summary.failed) == ["SIM:DOGEUSDT"] and "SIM:DOGEUSDT" in summary.failed["SIM:DOGEUSDT"]
    assert summary.computed == ["SIM:BTCUSDT"]
    def doge_rows(table: dict[str, bytes]) -> pd.DataFrame:
        frames = [pd.read_parquet(pa.BufferReader(data)) for data in table.values()]
        rows = pd.concat(frames, ignore_index=True)
        return rows[rows["symbol"] == "SIM:DOGEUSDT"].reset_index(drop=True)

    assert len(doge_rows(good)) > 200
    pd.testing.assert_frame_equal(doge_rows(table_bytes(layers)), doge_rows(good))  # its stored rows are kept


def test_a_symbol_no_longer_asked_for_leaves_the_table(base, tmp_path):
    layers = copy_of(base, tmp_path)
    run_features(sids(), layers, processes=2)
    kept = [s for s in SYMBOLS if s != "AVAXUSDT"]
    summary = run_features(sids(kept), layers, processes=2)
    assert summary.removed == ["SIM:AVAXUSDT"] and summary.computed == []
    assert table_bytes(layers) == expected_bytes(layers, kept)


def test_a_killed_runs_spill_is_removed_and_a_failed_encode_leaves_a_table_the_next_run_fixes(base, tmp_path, monkeypatch):
    layers = copy_of(base, tmp_path)
    spill = layers.features / SPILL_DIR
    spill.mkdir(parents=True)
    (spill / "000000.arrow").write_bytes(b"left by a killed run")
    run_features(sids(), layers, processes=1)
    assert not spill.exists() and table_bytes(layers) == expected_bytes(layers)
    state = (layers.features / STATE_FILE).read_bytes()
    staged(tmp_path, AS_OF + dt.timedelta(days=1), symbols=SYMBOLS)
    calls = []

    def failing(shared, month):
        calls.append(month)
        if len(calls) == 2:
            raise OSError("disk full")
        return feature_months.encode_month(shared, month)

    monkeypatch.setattr("quantlake.data.features.encode_month", failing)
    with pytest.raises(OSError, match="disk full"):
        run_features(sids(), layers, processes=1)
    assert (layers.features / STATE_FILE).read_bytes() == state  # the bookkeeping still says "old rows"
    assert not spill.exists()
    monkeypatch.undo()
    summary = run_features(sids(), layers, processes=2)
    assert len(summary.computed) == len(SYMBOLS)
    assert table_bytes(layers) == expected_bytes(layers)


def test_only_the_few_valued_columns_are_dictionary_encoded(base, tmp_path):
    import pyarrow.parquet as pq

    from quantlake.data.features import DICTIONARY_COLUMNS

    layers = copy_of(base, tmp_path)
    run_features(sids(), layers, processes=1)
    meta = pq.ParquetFile(sorted((layers.features / LONG_FILE).glob("*.parquet"))[-1]).metadata
    dictionary = {meta.schema.column(i).name for i in range(meta.num_columns)
                  if any("DICTIONARY" in e for e in meta.row_group(0).column(i).encodings)}
    assert dictionary == set(DICTIONARY_COLUMNS) == {"timestamp", "symbol", "recommend_all", "recommend_ma", "recommend_other"}


def test_the_verified_bookkeeping_hashes_are_the_files_hashes(base, tmp_path):
    from quantlake.data.features import source_hashes

    layers = copy_of(base, tmp_path)
    state = StagingStore(layers.staging_bars, layers.quarantine).load_state()["symbols"]
    for sid in sids():
        assert source_hashes(layers, sid, state[str(sid)]["fragments"]) == source_hashes(layers, sid)
        assert len(source_hashes(layers, sid)) >= 2
