"""The portfolio recipe and its walk-forward backtest (issue 5, item 7).

The recipe (`build_portfolio`) turns the data known at a date T into the portfolio to hold
from T + 1: `select_assets` on the selection's train window, `synthesize` the atoms of the
selected symbols, `optimize_weights` on the atoms' returns over the last `train_days` days,
and map atom weights back to physical net weights. `todays_portfolio` runs it once at
`as_of`; `walk_forward` runs the very same function at every rebalance date on the data
truncated at that date. When fewer atoms are selected than the caps need for a fully
invested portfolio, the caps are raised just enough (`feasible_caps`); when the optimizer
finds no portfolio for a window's data (e.g. max_sharpe while every atom loses money), the
recipe holds cash and says why (`caps["cash_because"]`, the `cash_because` window column).

Walk-forward timing. The first rebalance date is T0 = first day + warm-up - 1, the warm-up
being the longest window the recipe needs (backtest.train_days, selection.train_days, the
longest correlation lookback). Rebalances follow every `step_days` days; each portfolio is
held over the days (T, T + test_days], cut short by the next rebalance (so `step_days` must
not exceed `test_days`: there is never a day without a portfolio). The rebalance portfolios
are independent of each other, so `backtest.workers` processes compute them
(`parallel.iter_ordered`; 0 = one per core) with byte-identical results for any count.

Pools. Only a symbol with a bar on the rebalance date can be bought at its close: the
strategy's selection and the equal-weight baseline draw from the symbols with a bar on T
(`returns.bars_at`; on an exchange-wide missing day, the last day with bars), and, when a
point-in-time universe `eligible` (date x symbol, bool) is given, only from those eligible on T.

Holding, gaps and delistings: see `holding` (the book a portfolio is held in between rebalances).

Outputs. `equity` starts at 1.0 on T0 (the day before the first test day) and has one row
per held day; the metrics are computed from these columns (`returns_from_equity`), so they
can be recomputed from equity.csv. Baselines in the same run: `equal_weight` = the same
engine holding equal weights of every symbol with a bar on the rebalance date (same
rebalance dates, same costs, same pool rule); `benchmark` = buy-and-hold of the benchmark
symbol, no costs (its equity is the price ratio).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quantlake.alpha.holding import Book, equity_curve, hold_atoms
from quantlake.alpha.metrics import PERIODS_PER_YEAR, performance_metrics, returns_from_equity
from quantlake.parallel import iter_ordered
from quantlake.alpha.returns import DATE_INDEX_NAME, bars_at, to_day
from quantlake.alpha.sections import BacktestParams, OptimizationParams  # noqa: F401 (re-exported)
from quantlake.alpha.ratings import RatingsTable
from quantlake.alpha.selection import Selection, eligible_on, remember_ranking, select_assets, symbol_index
from quantlake.alpha.synthesis import AtomBank, AtomSet, SynthesisParams, synthesize
from quantlake.contracts import ContractError, QuantlakeError

BENCHMARK_QUOTES = ("USDT", "USDC", "USD", "FDUSD", "BUSD")
CURVES = ("strategy", "equal_weight", "benchmark")
_ONE_DAY = pd.Timedelta(days=1)


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class Portfolio:
    """The portfolio decided at the close of `as_of`, held from the next day."""

    as_of: pd.Timestamp
    train_start: pd.Timestamp  # first day of the optimization window
    selection: Selection
    atoms: AtomSet
    atom_weights: pd.Series  # atom id -> weight (long-only, sums to 1; empty when nothing selected)
    weights: pd.Series  # symbol -> net physical weight held over as_of + 1 day
    caps: dict  # max_weight / max_cluster_weight actually used (raised when infeasible); cash_because

    def to_dict(self) -> dict:
        """JSON-ready summary: dates, weights by symbol and by atom, caps."""
        return {
            "as_of": self.as_of.date().isoformat(),
            "train_start": self.train_start.date().isoformat(),
            "held_from": (self.as_of + _ONE_DAY).date().isoformat(),
            "selected": list(self.selection.selected),
            "weights": {s: float(w) for s, w in self.weights.items()},
            "atom_weights": {a: float(w) for a, w in self.atom_weights.items()},
            "caps": dict(self.caps),
        }


def data_known_at(frame: pd.DataFrame, as_of: Any) -> pd.DataFrame:
    """Rows dated on or before `as_of`, on a complete daily calendar (NaN rows for empty days).

    Every recipe input goes through here, so the same date arithmetic (rolling windows count
    days, not rows) holds whether a day has bars or not.
    """
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ContractError(f"expected a date x symbol frame with a DatetimeIndex, got {type(frame.index).__name__}")
    as_of = to_day(as_of)
    known = frame.loc[frame.index <= as_of]
    if len(known) == 0:
        raise ContractError(f"no data on or before {as_of.date()}")
    days = pd.date_range(known.index[0], as_of, freq="D", name=DATE_INDEX_NAME, unit="ns")
    return known.reindex(days)


def build_portfolio(
    returns: pd.DataFrame,
    traded_value: pd.DataFrame,
    as_of: pd.Timestamp,
    params: BacktestParams,
    ratings: pd.DataFrame | None = None,
    eligible: pd.DataFrame | None = None,
    bank: AtomBank | None = None,
    rankings: dict | None = None,
) -> Portfolio:
    """select -> synthesize -> optimize on data that must already end at `as_of` (`data_known_at`).

    `bank`: the atoms of a longer panel these returns are the start of (the walk-forward's);
    they are read from it instead of synthesized again, with the same result. `rankings`: the
    selection's memo for these inputs (`select_assets`).
    """
    if returns.index[-1] != as_of:
        raise ContractError(f"build_portfolio: data must end at as_of {as_of.date()}, it ends at {returns.index[-1].date()}")
    selection = select_assets(returns, traded_value, as_of, params.selection, ratings, eligible, rankings)
    if bank is None:
        atoms = synthesize(returns, selection.selected, params.synthesis)
    else:
        atoms = bank.atom_set(selection.selected, as_of)
    train_start = as_of - pd.Timedelta(days=params.train_days - 1)
    atom_weights, caps = optimize_atoms(atoms, selection.clusters, train_start, as_of, params.optimize)
    weights = atoms.to_physical(atom_weights, as_of + _ONE_DAY)
    return Portfolio(as_of, train_start, selection, atoms, atom_weights, weights, caps)


def optimize_weights(*args: Any, **kwargs: Any) -> pd.Series:
    """`optimize.optimize_weights`, imported on first use (scipy and scikit-learn are slow to
    import, and the params model imports this module)."""
    from quantlake.alpha.optimize import optimize_weights as weights_of

    return weights_of(*args, **kwargs)


def optimize_atoms(
    atoms: AtomSet, clusters: pd.Series, start: pd.Timestamp, end: pd.Timestamp, params: OptimizationParams
) -> tuple[pd.Series, dict]:
    """Atom weights from `optimize_weights` on the atom returns of [start, end], and the caps used.

    No weights (cash) with the reason under "cash_because" when the optimizer finds no
    portfolio for this window's data.

    A day on which an atom's symbol did not trade is unobserved (NaN), never a zero: the
    optimizer estimates from the observed days (`covariance.observed_covariance`). Each atom
    inherits the cluster of its symbol. When too few atoms were selected for the caps to
    allow a fully invested portfolio, the caps are raised to the smallest feasible values
    (`feasible_caps`) instead of failing the rebalance.
    """
    from quantlake.alpha.optimize import OptimizationError  # scipy + sklearn: imported when first used

    if not atoms.atoms:
        return pd.Series([], dtype="float64", name="weight"), {}
    train = atoms.returns.loc[(atoms.returns.index >= start) & (atoms.returns.index <= end)]
    cluster_of = dict(zip(clusters.index, clusters.to_numpy().tolist()))
    clusters = pd.Series([cluster_of[a.symbol] for a in atoms.atoms], index=atoms.ids, dtype=clusters.dtype)  # each atom inherits its symbol's cluster
    max_weight, max_cluster_weight = feasible_caps(
        np.unique(clusters.to_numpy(), return_counts=True)[1], params.max_weight, params.max_cluster_weight
    )
    caps = {"max_weight": max_weight, "max_cluster_weight": max_cluster_weight}
    try:
        weights = optimize_weights(
            train,
            params.method,
            clusters=clusters,
            max_weight=max_weight,
            max_cluster_weight=max_cluster_weight,
            covariance=params.covariance,
            risk_free=(1.0 + params.risk_free) ** (1.0 / PERIODS_PER_YEAR) - 1.0,  # annual -> daily
            linkage=params.linkage,
        )
    except OptimizationError as exc:
        # the settings were validated up front, so this is about the window's data (e.g. no
        # portfolio beats the risk-free rate for max_sharpe): hold cash and say why
        return pd.Series([], dtype="float64", name="weight"), {**caps, "cash_because": str(exc)}
    weights = weights.reindex(atoms.ids).astype("float64")
    values = weights.to_numpy()
    if not (np.isfinite(values).all() and (values >= -1e-12).all() and abs(values.sum() - 1.0) < 1e-9):
        raise QuantlakeError(f"optimizer {params.method!r} returned invalid weights at {end.date()}: {weights.to_dict()}")
    # Series.clip(lower=0.0), without its pandas overhead: keep what is >= 0 (so -0.0 too), else 0
    return pd.Series(np.where(values >= 0.0, values, 0.0), index=weights.index, name="weight"), caps


def feasible_caps(cluster_sizes: np.ndarray, max_weight: float, max_cluster_weight: float) -> tuple[float, float]:
    """The caps, raised just enough that sum over clusters of min(cluster cap, size x cap) >= 1.

    The asset cap is raised to 1 / number of atoms at most (equal weight); then the cluster
    cap is raised to the smallest value that lets the clusters hold the whole portfolio.
    """
    sizes = np.asarray(cluster_sizes, dtype="float64")
    mw = float(max(max_weight, 1.0 / sizes.sum()))
    room = np.sort(sizes * mw)  # what each cluster can hold under the asset cap alone
    if np.minimum(max_cluster_weight, room).sum() >= 1.0 - 1e-12:
        return mw, max_cluster_weight
    # f(c) = sum min(c, room_i) is increasing and piecewise linear; solve f(c) = 1
    for i in range(room.size):
        full = room[:i].sum()  # clusters below the cap hold their room, the others hold c
        c = (1.0 - full) / (room.size - i)
        if c <= room[i]:
            return mw, max(max_cluster_weight, float(c))
    return mw, 1.0


def todays_portfolio(
    returns: pd.DataFrame,
    traded_value: pd.DataFrame,
    as_of: Any,
    params: BacktestParams,
    ratings: pd.DataFrame | None = None,
    eligible: pd.DataFrame | None = None,
) -> Portfolio:
    """The recipe run once at `as_of` on the data known then (what select/synthesize/optimize publish)."""
    as_of = to_day(as_of)
    return build_portfolio(*recipe_inputs(returns, traded_value, as_of), as_of, params, ratings, eligible)


def recipe_inputs(returns: pd.DataFrame, traded_value: pd.DataFrame, as_of: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(returns, traded value) as known at `as_of`, on one daily calendar: the recipe's inputs."""
    as_of = to_day(as_of)
    return data_known_at(returns, as_of), _aligned(traded_value, returns).pipe(data_known_at, as_of)


# --------------------------------------------------------------------------- walk-forward


@dataclass(frozen=True)
class BacktestResult:
    equity: pd.DataFrame  # date x CURVES, 1.0 on the day before the first test day
    returns: pd.DataFrame  # date x CURVES, daily net returns (equity's day-over-day change)
    weights: pd.DataFrame  # long: date (rebalance date), symbol, weight (held from the next day)
    atom_weights: pd.DataFrame  # long: date, atom, weight
    windows: pd.DataFrame  # one row per rebalance
    trading: pd.DataFrame  # date x {strategy,equal_weight}_{trade,cost}: daily traded weight and its cost
    metrics: dict  # {strategy: {...}, equal_weight: {...}, benchmark: {...}}


def walk_forward(
    returns: pd.DataFrame,
    traded_value: pd.DataFrame,
    params: BacktestParams,
    ratings: pd.DataFrame | RatingsTable | None = None,
    eligible: pd.DataFrame | None = None,
    rankings: dict | None = None,
) -> BacktestResult:
    """Rebalance every `step_days` with `build_portfolio` on the data known at each date.

    `eligible`: optional point-in-time universe (date x symbol, bool) restricting every pool.
    `rankings`: a memo of the selection's rankings kept with these inputs (`select_assets`):
    a later walk-forward on the same inputs (a sweep's next point) ranks no date again. The
    portfolios computed by the pool bring their rankings back into it.
    """
    if returns.shape[0] == 0 or returns.shape[1] == 0:
        raise ContractError("walk_forward: the returns matrix is empty")
    import quantlake.alpha.optimize  # noqa: F401  (scipy + scikit-learn: imported once, before the pool forks)
    panel = data_known_at(returns, returns.index[-1])
    values = data_known_at(_aligned(traded_value, returns), returns.index[-1])
    panel.columns = values.columns = symbol_index(panel.columns.tolist())  # listed at every rebalance
    benchmark = resolve_benchmark(list(panel.columns), params.benchmark)
    schedule = rebalance_schedule(panel.index[0], panel.index[-1], params)
    column = {s: i for i, s in enumerate(panel.columns)}
    strategy, baseline = Book(np.zeros(len(column))), Book(np.zeros(len(column)))
    daily, trading, weight_rows, atom_rows, windows = [], [], [], [], []
    # the portfolios are independent of each other (each sees only the data known at its date)
    # synthesis is causal: one bank of atoms over the whole panel serves every rebalance
    bank = AtomBank(panel, params.synthesis)
    # the ratings are indexed once (sorted by symbol and day), not re-sorted at each rebalance
    if ratings is not None and not isinstance(ratings, RatingsTable):
        ratings = RatingsTable(ratings) if len(ratings) else None
    inputs = (panel, values, params, ratings, eligible, bank, rankings)
    # held below as they arrive, while the pool computes the next ones
    portfolios = iter_ordered(_portfolio_at, [t for t, _ in schedule], params.workers, inputs)
    ew_bank = AtomBank(panel, SynthesisParams(logics=("long",)))
    matrix = panel.to_numpy("float64")
    bench_column = column[benchmark]
    costs = (params.cost_rate, params.delisting_haircut)
    for k, ((t, end), portfolio) in enumerate(zip(schedule, portfolios)):
        if rankings is not None:  # a pool's worker ranked this date in its own memory
            remember_ranking(rankings, portfolio.selection)
        held = slice(panel.index.get_loc(t) + 1, panel.index.get_loc(end) + 1)  # the days (t, end]
        days = panel.index[held]
        symbol_returns = matrix[held]  # atoms read day d's return only on day d (their positions lag)
        tradable = bars_at(panel, values, t).to_numpy()  # has a bar on the rebalance date
        strat_net, strat_trades, strat_costs = hold_atoms(
            strategy, *bank.arrays(portfolio.selection.selected, held),
            portfolio.atom_weights, symbol_returns, column, tradable, costs,
        )
        pool = equal_weight_pool(pd.Series(tradable, index=panel.columns), t, eligible)
        ew_atoms, ew_streams, ew_positions = ew_bank.arrays(pool, held)
        ew_weights = pd.Series(1.0 / max(len(pool), 1), index=[a.id for a in ew_atoms], dtype="float64")
        ew_net, ew_trades, ew_costs = hold_atoms(
            baseline, ew_atoms, ew_streams, ew_positions, ew_weights, symbol_returns, column, tradable, costs
        )
        bench_net = np.nan_to_num(symbol_returns[:, bench_column], nan=0.0)
        daily.append(pd.DataFrame({"strategy": strat_net, "equal_weight": ew_net, "benchmark": bench_net}, index=days))
        trading.append(
            pd.DataFrame(
                {"strategy_trade": strat_trades, "strategy_cost": strat_costs,
                 "equal_weight_trade": ew_trades, "equal_weight_cost": ew_costs},
                index=days,
            )
        )
        weight_rows += [(t, s, float(w)) for s, w in portfolio.weights.items()]
        atom_rows += [(t, a, float(w)) for a, w in portfolio.atom_weights.items()]
        window_stats = performance_metrics(pd.Series(strat_net, index=days))
        windows.append(
            {
                "window": k,
                "train_start": portfolio.train_start,
                "train_end": t,
                "test_start": days[0],
                "test_end": days[-1],
                "n_selected": len(portfolio.selection.selected),
                "n_atoms": len(portfolio.atoms.atoms),
                "max_weight": portfolio.caps.get("max_weight"),
                "max_cluster_weight": portfolio.caps.get("max_cluster_weight"),
                "invested": bool(len(portfolio.atom_weights)),
                "cash_because": portfolio.caps.get("cash_because"),
                "turnover": float(strat_trades[0]),
                "closed_out": strategy.closed_out,
                "cost": float(strat_costs.sum()),
                "equal_weight_turnover": float(ew_trades[0]),
                "equal_weight_cost": float(ew_costs.sum()),
                "equal_weight_closed_out": baseline.closed_out,
                "return": window_stats["total_return"],
                "sharpe": window_stats["sharpe"],
            }
        )
    equity = equity_curve(pd.concat(daily), schedule[0][0])
    window_table = pd.DataFrame(windows)
    trades = pd.concat(trading).rename_axis(DATE_INDEX_NAME)
    metrics = {curve: performance_metrics(returns_from_equity(equity[curve])) for curve in CURVES}
    for curve, turnover in (("strategy", "turnover"), ("equal_weight", "equal_weight_turnover")):
        metrics[curve].update(_trading_stats(window_table[turnover], trades[f"{curve}_trade"], trades[f"{curve}_cost"]))
    metrics["strategy"]["n_cash_windows"] = int((~window_table["invested"]).sum())
    return BacktestResult(
        equity=equity,
        returns=pd.DataFrame({c: returns_from_equity(equity[c]) for c in CURVES}),
        weights=pd.DataFrame(weight_rows, columns=["date", "symbol", "weight"]),
        atom_weights=pd.DataFrame(atom_rows, columns=["date", "atom", "weight"]),
        windows=window_table,
        trading=trades,
        metrics=metrics,
    )


def _portfolio_at(inputs: tuple, t: pd.Timestamp) -> Portfolio:
    panel, values, params, ratings, eligible, bank, rankings = inputs
    known = slice(0, panel.index.get_loc(t) + 1)  # rows up to t (a daily calendar: data_known_at)
    return build_portfolio(panel.iloc[known], values.iloc[known], t, params, ratings, eligible, bank, rankings)


def rebalance_schedule(first: pd.Timestamp, last: pd.Timestamp, params: BacktestParams) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """(rebalance date, last held day) pairs: every step_days from first + warm-up - 1 to before `last`."""
    t0 = first + pd.Timedelta(days=params.warmup_days - 1)
    if t0 >= last:
        raise ContractError(
            f"walk_forward: {params.warmup_days} warm-up days are needed before the first test day, "
            f"but the data covers only {first.date()}..{last.date()}"
        )
    dates = list(pd.date_range(t0, last - _ONE_DAY, freq=f"{params.step_days}D"))
    ends = [min(t + pd.Timedelta(days=params.test_days), last) for t in dates]
    return [(t, min(end, nxt)) for t, end, nxt in zip(dates, ends, dates[1:] + [last])]


def equal_weight_pool(tradable: pd.Series, t: pd.Timestamp, eligible: pd.DataFrame | None) -> list[str]:
    """The baseline's symbols at `t`: every symbol with a bar on `t` (and eligible on `t`)."""
    pool = tradable
    if eligible is not None:
        pool = pool & eligible_on(eligible, t).reindex(tradable.index, fill_value=False)
    return list(tradable.index[pool.to_numpy()])


def _trading_stats(rebalance_turnover: pd.Series, daily_trade: pd.Series, daily_cost: pd.Series) -> dict:
    years = len(daily_trade) / PERIODS_PER_YEAR
    return {
        "turnover": float(rebalance_turnover.mean()),  # mean sum |w_new - w_drifted| per rebalance
        "annual_turnover": float(daily_trade.sum() / years),  # every trade, signal flips included
        "total_cost": float(daily_cost.sum()),  # sum of the daily cost deductions (fractions of equity)
        "n_rebalances": int(rebalance_turnover.size),
    }


def resolve_benchmark(symbols: list[str], benchmark: str) -> str:
    """`benchmark` itself if it is a column, else the unique BASE + USD-quote column (BTC -> X:BTCUSDT)."""
    if benchmark in symbols:
        return benchmark
    matches = [
        s for s in symbols
        if any(s.split(":", 1)[-1] == benchmark.upper() + quote for quote in BENCHMARK_QUOTES)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ContractError(f"backtest.benchmark {benchmark!r} matches no symbol of the returns matrix")
    raise ContractError(f"backtest.benchmark {benchmark!r} is ambiguous: {sorted(matches)}; give the full symbol id")


def _aligned(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    return frame.reindex(index=like.index, columns=like.columns)
