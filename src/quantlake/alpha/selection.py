"""Asset selection for one rebalance date (issue 5, item 4).

`select_assets` looks only at rows dated on or before `as_of`:

0. The pool: only symbols with a bar on `as_of` (`returns.bars_at`: a symbol that is delisted,
   halted or not yet listed cannot be bought at that close), and, when a point-in-time
   universe `eligible` (date x symbol, bool) is given, only those it marks eligible on
   `as_of`. Every other symbol is vetoed with the reason (`pool_vetoes`).
1. Features over the train window (the `train_days` calendar days ending at `as_of`), from each
   symbol's observed returns: annualised momentum and volatility, efficiency ratio,
   permutation entropy, Hurst exponent, skew, excess kurtosis, CVaR, median traded value
   (liquidity), and the latest point-in-time technical ratings inside the window.
2. Vetoes, each with a human-readable reason: short history, undefined statistics (a flat
   price), extreme volatility, unpredictability (permutation entropy above `max_entropy` or
   efficiency ratio below `min_efficiency`), illiquidity.
3. Composite score of the symbols that survive (documented in `composite_score`).
4. Hierarchical clustering: correlation distance sqrt(0.5 (1 - rho)) averaged over the
   `lookbacks`, Ward linkage, cut at height `cluster_threshold`, or into `max_clusters`
   clusters when the cut leaves more.
5. The `top_n` best scores of every cluster are selected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from quantlake.alpha import signals
from quantlake.alpha.metrics import PERIODS_PER_YEAR
from quantlake.alpha.returns import bars_at, to_day
from quantlake.alpha.sections import DEFAULT_SCORE_WEIGHTS, RATING_COLUMNS, SCORED_FEATURES, SelectionParams  # noqa: F401 (re-exported)
from quantlake.contracts import ContractError

FEATURE_COLUMNS = ("n_returns", *SCORED_FEATURES)


@dataclass(frozen=True)
class Selection:
    """What `select_assets` decided at `as_of`, and why."""

    as_of: pd.Timestamp
    train_start: pd.Timestamp
    features: pd.DataFrame  # symbol x FEATURE_COLUMNS, every symbol of the pool
    scores: pd.Series  # symbol -> composite score, symbols that were not vetoed
    clusters: pd.Series  # symbol -> cluster number (0 holds the best score), not vetoed
    selected: list[str]  # best score first, ties by symbol
    vetoes: dict[str, str]  # symbol -> why it was dropped
    params: SelectionParams = field(repr=False, default_factory=SelectionParams)

    def to_dict(self) -> dict:
        """JSON-ready: plain types, None for missing values, symbols in sorted order."""
        symbols = {}
        for sym in self.features.index:
            symbols[sym] = {
                "score": _json_float(self.scores.get(sym)),
                "cluster": None if sym not in self.clusters.index else int(self.clusters[sym]),
                "selected": sym in self.selected,
                "veto": self.vetoes.get(sym),
                "features": {k: _json_float(v) for k, v in self.features.loc[sym].items()},
            }
        return {
            "as_of": self.as_of.date().isoformat(),
            "train_start": self.train_start.date().isoformat(),
            "selected": list(self.selected),
            "clusters": {
                str(c): sorted(self.clusters.index[self.clusters == c]) for c in sorted(set(self.clusters))
            },
            "vetoes": dict(sorted(self.vetoes.items())),
            "symbols": symbols,
            "params": self.params.to_dict(),
        }


def select_assets(
    returns: pd.DataFrame,
    traded_value: pd.DataFrame,
    as_of: Any,
    params: SelectionParams,
    ratings: pd.DataFrame | None = None,
    eligible: pd.DataFrame | None = None,
) -> Selection:
    """Score, veto, cluster and pick symbols from the data dated on or before `as_of`.

    `eligible`: optional point-in-time universe (index dates, columns symbols, bool); a symbol
    enters the pool only if it is eligible on `as_of` (and has a bar that day).
    """
    if not isinstance(returns.index, pd.DatetimeIndex):
        raise ContractError(f"select_assets: the returns matrix needs a DatetimeIndex of days, got {type(returns.index).__name__}")
    as_of = to_day(as_of)
    start = as_of - pd.Timedelta(days=params.train_days - 1)
    window = returns.loc[(returns.index >= start) & (returns.index <= as_of)]
    value_window = traded_value.reindex(columns=returns.columns).loc[
        (traded_value.index >= start) & (traded_value.index <= as_of)
    ]
    features = window_features(window, value_window, params)
    features = features.join(latest_ratings(ratings, start, as_of).reindex(features.index))
    features = features.reindex(columns=list(FEATURE_COLUMNS))
    vetoes = {**veto_reasons(features, params, start, as_of), **pool_vetoes(returns, traded_value, as_of, eligible)}
    passing = [s for s in features.index if s not in vetoes]
    scores = composite_score(features.loc[passing], params.score_weights)
    history = returns.loc[returns.index <= as_of, passing]
    clusters = cluster_symbols(history, as_of, params, scores)
    ranked = sorted(passing, key=lambda s: (-scores[s], s))
    per_cluster: dict[int, int] = {}
    selected = []
    for sym in ranked:
        c = int(clusters[sym])
        if per_cluster.get(c, 0) < params.top_n:
            per_cluster[c] = per_cluster.get(c, 0) + 1
            selected.append(sym)
    return Selection(as_of, start, features, scores, clusters, selected, vetoes, params)


# --------------------------------------------------------------------------- features


def window_features(window: pd.DataFrame, traded_value: pd.DataFrame, params: SelectionParams) -> pd.DataFrame:
    """Per-symbol statistics of the train window (one row per column of `window`)."""
    p = PERIODS_PER_YEAR
    stats: dict[str, Callable[[np.ndarray], float]] = {
        "momentum": lambda r: signals.annualised_momentum(r, p),
        "volatility": lambda r: signals.annualised_volatility(r, p),
        "efficiency": signals.efficiency_ratio,
        "entropy": lambda r: signals.permutation_entropy(r, params.entropy_order),
        "hurst": lambda r: signals.hurst_exponent(r, params.hurst_max_lag),
        "skew": signals.skewness,
        "kurtosis": signals.excess_kurtosis,
        "cvar": lambda r: signals.conditional_value_at_risk(r, params.cvar_level),
    }
    rows = {}
    for sym in window.columns:
        r = window[sym].dropna().to_numpy("float64")
        row = {"n_returns": float(r.size)}
        row.update({name: (f(r) if r.size else math.nan) for name, f in stats.items()})
        traded = traded_value[sym].dropna().to_numpy("float64") if sym in traded_value else np.empty(0)
        row["liquidity"] = float(np.median(traded)) if traded.size else math.nan
        rows[sym] = row
    return pd.DataFrame.from_dict(rows, orient="index", columns=["n_returns", *stats, "liquidity"], dtype="float64")


def latest_ratings(ratings: pd.DataFrame | None, start: pd.Timestamp, as_of: pd.Timestamp) -> pd.DataFrame:
    """Each symbol's last technical rating dated in [start, as_of] (point in time by contract)."""
    columns = list(RATING_COLUMNS)
    if ratings is None or len(ratings) == 0:
        return pd.DataFrame(columns=columns, dtype="float64")
    missing = [c for c in ("timestamp", "symbol", *RATING_COLUMNS.values()) if c not in ratings.columns]
    if missing:
        raise ContractError(f"technical ratings table: missing column(s) {missing}")
    day = pd.to_datetime(ratings["timestamp"].to_numpy("int64"), unit="ms")
    inside = np.asarray((day >= start) & (day <= as_of))
    rows = ratings.loc[inside].assign(_day=day[inside]).sort_values(["symbol", "_day"], kind="stable")
    last = rows.groupby("symbol", sort=True).tail(1).set_index("symbol")
    out = last[list(RATING_COLUMNS.values())].astype("float64")
    out.columns = columns
    out.index = pd.Index([str(s) for s in out.index])
    return out


