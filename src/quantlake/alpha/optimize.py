"""Long-only portfolio optimizers of the Alpha Cycle (scikit-learn / skfolio style estimators).

Every optimizer is an estimator: ``fit(X, clusters=None) -> self`` with ``X`` a DataFrame of
daily simple returns (dates x assets; NaN = a day the asset was not observed, e.g. before its
listing: never read as a zero) and ``clusters`` an optional Series
asset -> cluster label. After ``fit``, ``weights_`` is a Series indexed like ``X.columns``
(same order), long-only, summing to 1, within the caps:

- ``max_weight``: per-asset cap; ``max_cluster_weight``: per-cluster cap (needs ``clusters``).
- ``min_variance`` and ``max_sharpe`` solve their quadratic programme with the caps as
  bounds and linear constraints (exact active-set solver below).
- ``hrp`` applies the asset cap inside the recursive bisection, clamping every split factor
  so that no branch receives more than its members' caps allow (skfolio's rule).
- The other heuristics (and ``hrp`` for the cluster cap) compute their raw weights and then
  cap them by iterative capping and proportional redistribution (``cap_weights``).

Assets whose observed returns are constant over the window (zero variance: a stalled series)
or that have fewer than 2 observed returns carry no risk information; every method gives them
weight 0 and lists them in ``zero_variance_``.

Missing days: the covariance comes from ``covariance.observed_covariance`` (pairwise-complete
on the observed days, see there) and max_sharpe's expected returns are the means over each
asset's observed days, so an asset's missing days never make it look safer: adding leading
missing days to an asset whose observed returns are a sample of the same process leaves its
weight unchanged (Ledoit-Wolf) or lowers it (sample covariance, whose ddof=1 variance grows a
little with fewer days); tests/test_optimize.py checks this for every method.

Definitions shared with the reference libraries (the tests check them against PyPortfolioOpt
and skfolio): covariance = sklearn's Ledoit-Wolf (default) or the ddof=1 sample covariance;
HRP distance sqrt(0.5 * (1 - rho)) with rho from that covariance, scipy linkage (default
``single``), quasi-diagonal order = the linkage's leaf order, recursive bisection of the
ordered list into halves with inverse-variance cluster portfolios.

Pure functions of their inputs: no IO, no randomness, ties broken by column order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.cluster.hierarchy as sch
from scipy.spatial.distance import squareform
from sklearn.base import BaseEstimator

from quantlake.alpha.covariance import (
    COVARIANCE_ESTIMATORS,
    correlation_from_covariance,
    observed_covariance,
)
from quantlake.alpha.sections import LINKAGE_METHODS, OPTIMIZATION_METHODS
from quantlake.contracts import QuantlakeError

# Slack allowed when comparing weights with caps: weights are O(1) and the kernels keep the
# caps exactly up to rounding.
CAP_TOLERANCE = 1e-12


class OptimizationError(QuantlakeError, ValueError):
    """Inputs or constraints the optimizer cannot honour; the message says which."""


# --------------------------------------------------------------------------- input checks


def _returns_array(X: Any) -> np.ndarray:
    """X as a float (T x n) array, after checking the contract of the returns panel."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"returns must be a pandas DataFrame (dates x assets), got {type(X).__name__}")
    if X.shape[1] == 0:
        raise OptimizationError("returns have no columns (no assets to allocate)")
    if X.columns.has_duplicates:
        dup = sorted({str(c) for c in X.columns[X.columns.duplicated()]})
        raise OptimizationError(f"returns have duplicate columns: {dup}")
    if X.shape[0] < 2:
        raise OptimizationError(f"returns need at least 2 rows to estimate a covariance, got {X.shape[0]}")
    try:
        values = X.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        bad = [str(c) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        raise OptimizationError(f"returns columns are not numeric: {bad}") from exc
    bad_cells = np.isinf(values)
    if bad_cells.any():
        bad = [str(c) for c in X.columns[bad_cells.any(axis=0)]]
        raise OptimizationError(f"returns contain infinite values in columns {bad}")
    return values


def _cluster_codes(clusters: Any, columns: pd.Index) -> np.ndarray:
    """Cluster code (0..k-1, in order of first appearance along the columns) of every column."""
    if not isinstance(clusters, pd.Series):
        raise TypeError(f"clusters must be a pandas Series asset -> label, got {type(clusters).__name__}")
    if clusters.index.has_duplicates:
        dup = sorted({str(c) for c in clusters.index[clusters.index.duplicated()]})
        raise OptimizationError(f"clusters name some assets twice: {dup}")
    missing = [str(c) for c in columns if c not in clusters.index]
    if missing:
        raise OptimizationError(f"clusters give no label for assets {missing}")
    labels = clusters.reindex(columns)
    if labels.isna().any():
        unlabelled = [str(c) for c in columns[labels.isna().to_numpy()]]
        raise OptimizationError(f"clusters have a missing label for assets {unlabelled}")
    codes, _ = pd.factorize(labels, sort=False)
    return codes.astype(np.intp)


def _check_cap(name: str, value: float) -> float:
    value = float(value)
    if not (0.0 < value <= 1.0):
        raise OptimizationError(f"{name} must be in (0, 1], got {value}")
    return value


def _check_caps_feasible(
    assets: pd.Index, asset_cap: np.ndarray, codes: np.ndarray | None, cluster_cap: np.ndarray | None
) -> None:
    """Raise unless some long-only portfolio of these assets sums to 1 within the caps."""
    n = len(assets)
    names = [str(a) for a in assets] if n <= 20 else [str(a) for a in assets[:20]] + ["..."]
    if asset_cap.sum() < 1.0 - CAP_TOLERANCE:
        raise OptimizationError(
            f"caps are infeasible: max_weight={asset_cap.max():g} x {n} assets = "
            f"{asset_cap.sum():g} < 1 (need max_weight >= {1.0 / n:.6g} for assets {names})"
        )
    if codes is not None and cluster_cap is not None:
        reach = np.minimum(cluster_cap, np.bincount(codes, asset_cap, minlength=len(cluster_cap)))
        if reach.sum() < 1.0 - CAP_TOLERANCE:
            raise OptimizationError(
                f"caps are infeasible: with max_cluster_weight={cluster_cap.max():g} the "
                f"{int((np.bincount(codes) > 0).sum())} clusters of assets {names} can hold at "
                f"most {reach.sum():g} < 1"
            )


# --------------------------------------------------------------------------- capping


def _water_fill(raw: np.ndarray, caps: np.ndarray, total: float) -> np.ndarray:
    """min(caps, lam * raw) summing to ``total`` (raw > 0, caps.sum() >= total)."""
    out = np.zeros_like(raw)
    capped = np.zeros(raw.shape, dtype=bool)
    for _ in range(len(raw) + 1):
        free = ~capped
        out[free] = (total - out[capped].sum()) * raw[free] / raw[free].sum()
        over = free & (out > caps)
        if not over.any():
            return out
        out[over] = caps[over]
        capped |= over
        if capped.all():
            return out
    raise AssertionError("water filling did not converge")  # each pass caps >= 1 asset


def cap_weights(
    raw: np.ndarray,
    asset_cap: np.ndarray,
    codes: np.ndarray | None = None,
    cluster_cap: np.ndarray | None = None,
) -> np.ndarray:
    """Cap raw positive weights by iterative capping and proportional redistribution.

    Normalise ``raw`` to sum 1; while some cluster or asset exceeds its cap, fix it at its cap
    (a capped cluster's members share the cluster cap in proportion to their raw weights,
    within their own caps) and spread the rest over the unfixed assets in proportion to their
    raw weights. Unfixed weights only grow from pass to pass, so nothing fixed would come back
    under its cap if freed; every pass fixes something, so at most n + k passes are needed.
    The caller has checked feasibility (``_check_caps_feasible``).
    """
    raw = np.asarray(raw, dtype=float)
    if np.any(raw <= 0) or not np.all(np.isfinite(raw)):
        raise OptimizationError("capping needs positive finite raw weights")
    use_clusters = codes is not None and cluster_cap is not None
    k = len(cluster_cap) if use_clusters else 0
    member_caps = np.bincount(codes, asset_cap, minlength=k) if use_clusters else None
    out = np.zeros_like(raw)
    fixed = np.zeros(raw.shape, dtype=bool)
    for _ in range(len(raw) + k + 1):
        free = ~fixed
        if not free.any():
            break
        out[free] = (1.0 - out[fixed].sum()) * raw[free] / raw[free].sum()
        changed = False
        if use_clusters:
            totals = np.bincount(codes, out, minlength=k)
            # A cluster whose members' caps sum below its cap is limited by the asset caps.
            binding = (totals > cluster_cap + CAP_TOLERANCE) & (member_caps > cluster_cap)
            for c in np.flatnonzero(binding):
                members = codes == c
                out[members] = _water_fill(raw[members], asset_cap[members], cluster_cap[c])
                fixed |= members
                changed = True
        over = ~fixed & (out > asset_cap + CAP_TOLERANCE)
        if over.any():
            out[over] = asset_cap[over]
            fixed |= over
            changed = True
        if not changed:
            return out
    if abs(out.sum() - 1.0) > 1e-9:
        raise OptimizationError("caps leave no room to allocate the full budget")
    return out


# --------------------------------------------------------------------------- heuristics


def inverse_variance_weights(variances: np.ndarray) -> np.ndarray:
    """Weights proportional to 1 / variance."""
    inv = 1.0 / np.asarray(variances, dtype=float)
    return inv / inv.sum()


def cluster_two_layer_weights(cov: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Inverse-variance inside each cluster, then inverse-variance across cluster portfolios."""
    weights = np.zeros(cov.shape[0])
    cluster_var = []
    present = np.unique(codes)
    for c in present:
        members = np.flatnonzero(codes == c)
        inner = inverse_variance_weights(np.diag(cov)[members])
        weights[members] = inner
        cluster_var.append(inner @ cov[np.ix_(members, members)] @ inner)
    across = inverse_variance_weights(np.array(cluster_var))
    return weights * across[np.searchsorted(present, codes)]


def equal_risk_contribution_weights(cov: np.ndarray, tol: float = 1e-13, max_iter: int = 100) -> np.ndarray:
    """Equal-risk-contribution weights (w_i (Cov w)_i all equal), by Newton's method.

    Solves Spinu's convex problem min 0.5 y'Cy - (1/n) sum log y_i (unique minimiser, whose
    normalisation is the ERC portfolio) with the damped Newton step of self-concordant
    functions, which stays inside y > 0 and converges quadratically. ``tol`` bounds
    |y_i (Cy)_i - 1/n|, i.e. the error of each risk-contribution share.
    """
    scale = np.mean(np.diag(cov))
    c = cov / scale  # unit mean variance: the tolerances are then scale-free
    n = c.shape[0]
    budget = np.full(n, 1.0 / n)
    y = 1.0 / np.sqrt(np.diag(c))
    y /= np.sqrt(y @ c @ y)  # at the optimum y'Cy = sum(budget) = 1
    for _ in range(max_iter):
        cy = c @ y
        if np.max(np.abs(y * cy - budget)) <= tol:
            return y / y.sum()
        grad = cy - budget / y
        hess = c + np.diag(budget / y**2)
        step = np.linalg.solve(hess, grad)
        decrement = np.sqrt(max(grad @ step, 0.0))
        y = y - (step if decrement < 0.25 else step / (1.0 + decrement))
    raise OptimizationError(f"risk parity did not converge in {max_iter} Newton steps")


# --------------------------------------------------------------------------- HRP


def hrp_order(cov: np.ndarray, linkage: str = "single") -> np.ndarray:
    """Quasi-diagonal order: leaves of the linkage of the distance sqrt(0.5 * (1 - rho))."""
    corr = correlation_from_covariance(cov)
    dist = np.sqrt(np.clip(0.5 * (1.0 - corr), 0.0, 1.0))
    np.fill_diagonal(dist, 0.0)
    tree = sch.linkage(squareform(dist, checks=False), method=linkage)
    return sch.leaves_list(tree)


def hrp_bisection_weights(cov: np.ndarray, order: np.ndarray, asset_cap: np.ndarray | None = None) -> np.ndarray:
    """Lopez de Prado's recursive bisection, one vectorised pass per tree level.

    The ordered assets are split into halves, recursively; at each split the two halves'
    inverse-variance portfolios get alpha = 1 - V_left / (V_left + V_right) and 1 - alpha of
    their parent's weight. The splits depend only on n, so every level is handled at once in
    O(n): the current partition of positions 0..n-1 into segments; each segment's block sum
    of the inverse-variance-scaled covariance, from row-wise running sums computed once
    (row i's part inside its segment [a, b) is run[i, b] - run[i, a]); then one multiply.
    With ``asset_cap`` the split factor is clamped so no half gets more than the sum of its
    members' caps (skfolio's HierarchicalRiskParity rule with min_weights=0).
    Returns weights in the original asset order.
    """
    n = len(order)
    s = cov[np.ix_(order, order)]
    ivp = 1.0 / np.diag(s)
    scaled = s * np.outer(ivp, ivp)  # w'Sw of a segment = block sum / (sum ivp)^2
    run = np.zeros((n, n + 1))
    np.cumsum(scaled, axis=1, out=run[:, 1:])
    rows = np.arange(n)
    caps = None if asset_cap is None else np.asarray(asset_cap, dtype=float)[order]
    mass = np.ones(n)  # weight of the segment each position belongs to
    starts = np.array([0], dtype=np.intp)
    while len(starts) < n:
        lengths = np.diff(np.append(starts, n))
        parents = starts[lengths > 1]
        mids = parents + lengths[lengths > 1] // 2
        starts = np.sort(np.concatenate([starts, mids]))
        lengths = np.diff(np.append(starts, n))
        seg_start = np.repeat(starts, lengths)
        seg_end = seg_start + np.repeat(lengths, lengths)
        block = np.add.reduceat(run[rows, seg_end] - run[rows, seg_start], starts)
        var = block / np.add.reduceat(ivp, starts) ** 2
        left = np.searchsorted(starts, parents)
        right = left + 1
        alpha = 1.0 - var[left] / (var[left] + var[right])
        if caps is not None:
            parent_mass = mass[parents]
            seg_caps = np.add.reduceat(caps, starts)
            alpha = np.minimum(seg_caps[left] / parent_mass, alpha)
            alpha = 1.0 - np.minimum(seg_caps[right] / parent_mass, 1.0 - alpha)
        factor = np.ones(len(starts))
        factor[left] = alpha
        factor[right] = 1.0 - alpha
        mass *= np.repeat(factor, lengths)
    weights = np.empty(n)
    weights[order] = mass
    return weights


# --------------------------------------------------------------------------- quadratic programmes


def _solve_qp(
    q: np.ndarray,
    x: np.ndarray,
    free: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    eq_rows: np.ndarray,
    eq_rhs: np.ndarray,
    in_rows: np.ndarray,
    in_rhs: np.ndarray,
) -> np.ndarray:
    """min 0.5 x'Qx s.t. lower <= x <= upper, eq_rows x = eq_rhs, in_rows x <= in_rhs.

    Primal active-set method (Nocedal & Wright, Algorithm 16.3) for a positive definite Q,
    from a feasible ``x`` whose variables outside ``free`` sit at a bound. Bounds are handled
    by fixing variables, so each step solves a KKT system only over the free variables, which
    stay few for long-only portfolios started at a vertex: a few dozen small solves at 200
    assets (~7 ms), where scipy's SLSQP took 7.5 s (719 iterations) on 200 assets x 500 days.
    """
    n = len(x)
    x = x.copy()
    at = np.where(free, 0, np.where(x <= lower, -1, 1)).astype(np.int8)  # -1 lower, +1 upper
    active_rows: list[int] = []
    n_eq = len(eq_rows)
    for _ in range(50 * (n + len(in_rows)) + 100):
        f = np.flatnonzero(at == 0)
        g = q @ x
        rows = np.vstack([eq_rows, in_rows[active_rows]]) if active_rows else eq_rows
        m = len(rows)
        kkt = np.zeros((len(f) + m, len(f) + m))
        kkt[: len(f), : len(f)] = q[np.ix_(f, f)]
        kkt[: len(f), len(f) :] = rows[:, f].T
        kkt[len(f) :, : len(f)] = rows[:, f]
        rhs = np.concatenate([-g[f], np.zeros(m)])
        try:
            sol = np.linalg.solve(kkt, rhs)
        except np.linalg.LinAlgError:
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
        p_f, lam = sol[: len(f)], sol[len(f) :]
        if np.max(np.abs(p_f), initial=0.0) <= 1e-13 * max(1.0, np.max(np.abs(x))):
            # Stationary on the working set: optimal unless a multiplier has the wrong sign.
            reduced = g + rows.T @ lam
            violation = np.concatenate(
                [np.where(at == -1, -reduced, np.where(at == 1, reduced, -np.inf)), -lam[n_eq:]]
            )
            worst = int(np.argmax(violation)) if len(violation) else 0
            if not len(violation) or violation[worst] <= 1e-11 * max(1.0, np.max(np.abs(g))):
                return x
            if worst < n:
                at[worst] = 0
            else:
                active_rows.pop(worst - n)
            continue
        p = np.zeros(n)
        p[f] = p_f
        step, block_var, block_row = 1.0, -1, -1
        with np.errstate(divide="ignore", invalid="ignore"):
            to_bound = np.where(p < 0, (lower - x) / p, np.where(p > 0, (upper - x) / p, np.inf))
        to_bound[at != 0] = np.inf
        i = int(np.argmin(to_bound))
        if to_bound[i] < step:
            step, block_var = max(to_bound[i], 0.0), i
        if len(in_rows):
            slope = in_rows @ p
            inactive = np.ones(len(in_rows), dtype=bool)
            inactive[active_rows] = False
            with np.errstate(divide="ignore", invalid="ignore"):
                to_row = np.where(inactive & (slope > 1e-14), (in_rhs - in_rows @ x) / slope, np.inf)
            j = int(np.argmin(to_row))
            if to_row[j] < step:
                step, block_var, block_row = max(to_row[j], 0.0), -1, j
        x = x + step * p
        if block_var >= 0:
            at[block_var] = -1 if p[block_var] < 0 else 1
            x[block_var] = lower[block_var] if p[block_var] < 0 else upper[block_var]
        elif block_row >= 0:
            active_rows.append(block_row)
    raise OptimizationError("quadratic programme did not converge (cycling active set)")


def _check_positive_definite(cov: np.ndarray, covariance: str) -> None:
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise OptimizationError(
            f"the {covariance} covariance is singular (collinear assets, or no more days than "
            "assets with covariance='sample'), so the optimum is not unique; use "
            "covariance='ledoit_wolf'"
        ) from None


def _greedy_fill(
    priority: np.ndarray, asset_cap: np.ndarray, codes: np.ndarray, cluster_cap: np.ndarray
) -> tuple[np.ndarray, int]:
    """Fill the budget asset by asset in ``priority`` order up to the caps: a vertex of the
    feasible set, and the maximiser of any linear objective sorted that way (the caps are
    nested, so greedy is optimal). Returns the weights and the last asset filled."""
    x = np.zeros(len(priority))
    room = cluster_cap.copy()
    remaining, last = 1.0, int(priority[0])
    for i in priority:
        take = min(asset_cap[i], remaining, room[codes[i]])
        if take <= 0:
            continue
        x[i], last = take, int(i)
        remaining -= take
        room[codes[i]] -= take
        if remaining <= 1e-15:
            break
    x[last] += 1.0 - x.sum()  # exact budget despite rounding
    return x, last


def _cluster_rows(codes: np.ndarray, cluster_cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indicator rows and caps of the clusters whose cap can bind."""
    k = len(cluster_cap)
    members = np.zeros((k, len(codes)))
    members[codes, np.arange(len(codes))] = 1.0
    keep = (cluster_cap < 1.0) & (members.sum(axis=1) > 0)
    return members[keep], cluster_cap[keep]


def min_variance_weights(
    cov: np.ndarray, asset_cap: np.ndarray, codes: np.ndarray, cluster_cap: np.ndarray
) -> np.ndarray:
    """Global minimum-variance long-only weights within the asset and cluster caps."""
    n = cov.shape[0]
    q = cov / np.mean(np.diag(cov))
    x0, last = _greedy_fill(np.argsort(np.diag(cov), kind="stable"), asset_cap, codes, cluster_cap)
    free = (x0 > 0) & (x0 < asset_cap)
    free[last] = True
    rows, caps = _cluster_rows(codes, cluster_cap)
    x = _solve_qp(q, x0, free, np.zeros(n), asset_cap, np.ones((1, n)), np.ones(1), rows, caps)
    return _clean(x, asset_cap)


def max_sharpe_weights(
    cov: np.ndarray, excess: np.ndarray, asset_cap: np.ndarray, codes: np.ndarray, cluster_cap: np.ndarray
) -> np.ndarray:
    """Tangency (maximum Sharpe ratio) long-only weights within the caps.

    With y = w / (excess'w) the ratio excess'w / sqrt(w'Cw) is maximal where y'Cy is minimal
    subject to excess'y = 1, y >= 0 and the homogenised caps y_i <= cap * sum(y),
    sum_cluster(y) <= cluster_cap * sum(y): one convex QP (as PyPortfolioOpt and skfolio do).
    """
    n = cov.shape[0]
    x_best, last = _greedy_fill(np.argsort(-excess, kind="stable"), asset_cap, codes, cluster_cap)
    best = excess @ x_best
    if best <= 0:
        raise OptimizationError(
            "max_sharpe needs a portfolio whose mean return exceeds risk_free, and none within "
            f"the caps does (best excess return {best:.3g} per period)"
        )
    unit = excess / np.max(np.abs(excess))
    y0 = x_best / (unit @ x_best)
    free = y0 > 0
    free[last] = True
    rows, caps = _cluster_rows(codes, cluster_cap)
    homogeneous = [rows - caps[:, None]] if len(rows) else []
    if np.any(asset_cap < 1.0):
        cap_rows = np.eye(n) - asset_cap[:, None]
        homogeneous.insert(0, cap_rows[asset_cap < 1.0])
    in_rows = np.vstack(homogeneous) if homogeneous else np.zeros((0, n))
    q = cov / np.mean(np.diag(cov))
    y = _solve_qp(
        q, y0, free, np.zeros(n), np.full(n, np.inf), unit[None, :], np.ones(1), in_rows, np.zeros(len(in_rows))
    )
    return _clean(y / y.sum(), asset_cap)


def _clean(x: np.ndarray, asset_cap: np.ndarray) -> np.ndarray:
    """Remove the rounding dust of a solver: clip into [0, cap] and renormalise."""
    x = np.clip(x, 0.0, asset_cap)
    return x / x.sum()


# --------------------------------------------------------------------------- estimators


class PortfolioOptimizer(BaseEstimator):
    """Base estimator: validates inputs, estimates the covariance, applies the caps.

    Subclasses implement ``_allocate(returns, cov, asset_cap, codes, cluster_cap)`` on the
    assets with non-constant returns and return weights within the caps.
    """

    requires_clusters = False

    def __init__(self, *, covariance: str = "ledoit_wolf", max_weight: float = 1.0, max_cluster_weight: float = 1.0):
        self.covariance = covariance
        self.max_weight = max_weight
        self.max_cluster_weight = max_cluster_weight

    def fit(self, X: pd.DataFrame, clusters: pd.Series | None = None) -> "PortfolioOptimizer":
        values = _returns_array(X)
        columns = X.columns
        if self.covariance not in COVARIANCE_ESTIMATORS:
            raise OptimizationError(
                f"unknown covariance estimator {self.covariance!r}; choose one of {list(COVARIANCE_ESTIMATORS)}"
            )
        max_weight = _check_cap("max_weight", self.max_weight)
        max_cluster_weight = _check_cap("max_cluster_weight", self.max_cluster_weight)
        if clusters is None and self.requires_clusters:
            raise OptimizationError(f"{type(self).__name__} needs clusters (a Series asset -> label)")
        if clusters is None and max_cluster_weight < 1.0:
            raise OptimizationError("max_cluster_weight < 1 needs clusters (a Series asset -> label)")
        codes = None if clusters is None else _cluster_codes(clusters, columns)

        observed = np.isfinite(values)
        with np.errstate(invalid="ignore"):
            spread = np.where(observed, values, -np.inf).max(axis=0) - np.where(observed, values, np.inf).min(axis=0)
        active = (observed.sum(axis=0) >= 2) & (spread > 0)
        self.zero_variance_ = list(columns[~active])
        if not active.any():
            raise OptimizationError(
                f"every asset has constant returns (or fewer than 2 observed) over the window: {[str(c) for c in columns]}"
            )
        assets = columns[active]
        asset_cap = np.full(len(assets), max_weight)
        active_codes = np.zeros(len(assets), dtype=np.intp) if codes is None else pd.factorize(codes[active])[0]
        k = int(active_codes.max()) + 1
        cluster_cap = np.full(k, max_cluster_weight)
        _check_caps_feasible(assets, asset_cap, active_codes, cluster_cap)

        cov = observed_covariance(values[:, active], self.covariance)
        if len(assets) == 1:
            weights = np.ones(1)
        else:
            weights = self._allocate(values[:, active], cov, asset_cap, active_codes, cluster_cap)
        full = np.zeros(len(columns))
        full[active] = weights
        self.weights_ = pd.Series(full, index=columns, name="weight")
        self.covariance_ = pd.DataFrame(cov, index=assets, columns=assets)
        return self

    def _allocate(self, returns, cov, asset_cap, codes, cluster_cap) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class _CappedHeuristic(PortfolioOptimizer):
    """A heuristic whose raw weights are capped afterwards by ``cap_weights``."""

    def _allocate(self, returns, cov, asset_cap, codes, cluster_cap) -> np.ndarray:
        return cap_weights(self._raw_weights(returns, cov, codes), asset_cap, codes, cluster_cap)

    def _raw_weights(self, returns, cov, codes) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class EqualWeight(_CappedHeuristic):
    """1/n on every asset with non-constant returns."""

    def _raw_weights(self, returns, cov, codes):
        return np.full(cov.shape[0], 1.0 / cov.shape[0])


class InverseVolatility(_CappedHeuristic):
    """Weights proportional to 1 / volatility."""

    def _raw_weights(self, returns, cov, codes):
        inv = 1.0 / np.sqrt(np.diag(cov))
        return inv / inv.sum()


class RiskParity(_CappedHeuristic):
    """Equal risk contribution (before capping; binding caps break the equality)."""

    def _raw_weights(self, returns, cov, codes):
        return equal_risk_contribution_weights(cov)


class ClusterTwoLayer(_CappedHeuristic):
    """Inverse-variance within each caller-given cluster, inverse-variance across clusters."""

    requires_clusters = True

    def _raw_weights(self, returns, cov, codes):
        return cluster_two_layer_weights(cov, codes)


class HierarchicalRiskParity(PortfolioOptimizer):
    """Lopez de Prado's HRP; the asset cap clamps the bisection, a cluster cap is applied after."""

    def __init__(
        self,
        *,
        covariance: str = "ledoit_wolf",
        max_weight: float = 1.0,
        max_cluster_weight: float = 1.0,
        linkage: str = "single",
    ):
        super().__init__(covariance=covariance, max_weight=max_weight, max_cluster_weight=max_cluster_weight)
        self.linkage = linkage

    def _allocate(self, returns, cov, asset_cap, codes, cluster_cap):
        if self.linkage not in LINKAGE_METHODS:
            raise OptimizationError(f"unknown linkage {self.linkage!r}; choose one of {list(LINKAGE_METHODS)}")
        order = hrp_order(cov, self.linkage)
        weights = hrp_bisection_weights(cov, order, asset_cap if asset_cap.max() < 1.0 else None)
        if cluster_cap.min() < 1.0:
            weights = cap_weights(weights, asset_cap, codes, cluster_cap)
        return weights


class MinimumVariance(PortfolioOptimizer):
    """Global minimum variance within the caps (exact QP)."""

    def _allocate(self, returns, cov, asset_cap, codes, cluster_cap):
        _check_positive_definite(cov, self.covariance)
        return min_variance_weights(cov, asset_cap, codes, cluster_cap)


class MaximumSharpe(PortfolioOptimizer):
    """Maximum Sharpe ratio within the caps; expected returns = mean daily return of X,
    ``risk_free`` = risk-free return per period (per day for daily returns)."""

    def __init__(
        self,
        *,
        covariance: str = "ledoit_wolf",
        max_weight: float = 1.0,
        max_cluster_weight: float = 1.0,
        risk_free: float = 0.0,
    ):
        super().__init__(covariance=covariance, max_weight=max_weight, max_cluster_weight=max_cluster_weight)
        self.risk_free = risk_free

    def _allocate(self, returns, cov, asset_cap, codes, cluster_cap):
        _check_positive_definite(cov, self.covariance)
        excess = np.nanmean(returns, axis=0) - float(self.risk_free)  # over each asset's observed days
        return max_sharpe_weights(cov, excess, asset_cap, codes, cluster_cap)


OPTIMIZERS: dict[str, type[PortfolioOptimizer]] = {
    "equal_weight": EqualWeight,
    "inverse_vol": InverseVolatility,
    "min_variance": MinimumVariance,
    "max_sharpe": MaximumSharpe,
    "risk_parity": RiskParity,
    "hrp": HierarchicalRiskParity,
    "cluster_two_layer": ClusterTwoLayer,
}
if tuple(OPTIMIZERS) != OPTIMIZATION_METHODS:  # one list of names, checked where they meet
    raise ImportError(f"OPTIMIZERS {list(OPTIMIZERS)} differ from sections.OPTIMIZATION_METHODS {list(OPTIMIZATION_METHODS)}")


def _optimizer_class(method: str) -> type[PortfolioOptimizer]:
    try:
        return OPTIMIZERS[method]
    except (KeyError, TypeError):
        raise OptimizationError(f"unknown optimization method {method!r}; choose one of {list(OPTIMIZERS)}") from None


def make_optimizer(method: str, **params: Any) -> PortfolioOptimizer:
    """The named optimizer with these parameters (an unknown parameter is an error)."""
    cls = _optimizer_class(method)
    accepted = sorted(cls().get_params())
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise OptimizationError(f"optimizer {method!r} has no parameter(s) {unknown}; it accepts {accepted}")
    return cls(**params)


def optimize_weights(
    returns: pd.DataFrame,
    method: str,
    *,
    clusters: pd.Series | None = None,
    max_weight: float = 1.0,
    max_cluster_weight: float = 1.0,
    covariance: str = "ledoit_wolf",
    risk_free: float = 0.0,
    linkage: str = "single",
) -> pd.Series:
    """Weights of ``method`` fitted on ``returns``: a Series in the column order of ``returns``.

    All optimization settings can be passed whatever the method (as a pipeline's params do);
    each method uses those it has (``risk_free`` only for max_sharpe, ``linkage`` only for hrp).
    """
    cls = _optimizer_class(method)
    settings = {
        "max_weight": max_weight,
        "max_cluster_weight": max_cluster_weight,
        "covariance": covariance,
        "risk_free": risk_free,
        "linkage": linkage,
    }
    accepted = cls().get_params()
    optimizer = cls(**{k: v for k, v in settings.items() if k in accepted})
    return optimizer.fit(returns, clusters=clusters).weights_


def risk_contributions(weights: pd.Series, cov: pd.DataFrame) -> pd.Series:
    """Share of portfolio variance from each asset: w_i (Cov w)_i / w'Cov w (sums to 1)."""
    w = weights.reindex(cov.columns).to_numpy(dtype=float)
    c = cov.to_numpy(dtype=float)
    contrib = w * (c @ w)
    return pd.Series(contrib / contrib.sum(), index=cov.columns, name="risk_contribution")
