"""Holding a portfolio between two rebalances: drift, trades, costs, gaps and delistings.

Atom weights drift with the atoms' returns; the physical exposure of each symbol
is the sum of its atoms' weight x position. On a day without a bar (a missing day, a halt, a
delisting) a symbol contributes 0 and keeps its value at its last close: from its last bar on
it is cash at its last price. When it trades again the move across the gap is booked on the
day it resumes (the returns matrix books close-to-close over the gap), so no P&L is lost and
the benchmark's equity is its price ratio. A held symbol that has no bar on the next
rebalance date (delisted, or still halted) cannot be sold in the market: its position is
closed out at its last close, i.e. it exits at its last price on its last day and the
proceeds stay in the account as cash (earning 0) until that rebalance reinvests them in the
new portfolio. The close-out is not a trade (no fee, no slippage, not in the turnover); a
haircut `backtest.delisting_haircut` x |exposure| is deducted from the new window's first
day (default 0), and the window's `closed_out` (`equal_weight_closed_out`) column records the exposure closed out. Every day, the trade is
sum |target exposure - exposure drifted from the previous close| over symbols; on a
rebalance day this is the rebalance turnover (from cash on the first day), on other days it
is nonzero only when a trend/momentum signal flips or a constant-exposure short is topped
up. Cost = trade x (fee_bps + slippage_bps) / 10^4, taken from that day's return: net =
gross - cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from quantlake.alpha.returns import DATE_INDEX_NAME
from quantlake.alpha.synthesis import Atom


@dataclass
class Book:
    """Drifting exposure of one simulated account between days (fractions of equity)."""

    exposure: np.ndarray  # per symbol of the whole panel
    closed_out: float = 0.0  # |exposure| closed out without a bar at the last rebalance

    def hold(
        self,
        atom_returns: np.ndarray,
        positions: np.ndarray,
        atom_symbol: np.ndarray,
        symbol_returns: np.ndarray,
        weights: np.ndarray,
        cost_rate: float,
        tradable: np.ndarray,
        haircut: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hold atom `weights` from the first row on; returns (net returns, trades, costs) per day.

        Positions in symbols that are not `tradable` (no bar on the rebalance date) are first
        closed out at their last price: no trade, `haircut` x |exposure| taken on the first day.
        """
        days = atom_returns.shape[0]
        # C order whatever the caller's layout: a row's dot product then sums in one order (a
        # strided row takes another BLAS kernel, which can differ in the last bit)
        a = np.ascontiguousarray(np.nan_to_num(atom_returns, nan=0.0))
        r = np.nan_to_num(symbol_returns, nan=0.0)
        w = weights.astype("float64").copy()
        net, trades, costs = np.zeros(days), np.zeros(days), np.zeros(days)
        stranded = ~tradable & (self.exposure != 0)
        self.closed_out = float(np.abs(self.exposure[stranded]).sum())
        self.exposure = np.where(stranded, 0.0, self.exposure)
        for d in range(days):
            target = np.zeros_like(self.exposure)
            np.add.at(target, atom_symbol, w * positions[d])
            trades[d] = float(np.abs(target - self.exposure).sum())
            costs[d] = trades[d] * cost_rate + (haircut * self.closed_out if d == 0 else 0.0)
            gross = float(w @ a[d])
            net[d] = max(gross - costs[d], -1.0)
            growth = 1.0 + gross
            if growth > 0:
                w = w * (1.0 + a[d]) / growth
                self.exposure = target * (1.0 + r[d]) / growth
            else:  # the account is wiped out: nothing left to hold
                w = np.zeros_like(w)
                self.exposure = np.zeros_like(self.exposure)
        return net, trades, costs


def hold_atoms(
    book: Book,
    atoms: tuple[Atom, ...],
    atom_returns: np.ndarray,
    positions: np.ndarray,
    atom_weights: pd.Series,
    symbol_returns: np.ndarray,
    column: dict[str, int],
    tradable: np.ndarray,
    costs: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`book.hold` of `atoms` with `atom_weights` over the held days.

    `atom_returns`, `positions`: the atoms' streams and positions on the held days (days x
    atoms, as `AtomBank.arrays` gives them); `column`: symbol -> its column in `symbol_returns`
    and in the book's exposure; `tradable`: per column, has a bar on the rebalance date;
    `costs`: (cost rate, delisting haircut).
    """
    atom_symbol = np.array([column[a.symbol] for a in atoms], dtype="int64")
    weights = atom_weights.reindex([a.id for a in atoms]).fillna(0.0).to_numpy("float64")
    return book.hold(atom_returns, positions, atom_symbol, symbol_returns, weights, costs[0], tradable, costs[1])


def equity_curve(net: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """1.0 on `start`, then the compounded daily net returns (one column per curve)."""
    growth = (1.0 + net).cumprod()
    origin = pd.DataFrame({c: [1.0] for c in net.columns}, index=pd.DatetimeIndex([start], name=DATE_INDEX_NAME))
    return pd.concat([origin, growth]).rename_axis(DATE_INDEX_NAME)