# --------------------------------------------------------------------------- vetoes


def veto_reasons(
    features: pd.DataFrame, params: SelectionParams, start: pd.Timestamp, as_of: pd.Timestamp
) -> dict[str, str]:
    """symbol -> every rule it breaks, joined by '; ' (symbols that pass are absent)."""
    s = "selection"
    window = f"{start.date()}..{as_of.date()}"
    out = {}
    for sym, f in features.iterrows():
        if f["n_returns"] < params.min_history_days:
            out[sym] = (
                f"short history: {int(f['n_returns'])} daily returns in the train window {window} "
                f"(< {s}.min_history_days={params.min_history_days})"
            )
            continue
        reasons = []
        undefined = [k for k in ("volatility", "efficiency", "entropy", "hurst") if not math.isfinite(f[k])]
        if undefined or f["volatility"] == 0:
            reasons.append(f"undefined statistics (flat or degenerate price path): {', '.join(undefined) or 'volatility'}")
        if f["volatility"] > params.max_volatility:
            reasons.append(f"extreme volatility: {f['volatility']:.3f} annualised (> {s}.max_volatility={params.max_volatility})")
        if f["entropy"] > params.max_entropy:
            reasons.append(f"unpredictable: permutation entropy {f['entropy']:.4f} (> {s}.max_entropy={params.max_entropy})")
        if f["efficiency"] < params.min_efficiency:
            reasons.append(f"unpredictable: efficiency ratio {f['efficiency']:.4f} (< {s}.min_efficiency={params.min_efficiency})")
        if not f["liquidity"] >= params.min_traded_value:  # NaN liquidity fails too
            reasons.append(f"illiquid: median traded value {f['liquidity']:.6g} (< {s}.min_traded_value={params.min_traded_value})")
        if reasons:
            out[sym] = "; ".join(reasons)
    return out


