"""Selection: features, vetoes, score, clustering, point-in-time behaviour; signal kernels."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from conftest import load_freqtrade, real_bases
from quantlake.alpha import selection, signals
from quantlake.alpha.metrics import PERIODS_PER_YEAR
from quantlake.alpha.returns import returns_matrix, traded_value_matrix
from quantlake.alpha.selection import SelectionParams, centred_rank, composite_score, select_assets, window_features
from quantlake.params_base import ParamsError

DATES = pd.date_range("2022-01-01", periods=300, freq="D", name="date")
PERMISSIVE = dict(
    train_days=250, lookbacks=[60, 120, 250], min_history_days=100, max_volatility=10.0,
    max_entropy=1.0, min_efficiency=0.0, cluster_threshold=0.4, max_clusters=10, top_n=1,
)


def planted_groups(seed: int, groups: int = 3, per_group: int = 4) -> tuple[pd.DataFrame, dict[str, int]]:
    """Symbols driven by one of `groups` independent factors plus a little own noise."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(0.0, 0.03, size=(len(DATES), groups))
    cols, truth = {}, {}
    for g in range(groups):
        for i in range(per_group):
            sym = f"SIM:G{g}S{i}"
            cols[sym] = factors[:, g] + rng.normal(0.001, 0.006, size=len(DATES))
            truth[sym] = g
    return pd.DataFrame(cols, index=DATES), truth


def epoch_ms(days: pd.DatetimeIndex) -> np.ndarray:
    return days.as_unit("ms").asi8.astype("int64")


def liquidity_like(returns: pd.DataFrame, value: float = 1e6) -> pd.DataFrame:
    return pd.DataFrame(value, index=returns.index, columns=returns.columns).where(returns.notna())


def partition(labels: dict[str, int]) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for sym, c in labels.items():
        groups.setdefault(c, set()).add(sym)
    return {frozenset(g) for g in groups.values()}


# --------------------------------------------------------------------------- clustering


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clustering_recovers_planted_groups(seed):
    returns, truth = planted_groups(seed)
    sel = select_assets(returns, liquidity_like(returns), DATES[-1], SelectionParams.from_params(PERMISSIVE))
    assert not sel.vetoes
    assert partition(sel.clusters.to_dict()) == partition(truth)
    # top_n = 1: exactly the best score of each cluster
    assert len(sel.selected) == 3
    for c in range(3):
        members = sel.clusters.index[sel.clusters == c]
        best = max(members, key=lambda s: (sel.scores[s], s))
        assert best in sel.selected
    assert sel.clusters[sel.selected[0]] == 0  # cluster 0 holds the best score


def test_max_clusters_caps_the_cut_without_splitting_groups():
    returns, truth = planted_groups(4, groups=4, per_group=3)
    params = SelectionParams.from_params({**PERMISSIVE, "max_clusters": 2, "top_n": 2})
    sel = select_assets(returns, liquidity_like(returns), DATES[-1], params)
    assert sel.clusters.nunique() == 2
    for g in range(4):
        assert sel.clusters[[s for s, t in truth.items() if t == g]].nunique() == 1
    assert Counter(int(sel.clusters[s]) for s in sel.selected) == {0: 2, 1: 2}


def test_top_n_picks_the_best_scores_in_each_cluster():
    returns, _ = planted_groups(5)
    sel = select_assets(returns, liquidity_like(returns), DATES[-1], SelectionParams.from_params({**PERMISSIVE, "top_n": 2}))
    for c in sel.clusters.unique():
        members = sorted(sel.clusters.index[sel.clusters == c], key=lambda s: (-sel.scores[s], s))
        assert [s for s in sel.selected if sel.clusters[s] == c] == members[:2]
    assert sel.selected == sorted(sel.selected, key=lambda s: (-sel.scores[s], s))


# --------------------------------------------------------------------------- point in time


