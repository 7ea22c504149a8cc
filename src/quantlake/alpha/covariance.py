"""Covariance estimators for the portfolio optimizers (numpy in, numpy out, no IO).

Two estimators, chosen by name:

- ``"sample"``: the unbiased sample covariance (ddof=1), as ``pandas.DataFrame.cov`` and
  PyPortfolioOpt's ``sample_cov`` without annualisation.
- ``"ledoit_wolf"``: Ledoit-Wolf shrinkage towards ``mu * I`` (``mu`` = mean variance), the
  same estimator as ``sklearn.covariance.LedoitWolf()`` (biased empirical covariance, centred
  data). It is written here in closed form because sklearn's estimator spends most of its
  ~10 ms (200 assets x 500 days) in input validation and a blocked double loop; this version
  needs one ``X.T @ X`` and is checked against sklearn to 1e-12 in the tests.

The fourth-moment term sum_ij sum_t x_ti^2 x_tj^2 that sklearn forms as ``(X**2).T @ X**2``
equals sum_t (sum_i x_ti^2)^2, an O(T n) sum instead of an O(T n^2) product.

Missing days (``observed_covariance``). A NaN cell is a day the asset did not trade. It is
never read as a zero return (that would shrink the variance of a young or halted asset in
proportion to its missing days and make every risk-based optimizer overweight it). The
estimate uses the observed days, pairwise-complete: each variance over the asset's observed
days, each covariance over the days both assets were observed (``DataFrame.cov`` with
``min_periods``; a pair with fewer common days counts as uncorrelated). Ledoit-Wolf on such
data shrinks the biased pairwise covariance towards ``mu * I`` with an intensity from the
observed days: every pair's contribution to the LW noise term is the mean of its squared
centred cross-products over the days it was observed, divided by the window length T - the
LW intensity the window would have if the missing days had been observed and looked like the
observed ones (so missing days add no shrinkage of their own, and adding leading missing days
to an asset leaves the estimate of a stationary series unchanged). A pairwise-complete matrix
can be indefinite; the intensity (0 for ``sample``) is then raised just enough that the
smallest eigenvalue is ``PD_FLOOR * mu``: the result is always symmetric positive definite.
With no missing day, ``observed_covariance`` is exactly ``estimate_covariance``.
"""

from __future__ import annotations

import functools

import numpy as np

from quantlake.alpha.sections import COVARIANCE_ESTIMATORS  # noqa: F401 (the names live with the params)

PD_FLOOR = 1e-10  # smallest eigenvalue of a repaired pairwise covariance, relative to the mean variance


