"""Strategy atoms: the building blocks the optimizer weights (issue 5, item 5).

An atom is (symbol, logic, direction). Its return stream is what one unit of capital earns
by following the logic on that symbol; its position is the physical exposure (in [-1, 1])
that unit of capital holds in the symbol on each day. Logics:

- `long`: always +1; earns r.
- `short`: always -1, as a synthetic long asset earning -clip(r, upper=1): a short can lose at
  most 100 % in one day (the position is closed out when the price more than doubles).
- `trend`: in the market while the price index is above (long side) or below (short side)
  its `trend_lookback`-day simple moving average.
- `momentum`: in the market while the `momentum_lookback`-day return is positive (long
  side) or negative (short side).

No look-ahead: `positions.loc[d]` is the exposure held over day d, decided from data up to
and including day d - 1. So an atom's return on day d is positions[d] times that day's
(side-adjusted) return, and a change to day d's return can move positions only from d + 1.
`positions` has one more row than `returns`: the day after the last data day, i.e. the
exposure to hold next, which is what today's portfolio trades into.

The price index behind trend and momentum is the compounded return series with missing
days treated as unchanged prices (the signal needs a level; the return streams themselves
keep NaN where the symbol did not trade).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quantlake.alpha.returns import to_day
from quantlake.alpha.sections import FIXED_SIDE as _FIXED_SIDE
from quantlake.alpha.sections import LOGICS, SIDES, SynthesisParams  # noqa: F401 (re-exported)
from quantlake.contracts import ContractError

ATOM_ID_SEPARATOR = "|"


@dataclass(frozen=True, order=True)
class Atom:
    symbol: str
    logic: str
    direction: str

    def __post_init__(self) -> None:
        if self.logic not in LOGICS:
            raise ContractError(f"atom {self.symbol}: unknown logic {self.logic!r} (known: {list(LOGICS)})")
        if self.direction not in SIDES:
            raise ContractError(f"atom {self.symbol}: direction must be one of {list(SIDES)}, got {self.direction!r}")
        fixed = _FIXED_SIDE.get(self.logic)
        if fixed is not None and self.direction != fixed:
            raise ContractError(f"atom {self.symbol}: logic {self.logic!r} has direction {fixed!r}, not {self.direction!r}")

    @property
    def id(self) -> str:
        """Stable text id, e.g. 'BINANCE:BTCUSDT|trend|long' (column name of the atom streams)."""
        return ATOM_ID_SEPARATOR.join((self.symbol, self.logic, self.direction))

    @classmethod
    def parse(cls, atom_id: str) -> "Atom":
        parts = str(atom_id).split(ATOM_ID_SEPARATOR)
        if len(parts) != 3:
            raise ContractError(f"invalid atom id {atom_id!r}: expected SYMBOL|logic|direction")
        return cls(*parts)


def atoms_for(params: SynthesisParams, symbol: str) -> list[Atom]:
    """The atoms `params` builds for one symbol."""
    out = []
    for logic in params.logics:
        sides = (_FIXED_SIDE[logic],) if logic in _FIXED_SIDE else params.directions
        out.extend(Atom(symbol, logic, side) for side in sides)
    return out


@dataclass(frozen=True)
class AtomSet:
    atoms: tuple[Atom, ...]
    returns: pd.DataFrame  # date x atom id: the atom return streams (NaN where the symbol did not trade)
    positions: pd.DataFrame  # date x atom id: exposure held over that day; one extra final day

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.atoms]

    @property
    def symbols(self) -> list[str]:
        return list(dict.fromkeys(a.symbol for a in self.atoms))

    @property
    def symbol_of(self) -> pd.Series:
        """atom id -> its symbol."""
        return pd.Series([a.symbol for a in self.atoms], index=self.ids, dtype=object)

    def to_physical(self, atom_weights: pd.Series, date: Any) -> pd.Series:
        """Net exposure per symbol held over `date`: sum over atoms of weight x position."""
        unknown = sorted(set(map(str, atom_weights.index)) - set(self.ids))
        if unknown:
            raise ContractError(f"atom weights name atoms that are not in this atom set: {unknown}")
        day = to_day(date)
        if day not in self.positions.index:
            span = f"{self.positions.index[0].date()}..{self.positions.index[-1].date()}" if len(self.positions) else "nothing"
            raise ContractError(f"no atom positions for {day.date()} (positions cover {span})")
        w = atom_weights.reindex(self.ids).fillna(0.0).to_numpy("float64")
        exposure = w * self.positions.to_numpy("float64")[self.positions.index.get_loc(day)]  # columns are the ids
        net = _sum_by_symbol([a.symbol for a in self.atoms], exposure.tolist())
        return pd.Series([net[s] + 0.0 for s in self.symbols], index=self.symbols, dtype="float64", name="weight")


def _sum_by_symbol(symbols: list[str], values: list[float]) -> dict[str, float]:
    """symbol -> sum of its values, summed as `Series.groupby(...).sum()` does (Kahan-compensated).

    A handful of atoms per rebalance: a plain loop is far cheaper than a pandas groupby, and the
    same compensated sum keeps the weights bit-identical to it (tests/test_synthesis.py).
    """
    total: dict[str, float] = {}
    carry: dict[str, float] = {}
    for sym, x in zip(symbols, values):
        s, c = total.get(sym, 0.0), carry.get(sym, 0.0)
        y = x - c
        t = s + y
        c = t - s - y
        carry[sym] = 0.0 if c != c else c  # an infinite sum leaves no compensation (NaN), as in pandas
        total[sym] = t
    return total


def synthesize(returns: pd.DataFrame, symbols: list[str], params: SynthesisParams) -> AtomSet:
    """Atom return streams and positions for `symbols` (columns of `returns`) under `params`."""
    missing = [s for s in symbols if s not in returns.columns]
    if missing:
        raise ContractError(f"synthesize: symbol(s) {missing} are not columns of the returns matrix")
    atoms = tuple(a for s in symbols for a in atoms_for(params, s))
    ids = [a.id for a in atoms]
    index = returns.index
    next_day = pd.DatetimeIndex([index[-1] + pd.Timedelta(days=1)]) if len(index) else index
    ext_index = pd.DatetimeIndex(index.append(next_day), name=index.name)
    r = returns.loc[:, list(symbols)].to_numpy("float64")
    column = {s: j for j, s in enumerate(symbols)}
    decisions = _decisions(r, params)  # taken at each day's close from data up to that day
    positions = np.zeros((len(ext_index), len(atoms)))
    for k, atom in enumerate(atoms):
        positions[:, k] = _held_position(atom, decisions.get(atom.logic), column[atom.symbol], len(index))
    ret = r[:, [column[a.symbol] for a in atoms]]
    held = positions[: len(index)]
    # a negative exposure earns -min(r, 1): the short side loses at most 100 % a day
    streams = held * np.where(held < 0, np.minimum(ret, 1.0), ret) + 0.0  # + 0.0 turns -0.0 into 0.0
    return AtomSet(
        atoms,
        pd.DataFrame(streams, index=index, columns=ids, dtype="float64"),
        pd.DataFrame(positions, index=ext_index, columns=ids, dtype="float64"),
    )


class AtomBank:
    """`synthesize` on a whole panel, per symbol on first use, read back at any date.

    Synthesis is causal and column by column: an atom's stream on day d reads the returns up to
    d, its position on day d the returns up to d - 1, and a symbol's atoms read only its own
    column. So the atoms of any symbols synthesized on the panel truncated at a day T are the
    rows <= T of the whole panel's atoms (positions: those rows and the next one), bit for bit
    (tests/test_synthesis.py checks it at every date). The walk-forward reads every
    rebalance's atoms from one bank instead of synthesizing the whole history again each time.
    """

    def __init__(self, returns: pd.DataFrame, params: SynthesisParams) -> None:
        self.returns = returns
        self.params = params
        # symbol -> (its atoms, streams: days x atoms, positions: days + 1 x atoms)
        self._made: dict[str, tuple[tuple[Atom, ...], np.ndarray, np.ndarray]] = {}

    def arrays(self, symbols: list[str], rows: slice = slice(None)) -> tuple[tuple[Atom, ...], np.ndarray, np.ndarray]:
        """(atoms, streams[rows], positions[rows]) of `symbols` in order, as `synthesize` lays them out."""
        new = [s for s in dict.fromkeys(symbols) if s not in self._made]
        if new:  # one vectorised pass for every symbol not seen yet
            made = synthesize(self.returns, new, self.params)
            streams, positions = made.returns.to_numpy(), made.positions.to_numpy()
            start = 0
            for sym in new:
                count = len(atoms_for(self.params, sym))
                cols = slice(start, start + count)
                self._made[sym] = (made.atoms[cols], streams[:, cols], positions[:, cols])
                start += count
        parts = [self._made[s] for s in symbols]
        atoms = tuple(a for part in parts for a in part[0])
        if not parts:
            days = len(range(*rows.indices(len(self.returns.index) + 1)))
            return atoms, np.zeros((days, 0)), np.zeros((days, 0))
        return atoms, np.concatenate([p[1][rows] for p in parts], axis=1), np.concatenate([p[2][rows] for p in parts], axis=1)

    def atom_set(self, symbols: list[str], as_of: pd.Timestamp) -> AtomSet:
        """`synthesize(returns.loc[:as_of], symbols, params)`, read from the bank."""
        index = self.returns.index
        end = int(index.searchsorted(as_of, side="right"))
        if end == 0 or index[end - 1] != as_of:
            raise ContractError(f"atom bank: {pd.Timestamp(as_of).date()} is not a day of the panel")
        atoms, streams, positions = self.arrays(list(symbols), slice(0, end + 1))
        known = index[:end]
        ids = [a.id for a in atoms]
        ext_index = pd.DatetimeIndex(known.append(pd.DatetimeIndex([as_of + pd.Timedelta(days=1)])), name=index.name)
        return AtomSet(
            atoms,
            pd.DataFrame(streams[:end], index=known, columns=ids, dtype="float64"),
            pd.DataFrame(positions, index=ext_index, columns=ids, dtype="float64"),
        )


def _decisions(r: np.ndarray, params: SynthesisParams) -> dict[str, np.ndarray]:
    """logic -> day x symbol signal in {-1, 0, +1} (NaN before enough history), at each close."""
    out: dict[str, np.ndarray] = {}
    if not {"trend", "momentum"} & set(params.logics):
        return out
    started = np.maximum.accumulate(~np.isnan(r), axis=0)
    level = pd.DataFrame(np.where(started, np.cumprod(1.0 + np.nan_to_num(r, nan=0.0), axis=0), np.nan))
    if "trend" in params.logics:
        average = level.rolling(params.trend_lookback, min_periods=params.trend_lookback).mean()
        out["trend"] = np.sign((level - average).to_numpy())
    if "momentum" in params.logics:
        out["momentum"] = np.sign((level / level.shift(params.momentum_lookback) - 1.0).to_numpy())
    return out


def _held_position(atom: Atom, signal: np.ndarray | None, j: int, n_days: int) -> np.ndarray:
    """Exposure held over each of the n_days + 1 days (the last one is the day after the data)."""
    if signal is None:  # long / short: constant exposure
        return np.full(n_days + 1, 1.0 if atom.direction == "long" else -1.0)
    decided = signal[:, j]
    side = np.clip(decided, 0.0, None) if atom.direction == "long" else np.clip(decided, None, 0.0)
    # the decision at a day's close is held over the next day; nothing is held before a signal
    return np.nan_to_num(np.concatenate(([0.0], side)), nan=0.0) + 0.0