def test_only_the_best_max_candidates_scores_are_clustered():
    """12 passing symbols: max_candidates 12 clusters them all; 11 drops the lowest score (named, with
    its score), and the remaining candidates keep the scores and clusters they had among all 12."""
    returns, _ = planted_groups(4)
    value = liquidity_like(returns)
    every = select_assets(returns, value, DATES[-1], SelectionParams.from_params({**PERMISSIVE, "max_candidates": 12}))
    assert len(every.scores) == 12 and not every.vetoes
    worst = min(every.scores.index, key=lambda s: (every.scores[s], s))
    cut = select_assets(returns, value, DATES[-1], SelectionParams.from_params({**PERMISSIVE, "max_candidates": 11}))
    assert cut.vetoes == {worst: f"score {every.scores[worst]:.4f} not among the best 11 (selection.max_candidates=11)"}
    assert worst not in cut.clusters.index and worst not in cut.selected
    pd.testing.assert_series_equal(cut.scores, every.scores.drop(worst))  # ranks taken among all 12
    assert SelectionParams().max_candidates == 500
    with pytest.raises(ParamsError, match="selection.max_candidates must be >= 1"):
        SelectionParams.from_params({"max_candidates": 0})


def test_rows_after_as_of_change_nothing():
    returns, _ = planted_groups(6)
    value = liquidity_like(returns)
    as_of = DATES[260]
    ratings = pd.DataFrame(
        {
            "timestamp": np.repeat(epoch_ms(DATES[[200, 259, 261]]), 2),
            "symbol": ["SIM:G0S0", "SIM:G1S1"] * 3,
            "recommend_all": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "recommend_ma": 0.0,
            "recommend_other": 0.0,
        }
    )
    base = select_assets(returns, value, as_of, SelectionParams.from_params(PERMISSIVE), ratings)

    rng = np.random.default_rng(99)
    future = returns.index > as_of
    returns2 = returns.copy()
    returns2.loc[future] = rng.normal(0.0, 0.2, size=(int(future.sum()), returns.shape[1]))
    value2 = value.copy()
    value2.loc[future] = 1.0
    ratings2 = ratings.copy()
    ratings2.loc[ratings2["timestamp"] > as_of.value // 1_000_000, "recommend_all"] = -1.0
    other = select_assets(returns2, value2, as_of, SelectionParams.from_params(PERMISSIVE), ratings2)
    assert json.dumps(other.to_dict(), sort_keys=True) == json.dumps(base.to_dict(), sort_keys=True)
    assert base.features.at["SIM:G0S0", "rating_all"] == 0.3  # the last rating on or before as_of
    # and the data before as_of does matter (the test can fail)
    returns3 = returns.copy()
    returns3.loc[as_of] = 0.5
    changed = select_assets(returns3, value, as_of, SelectionParams.from_params(PERMISSIVE), ratings)
    assert not changed.features.equals(base.features)


def test_ratings_outside_the_train_window_are_ignored_and_raise_the_score():
    returns, _ = planted_groups(7, groups=1, per_group=2)
    returns["SIM:G0S1"] = returns["SIM:G0S0"]  # identical twins: only the rating differs
    ts = epoch_ms(DATES)
    ratings = pd.DataFrame(
        {
            "timestamp": [ts[0], ts[-3], ts[-3]],
            "symbol": ["SIM:G0S0", "SIM:G0S0", "SIM:G0S1"],
            "recommend_all": [0.9, -0.5, 0.5],
            "recommend_ma": [0.0, 0.0, 0.0],
            "recommend_other": [0.0, 0.0, 0.0],
        }
    )
    params = SelectionParams.from_params({**PERMISSIVE, "train_days": 100})
    sel = select_assets(returns, liquidity_like(returns), DATES[-1], params, ratings)
    assert sel.features.at["SIM:G0S0", "rating_all"] == -0.5
    assert sel.scores["SIM:G0S1"] > sel.scores["SIM:G0S0"]
    assert sel.selected == ["SIM:G0S1"]


# --------------------------------------------------------------------------- vetoes


def veto_panel() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(11)
    n = len(DATES)
    t = np.arange(n)
    cols = {
        "SIM:NOISE": rng.normal(0.001, 0.03, n),
        "SIM:LATE": np.where(t >= n - 50, rng.normal(0.0, 0.03, n), np.nan),
        "SIM:WILD": rng.normal(0.0, 0.35, n).clip(-0.9, 3.0),
        "SIM:FLAT": np.zeros(n),
        "SIM:CYCLE": 0.03 * np.sin(2 * np.pi * t / 23) + rng.normal(0, 0.002, n),
        "SIM:ZIGZAG": np.where(t % 2 == 0, 0.05, 1 / 1.05 - 1),
        "SIM:TREND": rng.normal(0.01, 0.005, n),
        "SIM:THIN": rng.normal(0.001, 0.03, n),
    }
    returns = pd.DataFrame(cols, index=DATES)
    value = liquidity_like(returns)
    value["SIM:THIN"] = 10.0
    return returns, value


def test_vetoes_fire_with_their_reasons():
    returns, value = veto_panel()
    params = SelectionParams.from_params({**PERMISSIVE, "max_volatility": 3.0, "min_traded_value": 1000.0})
    sel = select_assets(returns, value, DATES[-1], params)
    v = sel.vetoes
    assert set(v) == {"SIM:LATE", "SIM:WILD", "SIM:FLAT", "SIM:ZIGZAG", "SIM:THIN"}
    assert "short history: 50 daily returns" in v["SIM:LATE"] and "selection.min_history_days=100" in v["SIM:LATE"]
    assert v["SIM:WILD"].startswith("extreme volatility") and "selection.max_volatility=3.0" in v["SIM:WILD"]
    assert "undefined statistics" in v["SIM:FLAT"]
    assert "undefined statistics" in v["SIM:ZIGZAG"]  # the log price only takes two values
    assert v["SIM:THIN"].startswith("illiquid: median traded value 10 ")
    assert set(sel.scores.index) == set(sel.clusters.index) == set(returns.columns) - set(v)
    doc = sel.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["symbols"]["SIM:LATE"]["score"] is None and doc["symbols"]["SIM:LATE"]["veto"] == v["SIM:LATE"]
    assert doc["symbols"]["SIM:TREND"]["cluster"] is not None and doc["symbols"]["SIM:TREND"]["veto"] is None


def test_unpredictability_vetoes():
    returns, value = veto_panel()
    by_entropy = select_assets(returns, value, DATES[-1], SelectionParams.from_params({**PERMISSIVE, "max_entropy": 0.95}))
    reason = by_entropy.vetoes["SIM:NOISE"]
    assert reason.startswith("unpredictable: permutation entropy 0.99") and "selection.max_entropy=0.95" in reason
    assert "SIM:CYCLE" not in by_entropy.vetoes  # a repeating up/down pattern has low entropy
    by_efficiency = select_assets(returns, value, DATES[-1], SelectionParams.from_params({**PERMISSIVE, "min_efficiency": 0.5}))
    reason = by_efficiency.vetoes["SIM:NOISE"]
    assert reason.startswith("unpredictable: efficiency ratio 0.0") and "selection.min_efficiency=0.5" in reason
    assert "SIM:TREND" not in by_efficiency.vetoes  # a steady climb is efficient


def test_nothing_survives_gives_an_empty_selection():
    returns, value = veto_panel()
    params = SelectionParams.from_params({**PERMISSIVE, "min_history_days": 250})
    sel = select_assets(returns, value, DATES[100], params)
    assert sel.selected == [] and len(sel.clusters) == 0 and set(sel.vetoes) == set(returns.columns)
    json.dumps(sel.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------- score and params


def test_composite_score_is_a_weighted_sum_of_centred_ranks():
    features = pd.DataFrame(
        {"momentum": [0.1, 0.3, 0.2], "volatility": [1.0, 2.0, np.nan]}, index=["SIM:A", "SIM:B", "SIM:C"]
    )
    np.testing.assert_allclose(centred_rank(features["momentum"]), [-0.5, 0.5, 0.0])
    np.testing.assert_allclose(centred_rank(features["volatility"]), [-0.5, 0.5, 0.0])  # NaN -> middle
    score = composite_score(features, (("momentum", 1.0), ("volatility", -0.5)))
    np.testing.assert_allclose(score, [-0.5 + 0.25, 0.5 - 0.25, 0.0])


def test_params_reject_unknown_keys_and_bad_values():
    with pytest.raises(ParamsError, match=r"selection.top_k: unknown key \(did you mean top_n\?\)"):
        SelectionParams.from_params({"top_k": 3})
    with pytest.raises(ParamsError, match="selection.top_n: expected an integer"):
        SelectionParams.from_params({"top_n": "3"})
    with pytest.raises(ParamsError, match="score_weights: unknown feature"):
        SelectionParams.from_params({"score_weights": {"alpha": 1.0}})
    with pytest.raises(ParamsError, match="min_history_days"):
        SelectionParams.from_params({"train_days": 50, "min_history_days": 60})
    p = SelectionParams.from_params({"lookbacks": [30, 60], "score_weights": {"momentum": 1, "entropy": -1}})
    assert p.lookbacks == (30, 60) and p.score_weights == (("entropy", -1.0), ("momentum", 1.0))
    assert p == SelectionParams.from_params(p.to_dict())


def test_deterministic():
    returns, value = veto_panel()
    params = SelectionParams.from_params(PERMISSIVE)
    a, b = (select_assets(returns, value, "2022-10-01", params).to_dict() for _ in range(2))
    assert json.dumps(a) == json.dumps(b)


# --------------------------------------------------------------------------- signal kernels


def brute_force_permutation_entropy(x: np.ndarray, order: int) -> float:
    counts = Counter(tuple(np.argsort(x[i : i + order], kind="stable")) for i in range(len(x) - order + 1))
    p = np.array(list(counts.values()), dtype=float) / sum(counts.values())
    return float(-(p * np.log(p)).sum() / math.log(math.factorial(order)))


@pytest.mark.parametrize("order", [2, 3, 4])
def test_permutation_entropy(order):
    x = np.random.default_rng(order).normal(size=400)
    assert signals.permutation_entropy(x, order) == pytest.approx(brute_force_permutation_entropy(x, order), abs=1e-12)
    assert signals.permutation_entropy(np.arange(50.0), order) == 0.0
    assert signals.permutation_entropy(np.random.default_rng(0).normal(size=20000), order) > 0.999
    assert len(list(itertools.permutations(range(order)))) == math.factorial(order)


def test_hurst_exponent_separates_random_walk_and_trend():
    rng = np.random.default_rng(21)
    noise = rng.normal(0, 0.02, 4000)
    assert 0.45 < signals.hurst_exponent(noise) < 0.55
    persistent = np.zeros_like(noise)
    for t in range(1, noise.size):
        persistent[t] = 0.6 * persistent[t - 1] + noise[t]
    assert signals.hurst_exponent(persistent) > 0.65
    reverting = noise - 0.7 * np.r_[0.0, noise[:-1]]
    assert signals.hurst_exponent(reverting) < 0.35
    assert math.isnan(signals.hurst_exponent(noise[:4]))


def test_simple_statistics():
    r = np.random.default_rng(3).standard_t(3, size=500) * 0.02
    s = pd.Series(r)
    assert signals.skewness(r) == pytest.approx(s.skew(), rel=1e-10)
    assert signals.excess_kurtosis(r) == pytest.approx(s.kurt(), rel=1e-10)
    assert signals.annualised_volatility(r, 365) == pytest.approx(s.std() * math.sqrt(365))
    assert signals.annualised_momentum(r, 365) == pytest.approx(np.log1p(r).mean() * 365)
    q = np.quantile(r, 0.05)
    assert signals.conditional_value_at_risk(r, 0.05) == pytest.approx(r[r <= q].mean())
    assert signals.efficiency_ratio(np.full(10, 0.01)) == pytest.approx(1.0)
    assert signals.efficiency_ratio(np.array([0.1, 1 / 1.1 - 1])) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(signals.skewness(np.zeros(10)))


# --------------------------------------------------------------------------- vectorised = per-symbol


def reference_window_features(window: pd.DataFrame, traded_value: pd.DataFrame, params: SelectionParams) -> pd.DataFrame:
    """The per-symbol loop `window_features` replaced (issue 14): signals.py on each dropna'd column."""
    p = PERIODS_PER_YEAR
    stats = {
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


def pandas_corr(values: np.ndarray, min_periods: int) -> np.ndarray:
    return pd.DataFrame(values).corr(min_periods=min_periods).to_numpy("float64")


def reference_feature_columns(window: np.ndarray, traded_value: np.ndarray, params: SelectionParams) -> dict:
    """`_feature_columns` (what select_assets calls) computed by the per-symbol loop."""
    frame = reference_window_features(pd.DataFrame(window), pd.DataFrame(traded_value), params)
    return {name: frame[name].to_numpy("float64") for name in frame.columns}


def reference_veto_reasons(features, params, start, as_of) -> dict[str, str]:
    """The row-by-row veto_reasons the numpy rules replaced (issue 14)."""
    s, window, out = "selection", f"{start.date()}..{as_of.date()}", {}
    for sym, f in features.iterrows():
        if f["n_returns"] < params.min_history_days:
            out[sym] = (f"short history: {int(f['n_returns'])} daily returns in the train window {window} "
                        f"(< {s}.min_history_days={params.min_history_days})")
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
        if not f["liquidity"] >= params.min_traded_value:
            reasons.append(f"illiquid: median traded value {f['liquidity']:.6g} (< {s}.min_traded_value={params.min_traded_value})")
        if reasons:
            out[sym] = "; ".join(reasons)
    return out


def reference_composite_score(features: pd.DataFrame, weights) -> pd.Series:
    """The pandas-rank composite_score the numpy ranks replaced (issue 14)."""
    score = pd.Series(0.0, index=features.index, dtype="float64")
    for name, weight in weights:
        x = features[name]
        n = int(x.notna().sum())
        rank = pd.Series(0.0, index=x.index) if n <= 1 else ((x.rank(method="average") - 1.0) / (n - 1) - 0.5).fillna(0.0)
        score = score + weight * rank
    return score


def as_before(monkeypatch) -> None:
    """select_assets with the math of the code before issue 14: per-symbol features, row-by-row
    vetoes, pandas ranks, pandas ratings lookup and pandas' correlations. Everything else (the
    pool rules: a bar on as_of, the point-in-time universe) is the same code, so the comparison
    is of the math on the same inputs."""
    monkeypatch.setattr(selection, "_feature_columns", reference_feature_columns)
    monkeypatch.setattr(selection, "window_features", reference_window_features)
    monkeypatch.setattr(selection, "veto_reasons", reference_veto_reasons)
    monkeypatch.setattr(selection, "composite_score", reference_composite_score)
    monkeypatch.setattr(selection, "latest_ratings", reference_latest_ratings)
    monkeypatch.setattr(selection, "pairwise_corr", pandas_corr)


def ragged(returns: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Holes and late listings, so the features see closed-up gaps and short histories."""
    rng = np.random.default_rng(seed)
    out = returns.mask(rng.random(returns.shape) < 0.04)
    for j, sym in enumerate(out.columns[::3]):
        out.loc[out.index[: 40 * (j + 1)], sym] = np.nan
    return out


@pytest.fixture(scope="module")
def real_panel() -> tuple[pd.DataFrame, pd.DataFrame]:
    bars = {f"BINANCE:{b}USDT": load_freqtrade(b) for b in real_bases()}
    return returns_matrix(bars), traded_value_matrix(bars)


def assert_features_equal(window: pd.DataFrame, value: pd.DataFrame, params: SelectionParams) -> None:
    got, want = window_features(window, value, params), reference_window_features(window, value, params)
    assert list(got.index) == list(want.index) and list(got.columns) == list(want.columns)
    a, b = got.to_numpy(), want.to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", [1, 2])
def test_window_features_equal_the_per_symbol_loop_on_sim_panels(seed):
    returns, _ = planted_groups(seed, groups=3, per_group=5)
    for panel in (returns, ragged(returns, seed), veto_panel()[0]):
        value = liquidity_like(panel).mask(np.random.default_rng(seed).random(panel.shape) < 0.1)
        for params in (SelectionParams.from_params(PERMISSIVE), SelectionParams.from_params({**PERMISSIVE, "entropy_order": 4, "hurst_max_lag": 8})):
            assert_features_equal(panel.iloc[-250:], value.iloc[-250:], params)


def test_window_features_equal_the_per_symbol_loop_on_real_recordings(real_panel):
    returns, value = real_panel
    params = SelectionParams()
    ends = returns.index[[200, len(returns) // 3, len(returns) // 2, -1]]
    for end in ends:  # early windows hold symbols listed late: short and empty columns
        window = returns.loc[end - pd.Timedelta(days=params.train_days - 1) : end]
        assert_features_equal(window, value.loc[window.index], params)


def selections(returns, value, dates, params, ratings=None, eligible=None):
    out = []
    for as_of in dates:
        s = select_assets(returns, value, as_of, params, ratings, eligible)
        out.append((s.selected, s.vetoes, s.clusters.to_dict(), s.scores, s.features))
    return out


def assert_same_selections(new, old) -> None:
    for (sel, veto, clusters, scores, features), (sel0, veto0, clusters0, scores0, features0) in zip(new, old):
        assert sel == sel0 and veto == veto0 and clusters == clusters0
        pd.testing.assert_series_equal(scores, scores0, rtol=1e-12)
        pd.testing.assert_frame_equal(features, features0, rtol=1e-12)


def test_selections_are_those_of_the_per_symbol_code_on_real_recordings(real_panel, monkeypatch):
    returns, value = real_panel
    params = SelectionParams.from_params({"min_history_days": 120, "max_clusters": 4, "top_n": 1})
    dates = returns.index[300::150]
    new = selections(returns, value, dates, params)
    as_before(monkeypatch)
    old = selections(returns, value, dates, params)
    assert any(len(s[1]) for s in old) and all(len(s[0]) for s in old)  # vetoes fire, symbols get picked
    assert_same_selections(new, old)


def test_selections_are_those_of_the_per_symbol_code_on_sim_panels(monkeypatch):
    returns, _ = planted_groups(8, groups=4, per_group=6)
    panel = ragged(returns, 8)
    value = liquidity_like(panel)
    dates = DATES[200::20]
    ratings = pd.DataFrame({
        "timestamp": np.repeat(epoch_ms(DATES[[150, 230]]), 2), "symbol": ["SIM:G0S0", "SIM:G1S1"] * 2,
        "recommend_all": [0.1, 0.2, 0.3, 0.4], "recommend_ma": 0.0, "recommend_other": 0.0,
    })
    eligible = pd.DataFrame(True, index=panel.index, columns=panel.columns)
    eligible.loc[DATES[210:265], ["SIM:G2S0", "SIM:G3S1"]] = False  # out of the universe for a while
    params = SelectionParams.from_params({**PERMISSIVE, "min_history_days": 60, "top_n": 2})
    new = selections(panel, value, dates, params, ratings, eligible)
    reasons = [r for s in new for r in s[1].values()]
    assert any("not in the point-in-time universe" in r for r in reasons)  # the pool rules fire
    assert any(r.startswith("no bar on") for r in reasons)
    as_before(monkeypatch)
    assert_same_selections(new, selections(panel, value, dates, params, ratings, eligible))


def test_walk_forward_weights_are_unchanged(monkeypatch):
    """The recipe's weights at every rebalance are bit-identical to the per-symbol code's."""
    from quantlake.alpha.backtest import BacktestParams, walk_forward

    rng = np.random.default_rng(12)
    days = pd.date_range("2021-01-01", periods=520, freq="D", name="date")
    factors = rng.normal(0.0, 0.03, size=(len(days), 3))
    cols = {f"SIM:A{i:02d}USDT": factors[:, i % 3] + rng.normal(0.0005, 0.01, len(days)) for i in range(18)}
    cols["SIM:BTCUSDT"] = factors[:, 0]
    returns = ragged(pd.DataFrame(cols, index=days), 12)
    value = liquidity_like(returns)
    params = BacktestParams.from_params({"step_days": 30, "test_days": 30, "selection": {"min_history_days": 100}})
    eligible = pd.DataFrame(True, index=days, columns=returns.columns)
    eligible.loc[days[200:320], ["SIM:A01USDT", "SIM:A05USDT"]] = False
    new = walk_forward(returns, value, params, eligible=eligible)
    as_before(monkeypatch)
    old = walk_forward(returns, value, params, eligible=eligible)
    assert len(old.weights) > 0 and old.weights["date"].nunique() == len(old.windows) > 3
    pd.testing.assert_frame_equal(new.weights, old.weights, check_exact=True)
    pd.testing.assert_frame_equal(new.atom_weights, old.atom_weights, check_exact=True)
    pd.testing.assert_frame_equal(new.equity, old.equity, check_exact=True)


def reference_latest_ratings(ratings, start, as_of):
    """The pandas implementation latest_ratings replaced (issue 14)."""
    day = pd.to_datetime(ratings["timestamp"].to_numpy("int64"), unit="ms")
    inside = np.asarray((day >= start) & (day <= as_of))
    rows = ratings.loc[inside].assign(_day=day[inside]).sort_values(["symbol", "_day"], kind="stable")
    last = rows.groupby("symbol", sort=True).tail(1).set_index("symbol")
    out = last[["recommend_all", "recommend_ma", "recommend_other"]].astype("float64")
    out.columns = ["rating_all", "rating_ma", "rating_other"]
    out.index = pd.Index([str(s) for s in out.index])
    return out


def test_latest_ratings_equal_the_pandas_implementation():
    rng = np.random.default_rng(13)
    n = 4000
    ts = epoch_ms(DATES)[rng.integers(0, len(DATES), n)] + rng.choice([0, 3_600_000], n)  # some off midnight
    ratings = pd.DataFrame({
        "timestamp": ts, "symbol": rng.choice([f"SIM:S{i}" for i in range(30)], n),
        "recommend_all": rng.normal(size=n), "recommend_ma": rng.normal(size=n), "recommend_other": rng.normal(size=n),
    })  # unsorted, with repeated (symbol, day) rows
    for start, as_of in ((DATES[0], DATES[-1]), (DATES[100], DATES[140]), (DATES[10], DATES[10]), (DATES[-1] + pd.Timedelta(days=1), DATES[-1] + pd.Timedelta(days=5))):
        got = selection.latest_ratings(ratings, start, as_of)
        pd.testing.assert_frame_equal(got, reference_latest_ratings(ratings, start, as_of), check_index_type=False)
        # dictionary-encoded symbols (categories in another order, a missing symbol): the same rows
        coded = ratings.assign(symbol=pd.Categorical(ratings["symbol"].where(ratings.index % 97 != 0),
                                                     categories=sorted(set(ratings["symbol"]), reverse=True)))
        pd.testing.assert_frame_equal(selection.latest_ratings(coded, start, as_of),
                                      reference_latest_ratings(coded.dropna(subset=["symbol"]).astype({"symbol": str}), start, as_of),
                                      check_index_type=False)
    assert len(selection.latest_ratings(ratings, DATES[10], DATES[10])) > 0
    # one table indexed once answers every date as the reference does (the backtest's use)
    from quantlake.alpha.ratings import RatingsTable

    for table, frame in ((RatingsTable(ratings), ratings), (RatingsTable(coded), coded.dropna(subset=["symbol"]).astype({"symbol": str}))):
        for i in range(0, len(DATES), 7):
            for days in (1, 30, 365):
                start, as_of = DATES[i] - pd.Timedelta(days=days - 1), DATES[i]
                pd.testing.assert_frame_equal(selection.latest_ratings(table, start, as_of), reference_latest_ratings(frame, start, as_of), check_index_type=False)
    assert selection.latest_ratings(RatingsTable(ratings.iloc[:0]), DATES[0], DATES[-1]).empty


def test_average_rank_is_pandas_rank():
    rng = np.random.default_rng(14)
    for x in (rng.normal(size=50), rng.integers(0, 5, 40).astype(float), np.array([3.0]), np.array([1.0, 1.0, 1.0]),
              np.array([-np.inf, 2.0, np.inf, 2.0])):
        assert selection.average_rank(x).tolist() == pd.Series(x).rank(method="average").tolist()
