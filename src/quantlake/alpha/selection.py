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
3. Composite score of the symbols that survive (documented in `composite_score`); on a
   large universe only the best `max_candidates` scores go on (`candidate_vetoes`).
4. Hierarchical clustering: correlation distance sqrt(0.5 (1 - rho)) averaged over the
   `lookbacks`, Ward linkage, cut at height `cluster_threshold`, or into `max_clusters`
   clusters when the cut leaves more.
5. The `top_n` best scores of every cluster are selected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from quantlake.alpha import window_stats
from quantlake.alpha.covariance import pairwise_corr
from quantlake.alpha.metrics import PERIODS_PER_YEAR
from quantlake.alpha.ratings import RATING_SOURCE_COLUMNS, RatingsTable  # noqa: F401 (re-exported)
from quantlake.alpha.returns import bars_at, to_day
from quantlake.alpha.sections import DEFAULT_SCORE_WEIGHTS, RATING_COLUMNS, SCORED_FEATURES, SelectionParams  # noqa: F401 (re-exported)
from quantlake.contracts import ContractError

# what the selection reads of the feature table (`Snapshot.features(columns=...)`)
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
    rankings: dict | None = None,
) -> Selection:
    """Score, veto, cluster and pick symbols from the data dated on or before `as_of`.

    `eligible`: optional point-in-time universe (index dates, columns symbols, bool); a symbol
    enters the pool only if it is eligible on `as_of` (and has a bar that day).

    `rankings`: a memo of the work before the pick (features, vetoes, scores, clusters), for
    one set of inputs (the caller keeps one per returns panel): the points of a sweep that
    differ only in `top_n` (or in the optimizer) rank each date once.
    """
    if not isinstance(returns.index, pd.DatetimeIndex):
        raise ContractError(f"select_assets: the returns matrix needs a DatetimeIndex of days, got {type(returns.index).__name__}")
    as_of = to_day(as_of)
    ranked = rankings.get(_ranking_key(as_of, params)) if rankings is not None else None
    if ranked is None:
        ranked = _rank(returns, traded_value, as_of, params, ratings, eligible)
        if rankings is not None:
            remember_ranking(rankings, ranked)
    return dataclasses.replace(ranked, selected=pick_per_cluster(ranked.scores, ranked.clusters, params.top_n), params=params)


def remember_ranking(rankings: dict, selection: Selection) -> None:
    """Keep `selection`'s ranking (everything but its pick) in a `select_assets` memo."""
    rankings.setdefault(_ranking_key(selection.as_of, selection.params), dataclasses.replace(selection, selected=[]))


def _ranking_key(as_of: pd.Timestamp, params: SelectionParams) -> tuple:
    return as_of, dataclasses.replace(params, top_n=1)  # everything the ranking reads of the params


def _rank(
    returns: pd.DataFrame,
    traded_value: pd.DataFrame,
    as_of: pd.Timestamp,
    params: SelectionParams,
    ratings: pd.DataFrame | None,
    eligible: pd.DataFrame | None,
) -> Selection:
    """`select_assets` up to the pick: a Selection with nothing selected yet."""
    start = as_of - pd.Timedelta(days=params.train_days - 1)
    day, symbols = returns.index, returns.columns.tolist()
    values = returns.to_numpy("float64")  # one date x symbol array; the windows are row slices of it
    if not traded_value.columns.equals(returns.columns):
        traded_value = traded_value.reindex(columns=returns.columns)
    value_day = traded_value.index
    columns = _feature_columns(
        values[np.asarray((day >= start) & (day <= as_of))],
        traded_value.to_numpy("float64")[np.asarray((value_day >= start) & (value_day <= as_of))],
        params,
    )
    rated = latest_ratings(ratings, start, as_of) if ratings is not None and len(ratings) else None  # a RatingsTable: no re-sort
    rated = rated.reindex(symbols) if rated is not None and len(rated) else None
    for column in RATING_COLUMNS:
        columns[column] = rated[column].to_numpy("float64") if rated is not None else np.full(len(symbols), math.nan)
    # one float block (a dict of columns would be consolidated column by column)
    features = pd.DataFrame(np.column_stack([columns[c] for c in FEATURE_COLUMNS]), index=symbol_index(symbols),
                            columns=list(FEATURE_COLUMNS), dtype="float64")
    # the pool rules (no bar on as_of, outside the universe) override the feature rules' reason
    vetoes = {**veto_reasons(features, params, start, as_of), **pool_vetoes(returns, traded_value, as_of, eligible)}
    keep = np.array([s not in vetoes for s in symbols], dtype=bool)
    scores = composite_score(features.iloc[np.flatnonzero(keep)], params.score_weights)
    if len(scores) > params.max_candidates:  # ranks are taken among every passing symbol, then the cut
        vetoes.update(candidate_vetoes(scores, params.max_candidates))
        keep = np.array([s not in vetoes for s in symbols], dtype=bool)
        scores = scores[[s not in vetoes for s in scores.index]]
    passing = [s for s, k in zip(symbols, keep) if k]
    # the clustering reads the longest lookback only (`correlation_distance`), symbols sorted
    recent = np.asarray((day > as_of - pd.Timedelta(days=max(params.lookbacks))) & (day <= as_of))
    by_name = sorted(range(len(passing)), key=lambda i: passing[i])
    cols = np.flatnonzero(keep)[by_name]
    history = pd.DataFrame(values[recent][:, cols], index=day[recent], columns=symbol_index([passing[i] for i in by_name]))
    clusters = cluster_symbols(history, as_of, params, scores)
    return Selection(as_of, start, features, scores, clusters, [], vetoes, params)


