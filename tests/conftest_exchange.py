"""Pytest fixtures for the fake Binance exchange and the real data (`tests/conftest.py` imports them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_exchange import FakeExchange, load_freqtrade_folder

__all__ = ["fake_exchange", "real_data_dir", "real_freqtrade_bars"]

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/real"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """`../shared/data/real` (skipped only where it is absent: a user's machine, never CI)."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real Binance data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def real_freqtrade_bars(real_data_dir: Path) -> dict:
    """The 33 real USDT pairs, `{"BTCUSDT": OHLCV frame}` (do not modify the frames)."""
    return load_freqtrade_folder(real_data_dir / "binance_spot_1d_freqtrade_json")


@pytest.fixture
def fake_exchange():
    """A factory: `fake_exchange(bars, **options)` starts a FakeExchange; all stop at teardown."""
    started: list[FakeExchange] = []

    def make(bars=None, **options) -> FakeExchange:
        exchange = FakeExchange(bars, **options).start()
        started.append(exchange)
        return exchange

    yield make
    for exchange in started:
        exchange.stop()
