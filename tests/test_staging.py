"""Staged files are verified, never trusted (issue 12, items 4 and 6)."""

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from quantlake.contracts import SymbolId
from quantlake.data.audit import AuditConfig, run_audit
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.staging import StagingStore
from quantlake.lakehouse import Layers
from quantlake.sources.files import FilesConfig, FilesSource
from quantlake.sources.sim import SimExchange
from quantlake.storage import read_json, sha256_file

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
AS_OF = dt.date(2026, 11, 20)
SYMS = [SymbolId.parse(f"SIM:{s}") for s in ("BTCUSDT", "ADAUSDT", "DOGEUSDT")]
BTC = SYMS[0]


def cfg():
    return IngestConfig(as_of=AS_OF, start=dt.date(2025, 6, 1))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    layers = Layers(tmp_path_factory.mktemp("clean") / "data")
    ingest_symbols(SYMS, SimExchange(7), store_of(layers), cfg(), now=NOW, log=lambda m: None)
    return layers


def store_of(layers: Layers, log=lambda m: None) -> StagingStore:
    return StagingStore(layers.staging_bars, layers.quarantine, log=log)


def copy(clean: Layers, tmp_path: Path) -> Layers:
    shutil.copytree(clean.root, tmp_path / "data")
    return Layers(tmp_path / "data")


def files(layers: Layers) -> dict:
    return {str(p.relative_to(layers.root)): sha256_file(p) for p in sorted((layers.root / "staging").rglob("*.parquet")) if p.is_file() and ".corrupt" not in p.parts}


def edit_one_close(layers: Layers) -> Path:
    """A hand edit behind ingest's back: one close changed, file rewritten with valid Parquet."""
    import pandas as pd

    path = layers.staging_bars / BTC.filename / "2026-Q3.parquet"
    frame = pd.read_parquet(path)
    frame.loc[3, "close"] = frame.loc[3, "close"] * 1.001
    path.unlink()
    frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("damage", ["edit", "truncate"])
def test_a_tampered_or_truncated_fragment_is_never_certified_and_ingest_heals_it(clean, tmp_path, damage):
    layers = copy(clean, tmp_path)
    if damage == "edit":
        path = edit_one_close(layers)
    else:
        path = layers.staging_bars / BTC.filename / "2025-2025.parquet"
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data[: len(data) // 2])
    # any reader but ingest: the symbol is marked and the gate makes it toxic (not published)
    entry = store_of(layers).load_state()["symbols"][str(BTC)]
    assert "failed verification" in entry["corrupt"] and path.parent.name in entry["corrupt"]
    run_audit(layers, AuditConfig(as_of=AS_OF))
    cat = read_json(layers.lakehouse / "catalog.json")["symbols"][str(BTC)]
    assert cat["status"] == "toxic" and "failed verification" in cat["reasons"][0]
    assert str(BTC) not in read_json(layers.lakehouse / "certified.json")["symbols"]
    # ingest moves the table aside (nothing deleted), says so naming it, and fetches it again
    messages = []
    summary = ingest_symbols(SYMS, SimExchange(7), store_of(layers, messages.append), cfg(), now=NOW, log=messages.append)
    assert not summary.failed and [o.symbol for o in summary.outcomes if o.action == "fetched"] == [str(BTC)]
    assert any(BTC.filename in m and ".corrupt" in m for m in messages), messages
    assert (layers.root / "staging/.corrupt/bars" / BTC.filename / path.name).exists()
    assert files(layers) == files(clean)  # healed byte for byte
    run_audit(layers, AuditConfig(as_of=AS_OF))
    assert str(BTC) in read_json(layers.lakehouse / "certified.json")["symbols"]


def test_an_unreadable_bookkeeping_file_is_set_aside_and_rebuilt_without_a_traceback(clean, tmp_path):
    layers = copy(clean, tmp_path)
    state_path = layers.staging_bars / "_ingest_state.json"
    before = read_json(state_path)
    state_path.write_text(state_path.read_text()[:100])  # truncated JSON
    messages = []
    summary = ingest_symbols(SYMS, SimExchange(7), store_of(layers, messages.append), cfg(), now=NOW, log=messages.append)
    assert not summary.failed
    assert any("_ingest_state.json is unreadable" in m for m in messages), messages
    assert (layers.root / "staging/.corrupt/_ingest_state.json").exists()
    after = read_json(state_path)["symbols"]
    for sym, entry in before["symbols"].items():  # the derived fields are rebuilt from the tables
        for key in ("fragments", "rows", "start_date", "end_date", "gaps", "sha256"):
            assert after[sym][key] == entry[key], (sym, key)
    assert files(layers) == files(clean)


def test_an_unreadable_bookkeeping_file_does_not_stop_the_gate(clean, tmp_path):
    layers = copy(clean, tmp_path)
    (layers.staging_bars / "_ingest_state.json").write_text("{not json")
    run_audit(layers, AuditConfig(as_of=AS_OF))  # adopts the readable tables that meet the contract
    assert set(read_json(layers.lakehouse / "certified.json")["symbols"]) == {str(s) for s in SYMS}


def test_switching_data_source_never_mixes_sources(clean, tmp_path):
    layers = copy(clean, tmp_path)
    folder = tmp_path / "raw"
    folder.mkdir()
    bars = SimExchange(7).fetch_bars(BTC, dt.date(2025, 6, 1), AS_OF)
    (folder / "ETHUSDT_1d.csv").write_text(bars.to_csv(index=False))
    source = FilesSource(FilesConfig(path=str(folder), exchange="BINANCE"))
    messages = []
    eth = SymbolId.parse("BINANCE:ETHUSDT")
    summary = ingest_symbols([eth], source, store_of(layers, messages.append), cfg(), now=NOW, log=messages.append)
    assert not summary.failed
    assert any("data.source is now 'files'" in m and "3 symbol(s)" in m and "SIM:BTCUSDT" in m for m in messages), messages
    state = store_of(layers).load_state()["symbols"]
    assert set(state) == {str(eth)} and state[str(eth)]["source"] == "files"
    assert sorted(p.name for p in layers.staging_bars.glob("*_1d.parquet")) == [eth.filename]
    assert (layers.root / "staging/.other-sources/sim/bars" / BTC.filename).is_dir()  # moved aside, not lost
    run_audit(layers, AuditConfig(as_of=AS_OF))
    assert set(read_json(layers.lakehouse / "catalog.json")["symbols"]) == {str(eth)}
    assert json.loads((layers.lakehouse / "certified.json").read_text())["symbols"].keys() == {str(eth)}
