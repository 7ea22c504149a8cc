"""`sim`: the embedded default source, a deterministic simulated exchange (`SIM:`).

Every series is generated from `data.sim.seed` over a fixed calendar (GENESIS..HORIZON), so
the bar for a (symbol, day) is the same whatever window is asked for: incremental and full
fetches agree. Returns come from a market factor, sector factors and an idiosyncratic part,
each a GARCH(1,1) process with Student-t innovations (fat tails and volatility clustering);
volume follows a persistent log process that rises with |return|.

Each symbol draws from its own random stream, so a symbol's bars depend only on the seed and
its place in the universe: they are generated lazily, a block of BLOCK_SYMBOLS symbols at a
time (one vectorised GARCH recursion per block), when one of them is first asked for. A
process that asks for a few symbols (repair) generates a block, not the universe, and memory
stays at a few blocks whatever `data.sim.extra_symbols` is.

Real-world defects are injected at fixed, documented places (`DEFECTS`, listed in the README)
so that every quality gate has work on a fresh machine.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd

from ..contracts import DAY_MS, ContractError, SymbolId, date_to_ms, ms_to_date
from ..parallel import iter_ordered
from ..params_base import Section, check
from .base import Market, SourceError
from .sim_universe import (  # noqa: F401  (re-exported: the universe is part of the sim's interface)
    BULK_WINDOW_DAYS,
    CROSSES,
    DEFECTS,
    DELISTED,
    EXCHANGE,
    GENESIS,
    HALTED,
    HORIZON,
    STABLECOINS,
    UNIVERSE,
    Defect,
)

_D = dt.date
N_DAYS = (HORIZON - GENESIS).days + 1  # the calendar: one bar slot per day
CALENDAR_MS = date_to_ms(GENESIS) + np.arange(N_DAYS, dtype="int64") * DAY_MS
# Symbols whose idiosyncratic paths are drawn together: one vectorised GARCH recursion per
# block instead of one per symbol, and a block's arrays (~25 MB) instead of the whole universe's.
BLOCK_SYMBOLS = 256
CACHED_BLOCKS = 2  # ingest asks in name order: the base pairs' block is needed again at the end
VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


def _day(day: dt.date) -> int:
    return (day - GENESIS).days


def _student_t(rng: np.random.Generator, n: int, k: int, nu: float) -> np.ndarray:
    """Unit-variance Student-t draws, shape (n, k)."""
    return rng.standard_t(nu, size=(n, k)) / np.sqrt(nu / (nu - 2.0))


def _garch(z: np.ndarray, *, omega: float, alpha: float, beta: float) -> np.ndarray:
    """GARCH(1,1) paths driven by the unit-variance innovations z (days x paths).

    Each path is computed elementwise (exact IEEE operations), so a path's values do not
    depend on which other paths share the array.
    """
    n, k = z.shape
    out = np.empty((n, k))
    var = np.full(k, omega / (1.0 - alpha - beta))
    sq, term = np.empty(k), np.empty(k)
    for t in range(n):
        row = out[t]
        np.multiply(np.sqrt(var, out=sq), z[t], out=row)
        # var = omega + alpha * row ** 2 + beta * var, in that order, without temporaries
        np.multiply(np.square(row, out=sq), alpha, out=sq)
        np.add(sq, omega, out=sq)
        np.add(sq, np.multiply(var, beta, out=term), out=var)
    return out


@dataclass(frozen=True)
class _Series:
    """A symbol's bars as the exchange would serve them: open times and (5, rows) values."""

    timestamp: np.ndarray
    values: np.ndarray

    def rows(self, mask: np.ndarray | slice) -> pd.DataFrame:
        return pd.DataFrame({"timestamp": self.timestamp[mask], **{c: self.values[i][mask] for i, c in enumerate(VALUE_COLUMNS)}})


MAX_EXTRA_SYMBOLS = 20_000


@dataclass(frozen=True)
class SimConfig(Section):
    """The `data.sim` params section."""

    SECTION: ClassVar[str] = "data.sim"

    seed: int = 7
    extra_symbols: int = 0  # synthetic extra USDT pairs (Q00000USDT...) for scale runs

    def __post_init__(self) -> None:
        check(0 <= self.extra_symbols <= MAX_EXTRA_SYMBOLS,
              f"{self.SECTION}.extra_symbols must be in [0, {MAX_EXTRA_SYMBOLS}], got {self.extra_symbols}")


