"""Shared fixtures. Real Binance recordings are read from ../shared/data/real (never copied)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from real_data import FREQTRADE, fold_offline_skip, real_data_root

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ("pytester",)  # tests/test_real_data_fallback.py runs a pytest session

from conftest_exchange import *  # noqa: F401,F403  (the fake exchange's fixtures)
from sshd_fixture import sshd  # noqa: F401  (a real sshd on 127.0.0.1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Offline, the real-data tests' skips fold into one summary line (tests/real_data.py)."""
    report = yield
    fold_offline_skip(report)
    return report


def load_freqtrade(base: str) -> pd.DataFrame:
    """A real pair's bars from the freqtrade JSON recordings, as contract columns."""
    rows = json.loads((real_data_root() / FREQTRADE / f"{base}_USDT-1d.json").read_text())
    arr = np.asarray(rows, dtype="float64")
    return pd.DataFrame(
        {
            "timestamp": arr[:, 0].astype("int64"),
            "open": arr[:, 1],
            "high": arr[:, 2],
            "low": arr[:, 3],
            "close": arr[:, 4],
            "volume": arr[:, 5],
        }
    )


def real_bases() -> list[str]:
    return sorted(p.name.split("_")[0] for p in (real_data_root() / FREQTRADE).glob("*_USDT-1d.json"))


class RecordingSource:
    """A source wrapper that records every fetch, can fail chosen symbols and rewrite bars."""

    def __init__(self, inner, fail=(), rewrite=None):
        self.inner, self.fail, self.rewrite, self.calls = inner, set(fail), rewrite, []
        self.name, self.exchange = inner.name, inner.exchange

    def list_markets(self, as_of):
        return self.inner.list_markets(as_of)

    def fetch_bars(self, symbol, start, end):
        from quantlake.sources.base import SourceError

        self.calls.append((str(symbol), start, end))
        if str(symbol) in self.fail:
            raise SourceError("HTTP 502 from upstream", symbol=symbol)
        bars = self.inner.fetch_bars(symbol, start, end)
        return self.rewrite(str(symbol), bars) if self.rewrite else bars


NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
AS_OF = dt.date(2026, 11, 20)


@pytest.fixture
def now() -> dt.datetime:
    return NOW


SMALL_UNIVERSE = (
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "LINKUSDT", "DOTUSDT",
    "AVAXUSDT", "UNIUSDT", "AAVEUSDT", "SANDUSDT", "MANAUSDT", "ATOMUSDT", "LTCUSDT", "XVGUSDT", "WAVESUSDT",
)


@pytest.fixture(scope="session")
def sim_lakehouse(tmp_path_factory):
    """A small Data Cycle run on the sim (ingest -> features -> audit), built once per session.

    Returns the `data/` root; tests must not modify it (copy it first).
    """
    from quantlake.contracts import SymbolId
    from quantlake.data.audit import AuditConfig, run_audit
    from quantlake.data.features import run_features
    from quantlake.data.ingest import IngestConfig, ingest_symbols
    from quantlake.data.repair import run_repair
    from quantlake.data.staging import StagingStore
    from quantlake.lakehouse import Layers
    from quantlake.sources.sim import SimExchange

    layers = Layers(tmp_path_factory.mktemp("lake") / "data")
    store = StagingStore(layers.staging_bars, layers.quarantine)
    syms = [SymbolId.parse(f"SIM:{s}") for s in SMALL_UNIVERSE]
    sim = SimExchange(7)
    ingest_symbols(syms, sim, store, IngestConfig(as_of=AS_OF, start=dt.date(2022, 1, 1)), now=NOW, log=lambda m: None)
    run_repair(layers, sim, {"as_of": AS_OF.isoformat(), "start": "2022-01-01"}, {}, log=lambda m: None)
    run_features(syms, layers)
    from quantlake.data.discovery import discover, scanner_files, scanner_from_file
    from quantlake.data.universe import UniverseSpec

    scanners = [scanner_from_file(p) for p in scanner_files(ROOT / "configs" / "scanners")]
    markets = [m for m in sim.list_markets(AS_OF) if m.symbol in syms]
    doc = discover(scanners, markets, as_of=AS_OF, source="sim")
    run_audit(layers, AuditConfig(as_of=AS_OF), universe=UniverseSpec.from_candidates(doc))  # publishes universe.parquet
    return layers.root