def pick_per_cluster(scores: pd.Series, clusters: pd.Series, top_n: int) -> list[str]:
    """The `top_n` best scores of every cluster, best score first (ties by symbol)."""
    score_of = dict(zip(scores.index, scores.to_numpy().tolist()))
    cluster_of = dict(zip(clusters.index, clusters.to_numpy().tolist()))
    per_cluster: dict[int, int] = {}
    selected = []
    for sym in sorted(cluster_of, key=lambda s: (-score_of[s], s)):
        c = int(cluster_of[sym])
        if per_cluster.get(c, 0) < top_n:
            per_cluster[c] = per_cluster.get(c, 0) + 1
            selected.append(sym)
    return selected


def symbol_index(symbols: list[str]) -> pd.Index:
    """Symbols as an Index of plain Python strings.

    A rebalance iterates its symbol labels many times over; pandas' default Arrow-backed
    strings build a Python object per element at every pass (a third of the selection's
    bookkeeping on 300 symbols).
    """
    return pd.Index(symbols, dtype=object)


# --------------------------------------------------------------------------- features


def window_features(window: pd.DataFrame, traded_value: pd.DataFrame, params: SelectionParams) -> pd.DataFrame:
    """Per-symbol statistics of the train window (one row per column of `window`).

    Each statistic is `signals.py`'s definition on the symbol's observed returns (NaN dropped),
    computed for all symbols in one vectorised pass (`window_stats`).
    """
    if not traded_value.columns.equals(window.columns):
        traded_value = traded_value.reindex(columns=window.columns)
    columns = _feature_columns(window.to_numpy("float64"), traded_value.to_numpy("float64"), params)
    return pd.DataFrame(columns, index=pd.Index(window.columns.tolist()), dtype="float64")


def _feature_columns(window: np.ndarray, traded_value: np.ndarray, params: SelectionParams) -> dict[str, np.ndarray]:
    """window_features on date x symbol arrays: feature name -> one value per symbol (column)."""
    p = PERIODS_PER_YEAR
    packed = window_stats.pack(window)
    log_r = window_stats.log_returns(packed)
    moments = window_stats.central_moments(packed)  # shared by volatility, skew and kurtosis
    return {
        "n_returns": packed[1].astype("float64"),
        "momentum": window_stats.annualised_momentum(packed, log_r, p),
        "volatility": window_stats.annualised_volatility(packed, p, moments),
        "efficiency": window_stats.efficiency_ratio(packed, log_r),
        "entropy": window_stats.permutation_entropy(packed, params.entropy_order),
        "hurst": window_stats.hurst_exponent(packed, log_r, params.hurst_max_lag),
        "skew": window_stats.skewness(packed, moments),
        "kurtosis": window_stats.excess_kurtosis(packed, moments),
        "cvar": window_stats.conditional_value_at_risk(packed, params.cvar_level),
        "liquidity": window_stats.median(window_stats.pack(traded_value)),
    }


def latest_ratings(ratings: pd.DataFrame | RatingsTable | None, start: pd.Timestamp, as_of: pd.Timestamp) -> pd.DataFrame:
    """Each symbol's last technical rating dated in [start, as_of] (point in time by contract).

    Pass a `RatingsTable` to ask at many dates: the table is then indexed once.
    """
    table = ratings if isinstance(ratings, RatingsTable) else RatingsTable(ratings)
    names, values = table.latest(start, as_of)
    return pd.DataFrame(values, index=symbol_index(names), columns=list(RATING_COLUMNS))


