import datetime as dt

import pandas as pd
import pytest

from quantlake.contracts import ContractError, SymbolId, date_to_ms
from quantlake.sources.base import Source, SourceError
from quantlake.sources.sim import DEFECTS, SimConfig, SimExchange

AS_OF = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def sim():
    return SimExchange(seed=7)


def test_sim_implements_the_source_interface(sim):
    assert isinstance(sim, Source)


def test_universe_has_usdt_pairs_stablecoins_crosses_listings_and_delistings(sim):
    markets = sim.list_markets(AS_OF)
    usdt = [m for m in markets if m.quote == "USDT" and m.extra["sector"] != "stable"]
    assert len(usdt) >= 80
    assert {m.base for m in markets if m.extra["sector"] == "stable"} >= {"USDC", "DAI"}
    assert {m.quote for m in markets} > {"USDT"}
    assert sum(m.status == "BREAK" for m in markets) >= 2
    assert len({m.listed_on.year for m in usdt}) >= 6
    # a market listed after as_of is not listed yet
    assert "NEWCO" not in {m.base for m in sim.list_markets(dt.date(2026, 11, 1))}


def test_a_bar_is_the_same_whatever_the_window(sim):
    sid = SymbolId.parse("SIM:SOLUSDT")
    full = sim.fetch_bars(sid, dt.date(2020, 1, 1), AS_OF).set_index("timestamp")
    for a, b in [(dt.date(2023, 1, 1), dt.date(2023, 1, 10)), (dt.date(2024, 2, 28), dt.date(2024, 3, 2))]:
        part = sim.fetch_bars(sid, a, b).set_index("timestamp")
        pd.testing.assert_frame_equal(part, full.loc[part.index])
    other = SimExchange(seed=7).fetch_bars(sid, dt.date(2023, 1, 1), dt.date(2023, 1, 10))
    pd.testing.assert_frame_equal(other.set_index("timestamp"), full.loc[other["timestamp"]])
    assert not SimExchange(seed=8).fetch_bars(sid, dt.date(2023, 1, 1), dt.date(2023, 1, 10)).equals(other)


def test_returns_have_fat_tails_volatility_clustering_and_a_common_factor(sim):
    closes = {}
    for base in ["BTC", "ETH", "SOL", "LINK", "AVAX", "UNI"]:
        b = sim.fetch_bars(SymbolId.parse(f"SIM:{base}USDT"), dt.date(2021, 1, 1), dt.date(2025, 12, 31))
        closes[base] = b.set_index("timestamp")["close"]
    r = pd.DataFrame(closes).pct_change().dropna()
    assert (r.kurt() > 3).all()  # excess kurtosis: fat tails
    assert (r.abs().apply(lambda s: s.autocorr(1)) > 0.05).all()  # |r| autocorrelated: clustering
    corr = r.corr().to_numpy()
    assert corr[~pd.isna(corr) & (corr < 0.999)].mean() > 0.2  # a market factor


def test_defects_are_where_the_table_says(sim):
    def bars(sym, a, b):
        return sim.fetch_bars(SymbolId.parse(f"SIM:{sym}"), a, b)

    gap = next(d for d in DEFECTS if d.kind == "permanent_gap")
    days = set(bars(gap.symbol, gap.start - dt.timedelta(days=3), gap.end + dt.timedelta(days=3))["timestamp"])
    assert date_to_ms(gap.start) not in days and date_to_ms(gap.end) not in days
    heal = next(d for d in DEFECTS if d.kind == "healable_gap")
    wide = bars(heal.symbol, dt.date(2025, 1, 1), dt.date(2025, 6, 1))["timestamp"]
    narrow = bars(heal.symbol, heal.start, heal.end)["timestamp"]
    assert date_to_ms(heal.start) not in set(wide) and len(narrow) == (heal.end - heal.start).days + 1
    halted = bars("WAVESUSDT", dt.date(2026, 1, 1), AS_OF)
    assert halted["timestamp"].max() == date_to_ms(dt.date(2026, 8, 15))
    outage = date_to_ms(dt.date(2024, 11, 11))
    assert outage not in set(bars("BTCUSDT", dt.date(2024, 11, 1), dt.date(2024, 11, 20))["timestamp"])


def test_unknown_symbols_and_params_are_clear_errors(sim):
    with pytest.raises(SourceError, match="SIM:NOPEUSDT"):
        sim.fetch_bars(SymbolId.parse("SIM:NOPEUSDT"), dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    with pytest.raises(SourceError, match="BINANCE:BTCUSDT"):
        sim.fetch_bars(SymbolId.parse("BINANCE:BTCUSDT"), dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    with pytest.raises(ContractError, match=r"data.sim.sede: unknown key \(did you mean seed\?\)"):
        SimConfig.from_params({"seed": 1, "sede": 2})
    with pytest.raises(ContractError, match=r"data.sim.extra_symbols must be in \[0, 20000\], got 20001"):
        SimConfig.from_params({"extra_symbols": 20001})
    assert SimConfig.from_params({"extra_symbols": 20000}).extra_symbols == 20000