class SimExchange:
    """The simulated exchange. Cheap to construct; a symbol's block of the universe is
    generated when the symbol is first asked for (and only the last CACHED_BLOCKS are kept)."""

    name = "sim"
    exchange = EXCHANGE

    def __init__(self, seed: int = SimConfig.seed, extra_symbols: int = SimConfig.extra_symbols, processes: int = 1):
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ContractError(f"data.sim.seed must be an integer, got {seed!r}")
        if not isinstance(extra_symbols, int) or isinstance(extra_symbols, bool) or not 0 <= extra_symbols <= MAX_EXTRA_SYMBOLS:
            raise ContractError(f"data.sim.extra_symbols must be an integer in [0, {MAX_EXTRA_SYMBOLS}], got {extra_symbols!r}")
        self.seed = seed
        self.extra_symbols = extra_symbols
        self.processes = processes  # processes generating the blocks list_markets needs (0 = one per core)
        self.requests = 0  # source calls, so tests can prove a run made none
        self.blocks_generated = 0  # so tests can prove a narrow use generates only what it needs
        self._blocks: OrderedDict[int, dict[str, _Series]] = OrderedDict()
        self._lock = threading.RLock()

    def __getstate__(self) -> dict:
        # a worker process gets the parameters and the (small) universe, not the cached blocks
        state = {k: v for k, v in self.__dict__.items() if k not in ("_blocks", "_lock")}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._blocks, self._lock = OrderedDict(), threading.RLock()

    # -- universe -------------------------------------------------------------------------

    @cached_property
    def _specs(self) -> dict[str, dict]:
        """Every symbol's listing facts, in generation order (its column: `_columns`)."""
        specs: dict[str, dict] = {}
        for base, sector, listed, price, vol, liq in UNIVERSE:
            last = DELISTED.get(base, HALTED.get(base, HORIZON))
            specs[f"{base}USDT"] = dict(base=base, quote="USDT", sector=sector, listed=listed, last=last,
                                        price=price, vol=vol, liq=liq)
        for i, stable in enumerate(STABLECOINS):
            specs[f"{stable}USDT"] = dict(base=stable, quote="USDT", sector="stable", listed=_D(2019, 1, 1) + dt.timedelta(days=90 * i),
                                          last=HORIZON, price=1.0, vol=0.0, liq=80.0)
        for sym, base, quote, price in CROSSES:
            specs[sym] = dict(base=base, quote=quote, sector="cross", listed=_D(2018, 1, 1), last=HORIZON,
                              price=price, vol=0.8, liq=5.0)
        # Synthetic extra USDT pairs for scale tests and benchmarks (`data.sim.extra_symbols`).
        sectors = sorted({u[1] for u in UNIVERSE})
        for i in range(self.extra_symbols):
            rng = np.random.default_rng([self.seed, 2, i])
            listed = GENESIS + dt.timedelta(days=int(rng.integers(30, 3000)))
            specs[f"Q{i:05d}USDT"] = dict(base=f"Q{i:05d}", quote="USDT", sector=sectors[int(rng.integers(len(sectors)))],
                                          listed=listed, last=HORIZON, price=float(10 ** rng.uniform(-4, 3)),
                                          vol=float(rng.uniform(0.7, 1.4)), liq=float(10 ** rng.uniform(0, 2)))
        return specs

    @cached_property
    def _columns(self) -> dict[str, int]:
        """Symbol -> its place in the universe: it seeds the symbol's random stream."""
        return {sym: j for j, sym in enumerate(self._specs)}

    @cached_property
    def _factors(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The market factor and each sector's factor (log returns over the calendar)."""
        sectors = sorted({s["sector"] for s in self._specs.values()})
        rng = np.random.default_rng([self.seed, 0])
        market = _garch(_student_t(rng, N_DAYS, 1, 4.0), omega=1.25e-5, alpha=0.10, beta=0.88)[:, 0] + 0.0005
        sector_f = _garch(_student_t(rng, N_DAYS, len(sectors), 5.0), omega=4.5e-6, alpha=0.08, beta=0.90)
        market[_day(_D(2020, 3, 12))] = np.log(0.62)  # the documented market-wide crash day
        return market, {s: sector_f[:, k] for k, s in enumerate(sectors)}

    def _series(self, sym: str) -> _Series:
        """All bars the exchange would ever serve for `sym`, with the defects injected."""
        b = self._columns[sym] // BLOCK_SYMBOLS
        with self._lock:
            if b in self._blocks:
                self._blocks.move_to_end(b)
            else:
                self._blocks[b] = self._generate_block(b)
                self.blocks_generated += 1
                while len(self._blocks) > CACHED_BLOCKS:
                    self._blocks.popitem(last=False)
            return self._blocks[b][sym]

    def _generate_block(self, b: int) -> dict[str, _Series]:
        names = list(self._specs)[b * BLOCK_SYMBOLS : (b + 1) * BLOCK_SYMBOLS]
        first = b * BLOCK_SYMBOLS
        market, sector_f = self._factors
        # each symbol draws from its own stream, so adding a symbol never changes another one
        rngs = [np.random.default_rng([self.seed, 1, first + i]) for i in range(len(names))]
        idio = _garch(np.column_stack([_student_t(r, N_DAYS, 1, 3.5)[:, 0] for r in rngs]), omega=1.9e-5, alpha=0.09, beta=0.88)
        out = {}
        for i, sym in enumerate(names):
            spec = self._specs[sym]
            ts, values = _symbol_bars(sym, spec, rngs[i], idio[:, i], market, sector_f[spec["sector"]])
            out[sym] = _inject_defects(sym, ts, values)
        return out

    # -- Source interface ------------------------------------------------------------------

    def _symbol(self, symbol: SymbolId | str) -> str:
        sid = symbol if isinstance(symbol, SymbolId) else SymbolId.parse(symbol)
        if sid.exchange != EXCHANGE or sid.symbol not in self._specs:
            raise SourceError("unknown symbol on the simulated exchange (code -1121)", symbol=sid)
        return sid.symbol

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def list_markets(self, as_of: dt.date) -> list[Market]:
        self._count()
        listed = [sym for sym, spec in self._specs.items() if spec["listed"] <= as_of]
        self._factors  # noqa: B018  (computed once, before the workers start: they inherit it)
        blocks = sorted({self._columns[sym] // BLOCK_SYMBOLS for sym in listed})
        trading: dict[str, tuple[dt.date, float, float]] = {}
        for facts in iter_ordered(_block_trading, [(b, as_of) for b in blocks], self.processes, self):
            trading.update(facts)
        markets = []
        for sym in listed:
            spec = self._specs[sym]
            status = "TRADING"
            if spec["base"] in DELISTED and DELISTED[spec["base"]] <= as_of:
                status = "BREAK"
            elif spec["base"] in HALTED and HALTED[spec["base"]] <= as_of:
                status = "HALT"
            last_day, value_24h, value_30d = trading[sym]
            markets.append(
                Market(
                    symbol=SymbolId.of(EXCHANGE, sym),
                    base=spec["base"],
                    quote=spec["quote"],
                    status=status,
                    listed_on=spec["listed"],
                    last_trade_on=last_day,
                    traded_value_24h=value_24h,
                    traded_value_30d=value_30d,
                    extra={"sector": spec["sector"]},
                )
            )
        return markets

    def _trading(self, block: int, as_of: dt.date) -> dict[str, tuple[dt.date, float, float]]:
        """Symbol -> (last trade day, last day's traded value, median of the last 30 days') for
        the symbols of a block listed by `as_of`."""
        out = {}
        last_ms = date_to_ms(as_of)
        for sym in list(self._specs)[block * BLOCK_SYMBOLS : (block + 1) * BLOCK_SYMBOLS]:
            if self._specs[sym]["listed"] > as_of:
                continue
            series = self._series(sym)
            n = int(np.searchsorted(series.timestamp, last_ms, side="right"))  # bars up to as_of
            tail = slice(max(n - 30, 0), n)
            value = pd.Series(series.values[3][tail] * series.values[4][tail])
            out[sym] = (ms_to_date(int(series.timestamp[n - 1])), float(value.iloc[-1]), float(value.median()))
        return out

    def fetch_bars(self, symbol: SymbolId, start: dt.date, end: dt.date) -> pd.DataFrame:
        self._count()
        sym = self._symbol(symbol)
        series = self._series(sym)
        if end < start:
            return series.rows(slice(0, 0))
        ts = series.timestamp
        window = (ts >= date_to_ms(start)) & (ts <= date_to_ms(end))
        if (end - start).days + 1 > BULK_WINDOW_DAYS:
            for d in DEFECTS:
                if d.kind == "healable_gap" and d.symbol == sym:
                    window &= (ts < date_to_ms(d.start)) | (ts > date_to_ms(d.end))
        return series.rows(window)


def _block_trading(sim: SimExchange, item: tuple[int, dt.date]) -> dict[str, tuple[dt.date, float, float]]:
    return sim._trading(*item)  # in a worker process: one block generated and summarised


def _symbol_bars(sym: str, spec: dict, rng: np.random.Generator, idio: np.ndarray, market: np.ndarray, sector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A symbol's open times and (5, rows) values from listing to last trade, before defects.

    `rng` is the symbol's own stream, already past its idiosyncratic innovations.
    """
    n = N_DAYS
    if spec["sector"] == "stable":
        # pegged: an AR(1) deviation from 1.0
        dev = np.zeros(n)
        shocks = rng.normal(0, 0.0006, n)
        for t in range(1, n):
            dev[t] = 0.7 * dev[t - 1] + shocks[t]
        logret = np.diff(np.log1p(dev), prepend=0.0)
    else:
        beta_m = 0.8 + 0.5 * rng.random()
        beta_s = 0.6 + 0.6 * rng.random()
        logret = beta_m * market + beta_s * sector + spec["vol"] * idio
        logret = np.clip(logret, -0.9, 1.2)  # genuine moves stay below the toxic threshold
    if sym == "DOGEUSDT":
        logret[_day(_D(2021, 1, 28))] = np.log(1 + 3.92)
    i0, i1 = _day(spec["listed"]), _day(spec["last"])
    lr = logret[i0 : i1 + 1].copy()
    lr[0] = 0.0
    close = spec["price"] * np.exp(np.cumsum(lr))
    open_ = np.r_[spec["price"], close[:-1]] * np.exp(rng.normal(0, 0.002, len(lr)))
    day_vol = np.abs(lr) + 0.01 + 0.02 * spec["vol"]
    # genuine wicks stay within a factor 1.65 of the body: far from the bad-print gates
    high = np.maximum(open_, close) * np.exp(np.minimum(np.abs(rng.normal(0, 0.5, len(lr))) * day_vol, 0.5))
    low = np.minimum(open_, close) * np.exp(-np.minimum(np.abs(rng.normal(0, 0.5, len(lr))) * day_vol, 0.5))
    level = np.cumsum(rng.normal(0, 0.05, len(lr)))
    level = level - 0.02 * np.r_[0.0, np.cumsum(level)[:-1]] / max(len(lr), 1)
    traded_value = spec["liq"] * 1e6 * np.exp(0.5 * level + 4.0 * np.abs(lr))
    volume = traded_value / close
    values = np.stack([open_, high, low, close, volume])
    served = ~np.isnan(close)  # a day without a close is no bar
    return CALENDAR_MS[i0 : i1 + 1][served], values[:, served]


def _inject_defects(sym: str, ts: np.ndarray, values: np.ndarray) -> _Series:
    """`values` (open, high, low, close, volume rows) with the DEFECTS of `sym` applied."""
    o, h, l, c, v = range(5)
    for d in DEFECTS:
        if d.symbol not in (sym, "*"):
            continue
        in_range = (ts >= date_to_ms(d.start)) & (ts <= date_to_ms(d.end))
        if d.kind in ("contamination", "contamination_unisolated"):
            values[:4, in_range] *= 1000.0
        elif d.kind == "bad_wick_low":
            values[l, in_range] = values[c, in_range] / 1000.0
        elif d.kind == "bad_wick_high":
            values[h, in_range] = values[c, in_range] * 50.0
        elif d.kind == "ohlc_order":
            values[h, in_range], values[l, in_range] = values[l, in_range], values[h, in_range]
        elif d.kind == "zero_volume_stall":
            idx = np.flatnonzero(in_range)
            if len(idx):
                values[:4, in_range] = values[c, idx[0] - 1]
                values[v, in_range] = 0.0
        elif d.kind in ("permanent_gap", "exchange_outage"):
            ts, values = ts[~in_range], values[:, ~in_range]
    return _Series(ts, values)


def from_params(data) -> SimExchange:
    """The source of `data.source: sim` from the typed `data` section."""
    return SimExchange(seed=data.sim.seed, extra_symbols=data.sim.extra_symbols, processes=data.processes)


__all__ = ["SimExchange", "SimConfig", "DEFECTS", "Defect", "from_params", "EXCHANGE", "DAY_MS"]