def ledoit_wolf_covariance(returns: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of a (T x n) array and its shrinkage in [0, 1].

    Matches ``sklearn.covariance.LedoitWolf().fit(returns)`` (``covariance_``, ``shrinkage_``).
    """
    x = np.asarray(returns, dtype=float)
    n_samples, n_features = x.shape
    x = x - x.mean(axis=0)
    emp_cov = (x.T @ x) / n_samples
    if n_features == 1:
        # sklearn: with one feature shrinkage is irrelevant and reported as 0.
        return emp_cov, 0.0
    row_sq = np.einsum("ij,ij->i", x, x)  # sum_i x_ti^2 for every day t
    variances = np.diag(emp_cov)
    mu = variances.sum() / n_features
    beta_ = float(row_sq @ row_sq)
    delta_ = float(np.einsum("ij,ij->", emp_cov, emp_cov))  # ||X'X||_F^2 / T^2
    beta = (beta_ / n_samples - delta_) / (n_features * n_samples)
    delta = (delta_ - 2.0 * mu * variances.sum() + n_features * mu**2) / n_features
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * emp_cov
    shrunk.flat[:: n_features + 1] += shrinkage * mu
    return shrunk, float(shrinkage)


def sample_covariance(returns: np.ndarray) -> np.ndarray:
    """Unbiased (ddof=1) sample covariance of a (T x n) array."""
    x = np.asarray(returns, dtype=float)
    x = x - x.mean(axis=0)
    return (x.T @ x) / (x.shape[0] - 1)


def estimate_covariance(returns: np.ndarray, method: str) -> np.ndarray:
    """Covariance of a (T x n) array of returns by the named estimator (symmetric n x n)."""
    if method == "ledoit_wolf":
        cov = ledoit_wolf_covariance(returns)[0]
    elif method == "sample":
        cov = sample_covariance(returns)
    else:
        raise ValueError(
            f"unknown covariance estimator {method!r}; choose one of {list(COVARIANCE_ESTIMATORS)}"
        )
    # X'X is symmetric in exact arithmetic; make it symmetric in floating point too, so the
    # optimizers see the same matrix whichever triangle they read.
    return (cov + cov.T) / 2.0


def observed_covariance(returns: np.ndarray, method: str, min_periods: int = 2) -> np.ndarray:
    """Covariance of a (T x n) array whose NaN cells are unobserved days, by the named estimator.

    Pairwise-complete on the observed days (module docstring); every column needs at least
    `min_periods` observed values. Symmetric positive definite whenever a cell is missing;
    with no NaN, exactly `estimate_covariance(returns, method)`.
    """
    x = np.asarray(returns, dtype=float)
    observed = ~np.isnan(x)
    if observed.all():
        return estimate_covariance(x, method)
    if method not in COVARIANCE_ESTIMATORS:
        raise ValueError(f"unknown covariance estimator {method!r}; choose one of {list(COVARIANCE_ESTIMATORS)}")
    counts = observed.T.astype(float) @ observed.astype(float)  # common observed days of each pair
    short = np.flatnonzero(np.diag(counts) < max(min_periods, 2))
    if short.size:
        raise ValueError(f"columns {short.tolist()} have fewer than {max(min_periods, 2)} observed values")
    # the one pairwise kernel (ddof=1 over the common days, masked BLAS, equal to pandas'
    # DataFrame.cov(min_periods=...)); NaN where too few common days
    sample = pairwise_cov(x, max(min_periods, 2))
    sample = np.where(np.isfinite(sample), sample, 0.0)  # never observed together: uncorrelated
    if method == "sample":
        cov, intensity = sample, 0.0
    else:
        cov = sample * np.where(counts > 1, (counts - 1.0) / np.maximum(counts, 1.0), 0.0)  # biased, as LW
        intensity = _observed_lw_intensity(x, observed, counts, cov)
    cov = _shrunk_positive_definite(cov, intensity)
    return (cov + cov.T) / 2.0


def _observed_lw_intensity(x: np.ndarray, observed: np.ndarray, counts: np.ndarray, emp: np.ndarray) -> float:
    """Ledoit-Wolf intensity of a pairwise covariance `emp`, from the observed days only.

    sklearn's beta = (1/p) sum_ij (1/T) mean_t (x_ti x_tj - s_ij)^2 with the mean over the
    days the pair was observed (the same when nothing is missing); delta = ||emp - mu I||^2 / p.
    """
    n_samples, n_features = x.shape
    if n_features == 1:
        return 0.0
    z = np.where(observed, x - np.nanmean(x, axis=0), 0.0)  # centred, 0 where unobserved
    together = np.maximum(counts, 1.0)
    cross = (z.T @ z) / together  # mean cross-product over the common days
    squares = z * z
    spread = np.where(counts > 0, (squares.T @ squares) / together - cross**2, 0.0)
    mu = np.trace(emp) / n_features
    beta = float(spread.sum()) / (n_features * n_samples)
    off = emp.copy()
    off.flat[:: n_features + 1] -= mu
    delta = float(np.einsum("ij,ij->", off, off)) / n_features
    beta = min(beta, delta)
    return 0.0 if beta <= 0 else beta / delta


def _shrunk_positive_definite(cov: np.ndarray, intensity: float) -> np.ndarray:
    """(1 - a) cov + a mu I with a >= intensity raised just enough to be positive definite."""
    n = cov.shape[0]
    mu = float(np.trace(cov)) / n
    lowest = float(np.linalg.eigvalsh((cov + cov.T) / 2.0)[0])
    floor = PD_FLOOR * mu
    if (1.0 - intensity) * lowest + intensity * mu < floor:  # the eigenvalues shrink linearly to mu
        intensity = (floor - lowest) / (mu - lowest)
    out = (1.0 - intensity) * cov
    out.flat[:: n + 1] += intensity * mu
    return out


def correlation_from_covariance(cov: np.ndarray) -> np.ndarray:
    """Correlation matrix of a covariance with positive diagonal, clipped to [-1, 1]."""
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


# --------------------------------------------------------------------------- pairwise-complete

# Column blocks of the pairwise products: bounds the temporaries to ~8 x n x block floats.
_PAIRWISE_BLOCK = 512


def pairwise_cov(values: np.ndarray, min_periods: int) -> np.ndarray:
    """Pairwise-complete sample covariance (ddof=1) of a (T x n) array with NaN for missing days.

    Equal (to rounding) to ``pd.DataFrame(values).cov(min_periods=min_periods)``: each pair uses
    the days on which both columns are observed; NaN where they share fewer than
    `min_periods` days (or fewer than 2); 0 where either column is constant on those days.
    `min_periods` must be >= 1 (pandas' 0 gives -0.0 for pairs that share no day).
    """
    n, dev_x, co, flat = _pairwise_moments(values, min_periods)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = co / (n - 1.0)
    out[flat | flat.T] = 0.0
    out[(n < min_periods) | (n < 2)] = np.nan
    return _symmetric(out)


def pairwise_corr(values: np.ndarray, min_periods: int) -> np.ndarray:
    """Pairwise-complete Pearson correlation, equal (to rounding) to ``DataFrame.corr(min_periods=...)``.

    NaN where a pair shares fewer than `min_periods` days, or where either column is constant
    on the shared days (pandas' zero divisor); 1 on the diagonal of a defined column.
    """
    n, dev_x, co, flat = _pairwise_moments(values, min_periods)
    complete = not np.isnan(values).any()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.clip(co / np.sqrt(dev_x * dev_x.T), -1.0, 1.0)  # pandas clips too
    out[flat | flat.T | (n < min_periods)] = np.nan
    defined = ~np.isnan(np.diagonal(out))
    np.fill_diagonal(out, np.where(defined, 1.0, np.nan))
    # with every day observed, x'x is one symmetric product and every step after it is
    # elementwise and symmetric: the result is already exactly symmetric
    return out if complete else _symmetric(out)


def _pairwise_moments(values: np.ndarray, min_periods: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n, dev_x, co, flat) over the days both columns i and j are observed, as matrix products.

    n[i, j] = number of such days; dev_x[i, j] = sum of squared deviations of column i from its
    mean over those days; co[i, j] = sum of cross-deviations; flat[i, j] = column i is constant
    on those days. Columns are centred on their own mean first (the sums are shift-invariant;
    centring keeps the cancellation small).

    flat: in exact arithmetic dev_x is then 0; computed as ss - s^2 / n it is rounding noise, at
    most a few n x eps times ss (the centred sum of squares over the same days), whereas for a
    column that moves ss is of the order of dev_x; `dev_x <= 4 n eps ss` separates the two.
    """
    if isinstance(min_periods, bool) or not isinstance(min_periods, (int, np.integer)) or min_periods < 1:
        raise ValueError(f"min_periods must be an integer >= 1, got {min_periods!r}")
    x = np.asarray(values, dtype="float64")
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D (days x columns) array, got shape {x.shape}")
    observed = ~np.isnan(x)
    k = x.shape[1]
    if observed.all():  # every pair shares every day: one product (the masks below would change nothing)
        total = float(x.shape[0])
        xc = x - x.sum(axis=0) / max(total, 1.0)
        s, ss = xc.sum(axis=0), (xc * xc).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = np.broadcast_to((ss - s * s / total)[:, None], (k, k))
            co = xc.T @ xc - np.outer(s, s) / total
            flat = np.broadcast_to(((dev[:, 0] <= 4.0 * np.finfo("float64").eps * total * ss) & (total > 0))[:, None], (k, k))
        return np.full((k, k), total), dev, co, flat
    m = observed.astype("float64")
    count = m.sum(axis=0)
    mean = np.where(observed, x, 0.0).sum(axis=0) / np.maximum(count, 1.0)
    xc = np.where(observed, x - mean, 0.0)
    sq = xc * xc
    n, dev_x, co = (np.empty((k, k)) for _ in range(3))
    flat = np.empty((k, k), dtype=bool)
    eps4 = 4.0 * np.finfo("float64").eps
    for lo in range(0, k, _PAIRWISE_BLOCK):
        j = slice(lo, min(lo + _PAIRWISE_BLOCK, k))
        nj = m.T @ m[:, j]
        s_i = xc.T @ m[:, j]  # sum of column i over the days shared with column j
        s_j = m.T @ xc[:, j]  # sum of column j over the days shared with column i
        ss = sq.T @ m[:, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = ss - s_i * s_i / nj
            co[:, j] = xc.T @ xc[:, j] - s_i * s_j / nj
        n[:, j] = nj
        dev_x[:, j] = dev
        flat[:, j] = (dev <= eps4 * nj * ss) & (nj > 0)
    return n, dev_x, co, flat


def _symmetric(a: np.ndarray) -> np.ndarray:
    """The upper triangle mirrored onto the lower one (exactly symmetric, as pandas returns)."""
    lower = _lower_triangle(a.shape[0])
    a[lower] = a.T[lower]
    return a


@functools.lru_cache(maxsize=8)
def _lower_triangle(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.tril_indices(n, -1)
