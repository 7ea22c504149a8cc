"""The simulated exchange's universe: its listings, calendar and injected defects (data only).

`sim.py` generates the bars from these facts; the README lists DEFECTS.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

EXCHANGE = "SIM"
GENESIS = dt.date(2017, 7, 1)
HORIZON = dt.date(2030, 12, 31)
# A bulk request wider than this many days loses the "healable" gap (see DEFECTS).
BULK_WINDOW_DAYS = 31

# (base, sector, listed_on, base price at listing, idiosyncratic vol scale, liquidity scale)
_D = dt.date
UNIVERSE: tuple[tuple[str, str, dt.date, float, float, float], ...] = (
    ("BTC", "store", _D(2017, 8, 17), 4300.0, 0.6, 400.0),
    ("ETH", "l1", _D(2017, 8, 17), 300.0, 0.7, 200.0),
    ("BNB", "exchange", _D(2017, 11, 6), 1.5, 0.8, 60.0),
    ("LTC", "store", _D(2017, 12, 13), 300.0, 0.8, 20.0),
    ("XRP", "payments", _D(2018, 5, 4), 0.7, 0.9, 50.0),
    ("ADA", "l1", _D(2018, 4, 17), 0.25, 0.9, 30.0),
    ("EOS", "l1", _D(2018, 5, 28), 12.0, 0.9, 10.0),
    ("TRX", "l1", _D(2018, 6, 11), 0.05, 0.9, 15.0),
    ("XLM", "payments", _D(2018, 5, 31), 0.3, 0.9, 8.0),
    ("ETC", "l1", _D(2018, 6, 12), 15.0, 0.9, 8.0),
    ("LINK", "oracle", _D(2019, 1, 16), 0.5, 1.0, 15.0),
    ("DOGE", "meme", _D(2019, 7, 5), 0.003, 1.1, 25.0),
    ("XMR", "privacy", _D(2019, 3, 15), 50.0, 0.9, 4.0),
    ("ATOM", "l1", _D(2019, 4, 29), 5.0, 1.0, 8.0),
    ("MATIC", "l2", _D(2019, 4, 26), 0.02, 1.1, 12.0),
    ("ALGO", "l1", _D(2019, 6, 22), 1.0, 1.0, 6.0),
    ("CHZ", "gaming", _D(2019, 9, 6), 0.01, 1.1, 6.0),
    ("BCH", "store", _D(2019, 11, 28), 220.0, 0.9, 10.0),
    ("XTZ", "l1", _D(2019, 9, 24), 1.1, 1.0, 4.0),
    ("VET", "infra", _D(2018, 7, 25), 0.01, 1.0, 6.0),
    ("THETA", "infra", _D(2019, 2, 27), 0.1, 1.1, 5.0),
    ("FTT", "exchange", _D(2019, 7, 30), 1.2, 1.1, 5.0),
    ("SOL", "l1", _D(2020, 8, 11), 3.0, 1.1, 40.0),
    ("DOT", "l1", _D(2020, 8, 18), 4.5, 1.0, 15.0),
    ("AVAX", "l1", _D(2020, 9, 22), 4.0, 1.1, 12.0),
    ("NEAR", "l1", _D(2020, 10, 14), 1.5, 1.1, 8.0),
    ("AAVE", "defi", _D(2020, 10, 15), 50.0, 1.0, 8.0),
    ("UNI", "defi", _D(2020, 9, 17), 3.0, 1.0, 10.0),
    ("SUSHI", "defi", _D(2020, 9, 1), 2.0, 1.2, 5.0),
    ("CRV", "defi", _D(2020, 8, 15), 3.0, 1.2, 6.0),
    ("COMP", "defi", _D(2020, 6, 25), 200.0, 1.1, 4.0),
    ("MKR", "defi", _D(2020, 7, 1), 450.0, 1.0, 3.0),
    ("SNX", "defi", _D(2020, 7, 20), 3.0, 1.2, 4.0),
    ("YFI", "defi", _D(2020, 8, 10), 9000.0, 1.2, 3.0),
    ("1INCH", "defi", _D(2020, 12, 25), 1.5, 1.2, 3.0),
    ("EGLD", "l1", _D(2020, 9, 3), 20.0, 1.1, 3.0),
    ("FIL", "storage", _D(2020, 10, 15), 30.0, 1.1, 8.0),
    ("AR", "storage", _D(2021, 5, 14), 15.0, 1.2, 3.0),
    ("GRT", "infra", _D(2020, 12, 17), 0.5, 1.2, 5.0),
    ("SAND", "gaming", _D(2020, 8, 14), 0.05, 1.2, 8.0),
    ("MANA", "gaming", _D(2020, 8, 6), 0.06, 1.2, 7.0),
    ("AXS", "gaming", _D(2020, 11, 4), 0.6, 1.3, 6.0),
    ("ENJ", "gaming", _D(2019, 1, 30), 0.1, 1.2, 3.0),
    ("GALA", "gaming", _D(2021, 9, 13), 0.05, 1.3, 5.0),
    ("APE", "gaming", _D(2022, 3, 17), 8.0, 1.2, 8.0),
    ("SHIB", "meme", _D(2021, 5, 10), 0.00001, 1.3, 12.0),
    ("PEPE", "meme", _D(2023, 5, 5), 0.0000015, 1.4, 10.0),
    ("FLOKI", "meme", _D(2023, 5, 4), 0.00003, 1.4, 4.0),
    ("BONK", "meme", _D(2023, 12, 15), 0.00001, 1.4, 5.0),
    ("WIF", "meme", _D(2024, 3, 5), 2.0, 1.4, 6.0),
    ("ARB", "l2", _D(2023, 3, 23), 1.2, 1.1, 10.0),
    ("OP", "l2", _D(2022, 6, 1), 1.0, 1.1, 8.0),
    ("IMX", "l2", _D(2022, 6, 17), 0.7, 1.2, 4.0),
    ("STRK", "l2", _D(2024, 2, 20), 2.0, 1.2, 5.0),
    ("APT", "l1", _D(2022, 10, 19), 8.0, 1.1, 8.0),
    ("SUI", "l1", _D(2023, 5, 3), 1.2, 1.2, 10.0),
    ("SEI", "l1", _D(2023, 8, 15), 0.15, 1.2, 5.0),
    ("INJ", "defi", _D(2020, 10, 21), 3.0, 1.2, 6.0),
    ("TIA", "infra", _D(2023, 10, 31), 2.5, 1.2, 6.0),
    ("JUP", "defi", _D(2024, 1, 31), 0.5, 1.2, 5.0),
    ("PYTH", "oracle", _D(2024, 2, 2), 0.4, 1.2, 4.0),
    ("LDO", "defi", _D(2022, 5, 5), 1.5, 1.2, 5.0),
    ("RUNE", "defi", _D(2019, 7, 23), 0.05, 1.2, 4.0),
    ("KAVA", "defi", _D(2019, 10, 25), 0.5, 1.1, 2.0),
    ("HBAR", "l1", _D(2019, 9, 29), 0.04, 1.0, 5.0),
    ("ICP", "l1", _D(2021, 5, 11), 400.0, 1.2, 6.0),
    ("QNT", "infra", _D(2021, 7, 29), 60.0, 1.1, 2.0),
    ("STX", "l2", _D(2021, 1, 6), 0.4, 1.2, 3.0),
    ("ZEC", "privacy", _D(2019, 3, 21), 50.0, 1.0, 3.0),
    ("DASH", "privacy", _D(2019, 3, 28), 90.0, 1.0, 2.0),
    ("NEO", "l1", _D(2017, 11, 20), 30.0, 1.0, 3.0),
    ("IOTA", "infra", _D(2018, 5, 31), 1.5, 1.0, 2.0),
    ("ZIL", "l1", _D(2019, 1, 10), 0.02, 1.1, 2.0),
    ("ONE", "l1", _D(2019, 6, 1), 0.02, 1.2, 2.0),
    ("FET", "ai", _D(2019, 2, 28), 0.3, 1.3, 6.0),
    ("RNDR", "ai", _D(2023, 7, 11), 1.8, 1.3, 6.0),
    ("TAO", "ai", _D(2024, 4, 11), 450.0, 1.3, 4.0),
    ("WLD", "ai", _D(2023, 7, 24), 2.0, 1.3, 5.0),
    ("ENA", "defi", _D(2024, 4, 2), 1.0, 1.3, 6.0),
    # defect carriers (see DEFECTS)
    ("XEM", "payments", _D(2018, 6, 1), 0.2, 1.0, 2.0),
    ("WAVES", "l1", _D(2019, 1, 1), 2.0, 1.1, 3.0),
    ("XVG", "privacy", _D(2019, 5, 1), 0.01, 1.2, 2.0),
    ("LUNA", "l1", _D(2020, 8, 21), 0.5, 1.3, 12.0),
    ("SRM", "defi", _D(2020, 8, 11), 1.0, 1.3, 3.0),
    # a listing too young for the scanners' minimum listing age
    ("NEWCO", "ai", _D(2026, 11, 5), 1.0, 1.4, 4.0),
    # an illiquid pair the traded-value filter drops
    ("DUST", "gaming", _D(2020, 1, 15), 0.02, 1.2, 0.0005),
)
STABLECOINS = ("USDC", "FDUSD", "TUSD", "DAI")
# Non-USDT pairs, for scanners to exclude by quote currency: (symbol, base, quote, price)
CROSSES = (("ETHBTC", "ETH", "BTC", 0.07), ("BNBBTC", "BNB", "BTC", 0.0003), ("SOLETH", "SOL", "ETH", 0.01), ("BTCEUR", "BTC", "EUR", 9000.0))
DELISTED = {"LUNA": _D(2022, 5, 12), "SRM": _D(2022, 11, 20)}
HALTED = {"WAVES": _D(2026, 8, 15)}


@dataclass(frozen=True)
class Defect:
    symbol: str
    kind: str
    start: dt.date
    end: dt.date
    what: str


DEFECTS: tuple[Defect, ...] = (
    Defect("ADAUSDT", "contamination", _D(2021, 9, 1), _D(2021, 9, 4),
           "4 bars at another asset's price level (x1000, about +100,000%); isolable, quarantined"),
    Defect("XVGUSDT", "contamination_unisolated", _D(2026, 10, 1), HORIZON,
           "the series jumps x1000 and never comes back: cannot be isolated, the symbol is toxic"),
    Defect("LINKUSDT", "bad_wick_low", _D(2020, 3, 12), _D(2020, 3, 12), "low printed at close / 1000"),
    Defect("FTTUSDT", "bad_wick_high", _D(2022, 11, 8), _D(2022, 11, 8), "high printed at 50 x close"),
    Defect("EOSUSDT", "ohlc_order", _D(2023, 5, 10), _D(2023, 5, 10), "high and low swapped (broken OHLC order)"),
    Defect("XEMUSDT", "zero_volume_stall", _D(2024, 2, 1), _D(2024, 2, 10),
           "10 flat bars (open=high=low=close) with zero volume"),
    Defect("DOTUSDT", "healable_gap", _D(2025, 3, 1), _D(2025, 3, 8),
           f"8 days missing from any request wider than {BULK_WINDOW_DAYS} days; a narrow re-fetch serves them"),
    Defect("ATOMUSDT", "permanent_gap", _D(2024, 6, 10), _D(2024, 6, 19), "10 days the source never serves"),
    Defect("WAVESUSDT", "halted", HALTED["WAVES"], HORIZON, "stops trading; the market is listed as HALT"),
    Defect("LUNAUSDT", "delisted", DELISTED["LUNA"], HORIZON, "delisted (status BREAK) after a collapse"),
    Defect("SRMUSDT", "delisted", DELISTED["SRM"], HORIZON, "delisted (status BREAK)"),
    Defect("*", "exchange_outage", _D(2024, 11, 11), _D(2024, 11, 11), "one day missing on every symbol"),
    Defect("DOGEUSDT", "genuine_move", _D(2021, 1, 28), _D(2021, 1, 28), "a genuine +392% close: must be kept"),
    Defect("*", "genuine_crash", _D(2020, 3, 12), _D(2020, 3, 12), "a market-wide -40% day: must be kept"),
)