def pool_vetoes(
    returns: pd.DataFrame, traded_value: pd.DataFrame, as_of: pd.Timestamp, eligible: pd.DataFrame | None = None
) -> dict[str, str]:
    """symbol -> why it is outside the pool at `as_of`: no bar that day, or not in the universe."""
    day = as_of.date()
    trading = bars_at(returns, traded_value, as_of)
    out = {s: f"no bar on {day}: not trading (delisted, halted or not listed yet)" for s in trading.index[~trading.to_numpy()]}
    if eligible is not None:
        member = eligible_on(eligible, as_of).reindex(returns.columns, fill_value=False)
        for s in member.index[~member.to_numpy()]:
            out[s] = "; ".join(filter(None, [out.get(s), f"not in the point-in-time universe on {day}"]))
    return out


def eligible_on(eligible: pd.DataFrame, day: pd.Timestamp) -> pd.Series:
    """symbol -> eligible on `day` from a date x symbol bool frame (a missing day is an error).

    A symbol that is not a column of the frame is not eligible (callers reindex with False).
    """
    if not isinstance(eligible.index, pd.DatetimeIndex):
        raise ContractError(f"eligible universe: expected a DatetimeIndex of days, got {type(eligible.index).__name__}")
    if day not in eligible.index:
        raise ContractError(f"eligible universe has no row for {day.date()}")
    row = eligible.loc[day]
    if row.dtype != bool:
        raise ContractError(f"eligible universe: values must be bool, got {row.dtype} on {day.date()}")
    return row


# --------------------------------------------------------------------------- score


def composite_score(features: pd.DataFrame, weights: tuple[tuple[str, float], ...]) -> pd.Series:
    """sum_k weight_k * centred_rank(feature_k) over the eligible symbols.

    centred_rank maps a feature to its cross-sectional rank scaled to [-0.5, 0.5] (average
    rank for ties; 0 for a lone symbol). Ranks make the score immune to the fat tails of
    crypto statistics and put every feature on the same scale, so a weight is the feature's
    share of the score; a negative weight rewards low values (volatility, entropy,
    kurtosis). A missing feature (e.g. no rating yet) counts as the middle rank, 0.
    """
    score = pd.Series(0.0, index=features.index, dtype="float64")
    for name, weight in weights:
        score = score + weight * centred_rank(features[name])
    return score


def centred_rank(x: pd.Series) -> pd.Series:
    n = int(x.notna().sum())
    if n <= 1:
        return pd.Series(0.0, index=x.index)
    return ((x.rank(method="average") - 1.0) / (n - 1) - 0.5).fillna(0.0)


# --------------------------------------------------------------------------- clusters


def cluster_symbols(
    history: pd.DataFrame, as_of: pd.Timestamp, params: SelectionParams, scores: pd.Series
) -> pd.Series:
    """symbol -> cluster number; clusters are numbered by their best score (0 holds the best)."""
    from scipy.cluster.hierarchy import fcluster, linkage  # scipy only when clustering
    from scipy.spatial.distance import squareform

    symbols = sorted(history.columns)
    if not symbols:
        return pd.Series([], dtype="int64")
    if len(symbols) == 1:
        return pd.Series([0], index=symbols, dtype="int64")
    distance = correlation_distance(history[symbols], as_of, params.lookbacks, params.min_overlap_days)
    tree = linkage(squareform(distance, checks=False), method="ward")
    labels = fcluster(tree, t=params.cluster_threshold, criterion="distance")
    if labels.max() > params.max_clusters:
        labels = fcluster(tree, t=params.max_clusters, criterion="maxclust")
    raw = pd.Series(labels, index=symbols)
    best = {c: min((-scores[s], s) for s in raw.index[raw == c]) for c in set(labels)}
    order = {c: i for i, c in enumerate(sorted(best, key=best.get))}
    return raw.map(order).astype("int64")


def correlation_distance(
    history: pd.DataFrame, as_of: pd.Timestamp, lookbacks: tuple[int, ...], min_overlap: int
) -> np.ndarray:
    """Mean over lookbacks of sqrt(0.5 (1 - rho)) (0 = moving together, 1 = opposite).

    Each lookback uses the pairwise-complete returns of its last `k` calendar days up to
    as_of; a pair with fewer than `min_overlap` common days in a lookback skips it, and a pair
    with no usable lookback at all is taken as uncorrelated (distance sqrt(0.5)).
    """
    n = history.shape[1]
    total = np.zeros((n, n))
    count = np.zeros((n, n))
    for k in lookbacks:
        recent = history.loc[history.index > as_of - pd.Timedelta(days=k)]
        rho = recent.corr(min_periods=min_overlap).to_numpy("float64")
        d = np.sqrt(0.5 * (1.0 - np.clip(rho, -1.0, 1.0)))
        known = np.isfinite(d)
        total += np.where(known, d, 0.0)
        count += known
    out = np.where(count > 0, total / np.maximum(count, 1), math.sqrt(0.5))
    out = 0.5 * (out + out.T)
    np.fill_diagonal(out, 0.0)
    return out


def _json_float(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
