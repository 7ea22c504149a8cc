"""Pytest fixtures for the fake Binance exchange and the real data (`tests/conftest.py` imports them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_exchange import FakeExchange, load_freqtrade_folder
from real_data import real_data_root

__all__ = ["fake_exchange", "real_data_dir", "real_freqtrade_bars"]

@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """`../shared/data/real` (skipped only where it is absent: a user's machine, never CI)."""
    return real_data_root()


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