# --------------------------------------------------------------------------- vetoes


def veto_reasons(
    features: pd.DataFrame, params: SelectionParams, start: pd.Timestamp, as_of: pd.Timestamp
) -> dict[str, str]:
    """symbol -> every rule it breaks, joined by '; ' (symbols that pass are absent)."""
    s = "selection"
    window = f"{start.date()}..{as_of.date()}"
    out = {}
    names = ("n_returns", "volatility", "efficiency", "entropy", "hurst", "liquidity")
    col = {k: features[k].to_numpy("float64") for k in names}
    with np.errstate(invalid="ignore"):  # the rules below, at once: only the symbols that break one are visited
        suspect = (
            (col["n_returns"] < params.min_history_days)
            | ~np.all([np.isfinite(col[k]) for k in ("volatility", "efficiency", "entropy", "hurst")], axis=0)
            | (col["volatility"] == 0) | (col["volatility"] > params.max_volatility)
            | (col["entropy"] > params.max_entropy) | (col["efficiency"] < params.min_efficiency)
            | ~(col["liquidity"] >= params.min_traded_value)
        )
    symbols = features.index.tolist()
    for i in np.flatnonzero(suspect).tolist():
        sym, f = symbols[i], {k: float(col[k][i]) for k in names}
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


def candidate_vetoes(scores: pd.Series, max_candidates: int) -> dict[str, str]:
    """symbol -> why it is not clustered: its score is not among the best `max_candidates` (ties by symbol).

    The clustering costs N^2 (a correlation matrix per lookback, Ward's linkage): on a universe of
    thousands only the best scores compete for the clusters, which is where every pick comes from.
    """
    ranked = sorted(zip(scores.index.tolist(), scores.to_numpy().tolist()), key=lambda item: (-item[1], item[0]))
    return {
        sym: f"score {score:.4f} not among the best {max_candidates} (selection.max_candidates={max_candidates})"
        for sym, score in ranked[max_candidates:]
    }


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
    score = np.zeros(len(features))
    for name, weight in weights:
        score = score + weight * _centred_rank(features[name].to_numpy("float64"))
    return pd.Series(score, index=features.index, dtype="float64")


def centred_rank(x: pd.Series) -> pd.Series:
    return pd.Series(_centred_rank(x.to_numpy("float64")), index=x.index)


def _centred_rank(x: np.ndarray) -> np.ndarray:
    known = ~np.isnan(x)
    n = int(known.sum())
    out = np.zeros(x.size)
    if n > 1:  # NaN -> the middle, 0
        out[known] = (average_rank(x[known]) - 1.0) / (n - 1) - 0.5
    return out


def average_rank(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of their ranks (Series.rank(method="average"))."""
    order = np.argsort(x, kind="stable")
    v = x[order]
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])  # first position of each run of equal values
    ends = np.r_[starts[1:], v.size]
    ranks = np.empty(x.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean of ranks start+1..end
    return ranks


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
        return pd.Series([0], index=symbol_index(symbols), dtype="int64")
    if history.columns.tolist() != symbols:
        history = history[symbols]
    distance = correlation_distance(history, as_of, params.lookbacks, params.min_overlap_days)
    tree = linkage(squareform(distance, checks=False), method="ward")
    labels = fcluster(tree, t=params.cluster_threshold, criterion="distance")
    if labels.max() > params.max_clusters:
        labels = fcluster(tree, t=params.max_clusters, criterion="maxclust")
    best: dict[int, tuple[float, str]] = {}
    for sym, label, score in zip(symbols, labels.tolist(), scores.reindex(symbols).to_numpy().tolist()):
        if label not in best or (-score, sym) < best[label]:
            best[label] = (-score, sym)
    order = {c: i for i, c in enumerate(sorted(best, key=best.get))}
    return pd.Series([order[c] for c in labels.tolist()], index=symbol_index(symbols), dtype="int64")


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
    values = history.to_numpy("float64")
    for k in lookbacks:
        rho = pairwise_corr(values[np.asarray(history.index > as_of - pd.Timedelta(days=k))], min_overlap)
        d = np.sqrt(0.5 * (1.0 - rho))  # rho is in [-1, 1] or NaN
        known = np.isfinite(d)
        if known.all():
            total += d
        else:
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
