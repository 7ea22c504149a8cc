"""Tests of the portfolio optimizers (quantlake.alpha.optimize, quantlake.alpha.covariance).

Reference libraries (test extra): PyPortfolioOpt 1.6 and skfolio 1.12. Definitions aligned in
the comparisons:
- covariance: sklearn's Ledoit-Wolf on daily returns (PyPortfolioOpt gets that matrix as
  ``cov_matrix``; skfolio ``EmpiricalPrior(covariance_estimator=LedoitWolf())``), or the ddof=1
  sample covariance (PyPortfolioOpt ``HRPOpt(returns)``, skfolio's default prior);
- HRP: distance sqrt(0.5 (1 - rho)) with rho from that covariance (skfolio
  ``CovarianceDistance(LedoitWolf())`` / ``PearsonDistance()`` for the sample case), the same
  scipy linkage method, Lopez de Prado's plain leaf order (skfolio
  ``HierarchicalSeriation(optimal_ordering=False)``), bisection into halves;
  skfolio's ``max_weights`` is the same split-factor clamp as our ``max_weight``;
- min-variance / max-Sharpe / risk parity: same covariance (and mean daily return for
  max-Sharpe), long-only, same bounds; the cvxpy solvers run with 1e-10 tolerances (and
  skfolio's min-variance objective scaled x100 from daily variances ~1e-3) so the comparison
  measures definitions, not solver slack. Min-variance agrees with PyPortfolioOpt to 1e-9;
  skfolio's answer still moves by ~1e-6 with its scaling, so it is compared at 1e-5 and our
  exact solution must have the lower (or equal) variance.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.covariance import LedoitWolf

from quantlake.alpha.covariance import (
    correlation_from_covariance,
    estimate_covariance,
    ledoit_wolf_covariance,
)
from quantlake.alpha.optimize import (
    OPTIMIZERS,
    HierarchicalRiskParity,
    MaximumSharpe,
    MinimumVariance,
    OptimizationError,
    RiskParity,
    cap_weights,
    cluster_two_layer_weights,
    make_optimizer,
    optimize_weights,
    risk_contributions,
)

from real_data import FREQTRADE, real_data_root
REAL_PAIRS = ("BTC", "ETH", "BNB", "ADA", "XRP", "LTC", "TRX", "LINK", "DOGE", "XLM")
TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
METHODS = sorted(OPTIMIZERS)

warnings.filterwarnings("ignore", module="cvxpy")
warnings.filterwarnings("ignore", module="skfolio")


def factor_returns(n_assets: int, n_days: int, seed: int) -> pd.DataFrame:
    """Seeded three-factor daily returns with a positive drift (crypto-like volatilities)."""
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((n_days, 3)) * np.array([0.03, 0.015, 0.01])
    loadings = rng.uniform(0.2, 1.3, (3, n_assets))
    noise = rng.standard_normal((n_days, n_assets)) * rng.uniform(0.01, 0.06, n_assets)
    values = factors @ loadings + noise + rng.normal(0.001, 0.001, n_assets)
    dates = pd.date_range("2022-01-01", periods=n_days, freq="D")
    return pd.DataFrame(values, index=dates, columns=[f"BINANCE:C{i:02d}USDT" for i in range(n_assets)])


@pytest.fixture(scope="module")
def returns() -> pd.DataFrame:
    return factor_returns(12, 400, seed=11)


@pytest.fixture(scope="module")
def clusters(returns) -> pd.Series:
    labels = ["L1", "L1", "L1", "L1", "DEFI", "DEFI", "DEFI", "MEME", "MEME", "L1", "DEFI", "MEME"]
    return pd.Series(labels, index=returns.columns)


@pytest.fixture(scope="module")
def real_returns() -> pd.DataFrame:
    """Daily simple returns of 10 real Binance USDT pairs over their last 500 common days."""
    closes = {}
    for base in REAL_PAIRS:
        bars = json.loads((real_data_root() / FREQTRADE / f"{base}_USDT-1d.json").read_text())
        closes[base] = pd.Series([b[4] for b in bars], index=[b[0] for b in bars], dtype=float)
    panel = pd.DataFrame(closes).dropna().iloc[-501:]
    return panel.pct_change().iloc[1:]


def sharpe(weights: pd.Series, returns: pd.DataFrame, cov: np.ndarray) -> float:
    w = weights.to_numpy()
    return float(returns.mean().to_numpy() @ w / np.sqrt(w @ cov @ w))


# --------------------------------------------------------------------------- covariance


@pytest.mark.parametrize("shape", [(400, 12), (30, 60), (5, 1)])
def test_ledoit_wolf_matches_sklearn(shape):
    x = np.random.default_rng(3).standard_normal(shape) * 0.02
    cov, shrinkage = ledoit_wolf_covariance(x)
    ref = LedoitWolf().fit(x)
    np.testing.assert_allclose(cov, ref.covariance_, rtol=1e-12, atol=1e-18)
    assert shrinkage == pytest.approx(ref.shrinkage_, rel=1e-12, abs=1e-15)


def test_sample_covariance_matches_pandas(returns):
    np.testing.assert_allclose(
        estimate_covariance(returns.to_numpy(), "sample"), returns.cov().to_numpy(), rtol=1e-12
    )
    corr = correlation_from_covariance(returns.cov().to_numpy())
    np.testing.assert_allclose(corr, returns.corr().to_numpy(), atol=1e-12)


def test_unknown_covariance_is_rejected(returns):
    with pytest.raises(ValueError, match="ledoit_wolf"):
        estimate_covariance(returns.to_numpy(), "oas")
    with pytest.raises(OptimizationError, match="unknown covariance estimator 'oas'"):
        HierarchicalRiskParity(covariance="oas").fit(returns)


# --------------------------------------------------------------------------- properties


CAP_CASES = {
    "no caps": dict(max_weight=1.0, max_cluster_weight=1.0),
    "asset cap": dict(max_weight=0.12, max_cluster_weight=1.0),
    "asset and cluster caps": dict(max_weight=0.2, max_cluster_weight=0.4),
}


@pytest.mark.parametrize("caps", list(CAP_CASES), ids=list(CAP_CASES))
@pytest.mark.parametrize("method", METHODS)
def test_weights_are_long_only_full_capped_and_ordered(method, caps, returns, clusters):
    params = CAP_CASES[caps]
    weights = make_optimizer(method, **params).fit(returns, clusters=clusters).weights_
    assert list(weights.index) == list(returns.columns)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert (weights >= 0).all()
    assert weights.max() <= params["max_weight"] + 1e-12
    assert weights.groupby(clusters).sum().max() <= params["max_cluster_weight"] + 1e-12
    again = make_optimizer(method, **params).fit(returns, clusters=clusters).weights_
    assert weights.to_numpy().tobytes() == again.to_numpy().tobytes()


@pytest.mark.parametrize("method", METHODS)
def test_result_does_not_depend_on_column_order(method, returns, clusters):
    params = dict(max_weight=0.2, max_cluster_weight=0.5)
    weights = make_optimizer(method, **params).fit(returns, clusters=clusters).weights_
    shuffled = returns[returns.columns[::-1]]
    reversed_weights = make_optimizer(method, **params).fit(shuffled, clusters=clusters).weights_
    assert list(reversed_weights.index) == list(shuffled.columns)
    pd.testing.assert_series_equal(reversed_weights.reindex(returns.columns), weights, atol=1e-9, rtol=0)


@pytest.mark.parametrize("max_weight", [1.0, 0.2])
def test_min_variance_has_the_lowest_variance(max_weight, returns, clusters):
    cov = MinimumVariance().fit(returns).covariance_.to_numpy()
    variance = {
        method: float(w @ cov @ w)
        for method in METHODS
        for w in [make_optimizer(method, max_weight=max_weight).fit(returns, clusters=clusters).weights_.to_numpy()]
    }
    assert all(variance["min_variance"] <= v * (1 + 1e-12) for v in variance.values()), variance


@pytest.mark.parametrize("max_weight", [1.0, 0.2])
def test_max_sharpe_has_the_highest_sharpe(max_weight, returns, clusters):
    cov = MinimumVariance().fit(returns).covariance_.to_numpy()
    ratios = {
        method: sharpe(make_optimizer(method, max_weight=max_weight).fit(returns, clusters=clusters).weights_, returns, cov)
        for method in METHODS
    }
    assert all(ratios["max_sharpe"] >= r * (1 - 1e-12) for r in ratios.values()), ratios


@pytest.mark.parametrize("covariance", ["ledoit_wolf", "sample"])
def test_risk_parity_equalises_risk_contributions(covariance, returns, real_returns):
    for panel in (returns, real_returns):
        model = RiskParity(covariance=covariance).fit(panel)
        contributions = risk_contributions(model.weights_, model.covariance_)
        np.testing.assert_allclose(contributions.to_numpy(), 1.0 / panel.shape[1], rtol=1e-10)


def test_cluster_two_layer_by_hand():
    # Cluster A: two uncorrelated assets of variance 0.01 and 0.04 -> inside weights 0.8/0.2,
    # cluster variance 0.64 * 0.01 + 0.04 * 0.04 = 0.008; cluster B: one asset of variance
    # 0.02. Across: 1/0.008 : 1/0.02 = 5/7 : 2/7.
    cov = np.diag([0.01, 0.04, 0.02])
    weights = cluster_two_layer_weights(cov, np.array([0, 0, 1]))
    np.testing.assert_allclose(weights, [4 / 7, 1 / 7, 2 / 7], rtol=1e-14)


def test_cluster_two_layer_uses_the_caller_clusters(returns, clusters):
    model = make_optimizer("cluster_two_layer").fit(returns, clusters=clusters)
    cov = model.covariance_
    for label, members in clusters.groupby(clusters).groups.items():
        inside = model.weights_[members] / model.weights_[members].sum()
        inverse_variance = 1 / np.diag(cov.loc[members, members])
        np.testing.assert_allclose(inside.to_numpy(), inverse_variance / inverse_variance.sum(), rtol=1e-12)
    with pytest.raises(OptimizationError, match="needs clusters"):
        make_optimizer("cluster_two_layer").fit(returns)


def test_inverse_vol_and_equal_weight(returns):
    weights = optimize_weights(returns, "inverse_vol", covariance="sample")
    inv = 1 / returns.std()
    pd.testing.assert_series_equal(weights, (inv / inv.sum()).rename("weight"), rtol=1e-12, check_index_type=False)
    assert np.allclose(optimize_weights(returns, "equal_weight"), 1 / returns.shape[1], rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- capping


def test_cap_weights_redistributes_in_proportion():
    # 0.5 is capped at 0.4; the freed 0.1 goes to the others in proportion 3:2.
    out = cap_weights(np.array([0.5, 0.3, 0.2]), np.full(3, 0.4))
    np.testing.assert_allclose(out, [0.4, 0.36, 0.24], rtol=1e-14)


def test_cap_weights_with_a_cluster_cap():
    # Cluster 0 = {0, 1} holds 0.8 > 0.5: it gets 0.5 split 5:3 (0.3125, 0.1875); the other
    # 0.5 goes to cluster 1 = {2, 3} split 1:1, which the 0.3 asset cap allows.
    out = cap_weights(np.array([0.5, 0.3, 0.1, 0.1]), np.full(4, 0.3), np.array([0, 0, 1, 1]), np.full(2, 0.5))
    # The asset cap 0.3 then binds inside cluster 0 (0.3125 > 0.3): 0.3 and 0.2.
    np.testing.assert_allclose(out, [0.3, 0.2, 0.25, 0.25], rtol=1e-14)


def test_hrp_cap_is_applied_inside_the_bisection(returns):
    uncapped = HierarchicalRiskParity().fit(returns).weights_
    capped = HierarchicalRiskParity(max_weight=0.1).fit(returns).weights_
    assert uncapped.max() > 0.1 and capped.max() <= 0.1 + 1e-12
    assert capped.sum() == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------- references


def skfolio_hrp(linkage: str, covariance: str, max_weight: float = 1.0):
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.distance import CovarianceDistance, PearsonDistance
    from skfolio.moments import LedoitWolf as SkLedoitWolf
    from skfolio.optimization import HierarchicalRiskParity as SkHRP
    from skfolio.prior import EmpiricalPrior
    from skfolio.seriation import HierarchicalSeriation

    seriation = HierarchicalSeriation(
        hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod(linkage)),
        optimal_ordering=False,
    )
    if covariance == "sample":
        return SkHRP(distance_estimator=PearsonDistance(), seriation_estimator=seriation, max_weights=max_weight)
    return SkHRP(
        prior_estimator=EmpiricalPrior(covariance_estimator=SkLedoitWolf()),
        distance_estimator=CovarianceDistance(covariance_estimator=SkLedoitWolf()),
        seriation_estimator=seriation,
        max_weights=max_weight,
    )


@pytest.mark.parametrize("linkage", ["single", "ward"])
@pytest.mark.parametrize("covariance", ["ledoit_wolf", "sample"])
@pytest.mark.parametrize("panel", ["synthetic", "real"])
def test_hrp_matches_pyportfolioopt_and_skfolio(panel, covariance, linkage, returns, real_returns):
    from pypfopt import HRPOpt

    x = returns if panel == "synthetic" else real_returns
    ours = HierarchicalRiskParity(covariance=covariance, linkage=linkage).fit(x)
    if covariance == "sample":
        pypfopt = HRPOpt(x).optimize(linkage)
    else:
        pypfopt = HRPOpt(cov_matrix=ours.covariance_).optimize(linkage)
    np.testing.assert_allclose(ours.weights_.to_numpy(), pd.Series(pypfopt)[x.columns].to_numpy(), atol=1e-12)
    theirs = skfolio_hrp(linkage, covariance).fit(x).weights_
    np.testing.assert_allclose(ours.weights_.to_numpy(), theirs, atol=1e-12)


@pytest.mark.parametrize("max_weight", [0.1, 0.15])
def test_capped_hrp_matches_skfolio(max_weight, returns, real_returns):
    for x in (returns, real_returns):
        ours = HierarchicalRiskParity(max_weight=max_weight).fit(x).weights_
        theirs = skfolio_hrp("single", "ledoit_wolf", max_weight=max_weight).fit(x).weights_
        np.testing.assert_allclose(ours.to_numpy(), theirs, atol=1e-12)


@pytest.mark.parametrize("max_weight", [1.0, 0.15])
@pytest.mark.parametrize("panel", ["synthetic", "real"])
def test_min_variance_matches_pyportfolioopt_and_skfolio(panel, max_weight, returns, real_returns):
    from pypfopt import EfficientFrontier
    from skfolio.moments import LedoitWolf as SkLedoitWolf
    from skfolio.optimization import MeanRisk, ObjectiveFunction
    from skfolio.prior import EmpiricalPrior

    x = returns if panel == "synthetic" else real_returns
    ours = MinimumVariance(max_weight=max_weight).fit(x)
    pypfopt = EfficientFrontier(None, ours.covariance_, weight_bounds=(0, max_weight)).min_volatility()
    np.testing.assert_allclose(ours.weights_.to_numpy(), pd.Series(pypfopt)[x.columns].to_numpy(), atol=1e-9)
    skfolio = MeanRisk(
        objective_function=ObjectiveFunction.MINIMIZE_RISK,
        prior_estimator=EmpiricalPrior(covariance_estimator=SkLedoitWolf()),
        max_weights=max_weight,
        solver_params=TIGHT,
        scale_objective=100.0,
    ).fit(x)
    # skfolio's interior-point answer moves by ~1e-6 with its scaling on the nearly flat
    # objective of correlated crypto assets (PyPortfolioOpt's agrees to 1e-12): compare at
    # 1e-5 and check that ours is at least as good.
    np.testing.assert_allclose(ours.weights_.to_numpy(), skfolio.weights_, atol=1e-5)
    w, cov = ours.weights_.to_numpy(), ours.covariance_.to_numpy()
    assert w @ cov @ w <= skfolio.weights_ @ cov @ skfolio.weights_ * (1 + 1e-12)


def test_min_variance_with_cluster_caps_matches_pyportfolioopt(returns, clusters):
    from pypfopt import EfficientFrontier

    ours = MinimumVariance(max_weight=0.3, max_cluster_weight=0.35).fit(returns, clusters=clusters)
    ef = EfficientFrontier(None, ours.covariance_, weight_bounds=(0, 0.3))
    ef.add_sector_constraints(clusters.to_dict(), {}, {c: 0.35 for c in clusters.unique()})
    pypfopt = pd.Series(ef.min_volatility())[returns.columns]
    np.testing.assert_allclose(ours.weights_.to_numpy(), pypfopt.to_numpy(), atol=1e-6)
    assert ours.weights_.groupby(clusters).sum().max() == pytest.approx(0.35, abs=1e-12)  # binding


@pytest.mark.parametrize("max_weight", [1.0, 0.3])
def test_max_sharpe_matches_pyportfolioopt(max_weight, returns, real_returns):
    from pypfopt import EfficientFrontier

    for x, risk_free in ((returns, 0.0), (real_returns, 0.0002)):
        ours = MaximumSharpe(max_weight=max_weight, risk_free=risk_free).fit(x)
        # Annualised inputs (x365) for the solver's scaling; the tangency weights are the same.
        ef = EfficientFrontier(x.mean() * 365, ours.covariance_ * 365, weight_bounds=(0, max_weight), solver="CLARABEL")
        pypfopt = pd.Series(ef.max_sharpe(risk_free_rate=risk_free * 365))[x.columns]
        np.testing.assert_allclose(ours.weights_.to_numpy(), pypfopt.to_numpy(), atol=1e-6)


def test_max_sharpe_with_cluster_caps_matches_pyportfolioopt(returns, clusters):
    from pypfopt import EfficientFrontier

    ours = MaximumSharpe(max_weight=0.3, max_cluster_weight=0.4).fit(returns, clusters=clusters)
    ef = EfficientFrontier(returns.mean() * 365, ours.covariance_ * 365, weight_bounds=(0, 0.3), solver="CLARABEL")
    ef.add_sector_constraints(clusters.to_dict(), {}, {c: 0.4 for c in clusters.unique()})
    pypfopt = pd.Series(ef.max_sharpe(risk_free_rate=0.0))[returns.columns]
    np.testing.assert_allclose(ours.weights_.to_numpy(), pypfopt.to_numpy(), atol=1e-6)
    assert ours.weights_.groupby(clusters).sum().max() == pytest.approx(0.4, abs=1e-12)  # binding


def test_risk_parity_matches_skfolio(returns, real_returns):
    from skfolio.moments import LedoitWolf as SkLedoitWolf
    from skfolio.optimization import RiskBudgeting
    from skfolio.prior import EmpiricalPrior

    for x in (returns, real_returns):
        ours = RiskParity().fit(x).weights_
        theirs = RiskBudgeting(
            prior_estimator=EmpiricalPrior(covariance_estimator=SkLedoitWolf()), solver_params=TIGHT
        ).fit(x)
        np.testing.assert_allclose(ours.to_numpy(), theirs.weights_, atol=1e-6)


# --------------------------------------------------------------------------- degenerate inputs and errors


@pytest.mark.parametrize("method", METHODS)
def test_one_asset_gets_everything(method, returns):
    one = returns.iloc[:, :1]
    weights = make_optimizer(method).fit(one, clusters=pd.Series(["X"], index=one.columns)).weights_
    assert weights.tolist() == [1.0]
    with pytest.raises(OptimizationError, match="max_weight"):
        make_optimizer(method, max_weight=0.5).fit(one, clusters=pd.Series(["X"], index=one.columns))


@pytest.mark.parametrize("method", METHODS)
def test_constant_asset_gets_zero_weight(method, returns, clusters):
    stalled = returns.copy()
    stalled["BINANCE:C03USDT"] = 0.0
    model = make_optimizer(method).fit(stalled, clusters=clusters)
    assert model.weights_["BINANCE:C03USDT"] == 0.0
    assert model.zero_variance_ == ["BINANCE:C03USDT"]
    assert model.weights_.sum() == pytest.approx(1.0, abs=1e-12)
    expected = make_optimizer(method).fit(returns.drop(columns="BINANCE:C03USDT"), clusters=clusters).weights_
    pd.testing.assert_series_equal(model.weights_.drop("BINANCE:C03USDT"), expected, atol=1e-12, rtol=0)


def test_all_constant_is_an_error(returns):
    with pytest.raises(OptimizationError, match="constant returns"):
        HierarchicalRiskParity().fit(returns * 0.0)


@pytest.mark.parametrize("method", METHODS)
def test_fewer_days_than_assets_with_ledoit_wolf(method):
    x = factor_returns(40, 25, seed=5)
    codes = pd.Series([f"K{i % 4}" for i in range(40)], index=x.columns)
    weights = make_optimizer(method, max_weight=0.1).fit(x, clusters=codes).weights_
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert weights.between(0, 0.1 + 1e-12).all()


def test_singular_sample_covariance_is_refused_by_the_qp_methods():
    x = factor_returns(40, 25, seed=5)
    for method in ("min_variance", "max_sharpe"):
        with pytest.raises(OptimizationError, match="singular"):
            optimize_weights(x, method, covariance="sample")
    assert optimize_weights(x, "hrp", covariance="sample").sum() == pytest.approx(1.0)


def test_infinite_returns_are_rejected_naming_the_columns(returns):
    bad = returns.copy()
    bad.iloc[3, 2] = np.inf
    with pytest.raises(OptimizationError, match=r"infinite.*BINANCE:C02USDT"):
        optimize_weights(bad, "hrp")


def periodic_panel(seed: int, isolated: bool, period: int = 30, periods: int = 12, n_assets: int = 6) -> pd.DataFrame:
    """A panel repeating one `period`-day block: any whole number of blocks has the same moments.

    Column A (the first) earns m +/- s on alternate days; when `isolated`, every other column
    is made orthogonal to that pattern inside the block, so A's covariance with them is 0. The
    other columns share a common factor (so their correlation distances are clearly below A's).
    """
    rng = np.random.default_rng(seed)
    alternate = np.tile([1.0, -1.0], period // 2)
    a = rng.uniform(0.0005, 0.002) + rng.uniform(0.03, 0.06) * alternate
    common = rng.standard_normal((period, 1)) * 0.03  # the others move together: HRP merges A last, no ties
    block = common + rng.standard_normal((period, n_assets - 1)) * rng.uniform(0.01, 0.03, n_assets - 1)
    block = block + rng.normal(0.002, 0.001, n_assets - 1) + 0.5 * a[:, None] * (not isolated)
    if isolated:
        block -= np.outer(alternate, alternate @ block) / (alternate @ alternate)
    values = np.tile(np.column_stack([a, block]), (periods, 1))
    dates = pd.date_range("2022-01-01", periods=period * periods, freq="D")
    return pd.DataFrame(values, index=dates, columns=[f"BINANCE:P{i}USDT" for i in range(n_assets)])


@pytest.mark.parametrize("covariance", ["ledoit_wolf", "sample"])
@pytest.mark.parametrize("method", METHODS)
def test_leading_missing_days_never_raise_an_assets_weight(method, covariance):
    # the property behind "no zero padding": an asset whose first days are missing (a late
    # listing) is estimated from the days it traded; missing days never make it look safer
    codes = pd.Series(["X", "X", "Y", "Y", "Z", "Z"], index=periodic_panel(0, True).columns)
    cases = [(seed, True) for seed in range(4)] + ([(seed, False) for seed in range(4)] if covariance == "ledoit_wolf" else [])
    for seed, isolated in cases:
        full = periodic_panel(seed, isolated)
        asset = full.columns[0]
        previous = None
        for blocks in range(0, 8, 2):  # 0, 60, 120, 180 leading missing days
            x = full.copy()
            x.iloc[: 30 * blocks, 0] = np.nan
            w = optimize_weights(x, method, clusters=codes, covariance=covariance, max_weight=0.6, max_cluster_weight=0.8)
            assert w.sum() == pytest.approx(1.0, abs=1e-12) and (w >= 0).all()
            if previous is not None:
                assert w[asset] <= previous + 1e-9, (seed, isolated, blocks, w[asset], previous)
                if covariance == "ledoit_wolf":  # the observed days carry the same moments: unchanged
                    assert w[asset] == pytest.approx(previous, abs=1e-9)
            previous = w[asset]
        if method != "equal_weight":  # zero padding (the old bug) does raise it: the property can fail
            padded = optimize_weights(x.fillna(0.0), method, clusters=codes, covariance=covariance,
                                      max_weight=0.6, max_cluster_weight=0.8)
            if method != "max_sharpe":  # padding also lowers the mean, which max_sharpe punishes
                assert padded[asset] > previous + 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_an_asset_needs_two_observed_returns(method, returns, clusters):
    x = returns.copy()
    x.iloc[:-1, 5] = np.nan  # one observed return: no risk information
    model = make_optimizer(method).fit(x, clusters=clusters)
    assert model.weights_.iloc[5] == 0.0 and model.zero_variance_ == [x.columns[5]]
    x.iloc[-2, 5] = returns.iloc[-2, 5]  # two: it is estimated
    model = make_optimizer(method).fit(x, clusters=clusters)
    assert model.zero_variance_ == [] and model.weights_.sum() == pytest.approx(1.0, abs=1e-12)


def test_hrp_weight_of_a_young_asset_uses_its_observed_days():
    x = factor_returns(6, 365, seed=3)
    young = x.copy()
    young.iloc[:185, 0] = np.nan  # 180 of 365 days observed
    full_w = optimize_weights(x, "hrp")[x.columns[0]]
    young_w = optimize_weights(young, "hrp")[x.columns[0]]
    padded_w = optimize_weights(young.fillna(0.0), "hrp")[x.columns[0]]
    assert abs(young_w - full_w) < 0.25 * full_w  # about its weight with the whole history
    assert padded_w > 1.3 * full_w  # the zero-padded window would have overweighted it


def test_infeasible_caps_are_rejected(returns, clusters):
    with pytest.raises(OptimizationError, match=r"max_weight=0.05 x 12 assets"):
        optimize_weights(returns, "inverse_vol", max_weight=0.05)
    with pytest.raises(OptimizationError, match="clusters"):
        optimize_weights(returns, "min_variance", clusters=clusters, max_cluster_weight=0.3)
    with pytest.raises(OptimizationError, match="needs clusters"):
        optimize_weights(returns, "hrp", max_cluster_weight=0.5)
    with pytest.raises(OptimizationError, match=r"max_weight must be in \(0, 1\]"):
        optimize_weights(returns, "hrp", max_weight=0.0)
    with pytest.raises(OptimizationError, match="no label"):
        optimize_weights(returns, "hrp", clusters=clusters.iloc[1:], max_cluster_weight=0.5)


def test_max_sharpe_without_positive_excess_return_is_an_error(returns):
    with pytest.raises(OptimizationError, match="risk_free"):
        optimize_weights(returns - 0.01, "max_sharpe")


def test_unknown_method_and_parameter_are_rejected(returns):
    with pytest.raises(OptimizationError, match=r"unknown optimization method 'mvo'.*'hrp'"):
        optimize_weights(returns, "mvo")
    with pytest.raises(OptimizationError, match="has no parameter"):
        make_optimizer("hrp", risk_free=0.01)
    with pytest.raises(OptimizationError, match="unknown linkage"):
        optimize_weights(returns, "hrp", linkage="centroidal")


def test_optimize_weights_passes_each_method_its_own_settings(returns):
    weights = optimize_weights(returns, "hrp", risk_free=0.01, linkage="ward", max_weight=0.2)
    expected = HierarchicalRiskParity(linkage="ward", max_weight=0.2).fit(returns).weights_
    pd.testing.assert_series_equal(weights, expected)
    model = clone(make_optimizer("max_sharpe", risk_free=0.0001))
    assert model.get_params()["risk_free"] == 0.0001
