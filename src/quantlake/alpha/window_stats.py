"""The selection's per-symbol statistics for every symbol of a window at once (issue 14, item 1).

`signals.py` defines each statistic on one symbol's observed returns (NaN dropped, a gap
closed up); the functions here compute the same numbers for all symbols in one vectorised
pass over the window matrix. The window is first *packed*: each symbol's observed values are
moved to the front of its row in date order, NaN after them (`pack`), so that "the observed
returns with the gaps closed up" is a row prefix of length `n` for every symbol, and every
statistic is a masked reduction along the rows.

Rows are symbols (a C-contiguous symbols x days array): reductions along a contiguous row
use numpy's pairwise summation, as `np.sum` does on one symbol's 1-D array, so a symbol with
no gap in the window gets bit-identical sums; with gaps the results agree to rounding
(the tests compare to `signals.py` within 1e-12 relative). The Hurst exponent's many lagged
standard deviations are the exception: they run on the transpose (see `_lag_std`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# (packed symbols x days values, n observed per symbol, valid mask: column < n)
Packed = tuple[np.ndarray, np.ndarray, np.ndarray]
# (sum d^2, sum d^3, sum d^4 over the observed days, d = r - mean; flat: constant row)
Moments = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def pack(window: np.ndarray) -> Packed:
    """Move each column's observed (non-NaN) values of a days x symbols array to the front, in order."""
    values = np.asarray(window, dtype="float64").T  # symbols x days
    observed = ~np.isnan(values)
    n = observed.sum(axis=1)
    if observed.all():  # nothing to move
        return np.ascontiguousarray(values), n, observed
    order = np.argsort(~observed, axis=1, kind="stable")
    packed = np.ascontiguousarray(np.take_along_axis(values, order, axis=1))
    valid = np.arange(values.shape[1])[None, :] < n[:, None]
    return packed, n, valid


def _masked_sum(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return (x if _everywhere(valid) else np.where(valid, x, 0.0)).sum(axis=1)


def _everywhere(valid: np.ndarray) -> bool:
    """Every value observed: the masks change nothing and are skipped (a window without gaps)."""
    return bool(valid.all())


def _divide(num: np.ndarray, den: np.ndarray, undefined: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where(undefined, math.nan, out)


def log_returns(p: Packed) -> np.ndarray:
    values, _, valid = p
    with np.errstate(divide="ignore", invalid="ignore"):
        log_r = np.log1p(values)
        return log_r if _everywhere(valid) else np.where(valid, log_r, math.nan)


def annualised_momentum(p: Packed, log_r: np.ndarray, periods_per_year: int) -> np.ndarray:
    _, n, valid = p
    return _divide(_masked_sum(log_r, valid), n, n == 0) * periods_per_year


def _central_moments(p: Packed, orders: tuple[int, ...]) -> list[np.ndarray]:
    """sum over observed days of (r - mean)^k for each k in `orders` (mean as np.mean).

    Powers are products (d^3 = d^2 d, d^4 = d^2 d^2): `signals.py`'s `d**3` goes through
    `pow`, ten times slower on a matrix; the two differ by an ulp at most.
    """
    values, n, valid = p
    mean = _divide(_masked_sum(values, valid), n, n == 0)
    d = values - mean[:, None]
    if not _everywhere(valid):
        d = np.where(valid, d, 0.0)
    d2 = d * d
    power = {2: d2, 3: d2 * d if 3 in orders else None, 4: d2 * d2 if 4 in orders else None}
    return [power[k].sum(axis=1) for k in orders]


def central_moments(p: Packed) -> Moments:
    """(sum d^2, sum d^3, sum d^4, flat) of every row: what volatility, skew and kurtosis share."""
    m2, m3, m4 = _central_moments(p, (2, 3, 4))
    return m2, m3, m4, _flat(p)


def annualised_volatility(p: Packed, periods_per_year: int, moments: Moments | None = None) -> np.ndarray:
    _, n, _ = p
    m2 = moments[0] if moments is not None else _central_moments(p, (2,))[0]
    return np.sqrt(_divide(m2, n - 1, n < 2)) * math.sqrt(periods_per_year)


def efficiency_ratio(p: Packed, log_r: np.ndarray) -> np.ndarray:
    _, n, valid = p
    path = _masked_sum(np.abs(log_r), valid)
    return _divide(np.abs(_masked_sum(log_r, valid)), path, (n == 0) | (path == 0.0))


def _flat(p: Packed) -> np.ndarray:
    values, _, valid = p
    if _everywhere(valid):
        return values.max(axis=1) == values.min(axis=1)
    return np.where(valid, values, -np.inf).max(axis=1) == np.where(valid, values, np.inf).min(axis=1)


def skewness(p: Packed, moments: Moments | None = None) -> np.ndarray:
    _, n, _ = p
    m2, m3, _, flat = moments if moments is not None else central_moments(p)
    m2, m3 = (m / np.maximum(n, 1) for m in (m2, m3))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.sqrt(n * (n - 1)) / (n - 2) * m3 / m2**1.5
    return np.where((n < 3) | flat, math.nan, g)


def excess_kurtosis(p: Packed, moments: Moments | None = None) -> np.ndarray:
    _, n, _ = p
    m2, _, m4, flat = moments if moments is not None else central_moments(p)
    m2, m4 = (m / np.maximum(n, 1) for m in (m2, m4))
    with np.errstate(divide="ignore", invalid="ignore"):
        g2 = m4 / m2**2 - 3.0
        k = ((n + 1) * g2 + 6.0) * (n - 1) / ((n - 2) * (n - 3))
    return np.where((n < 4) | flat, math.nan, k)


def permutation_entropy(p: Packed, order: int = 3, delay: int = 1) -> np.ndarray:
    """As `signals.permutation_entropy` on each symbol's observed values (windows inside the prefix)."""
    values, n, _ = p
    span = (order - 1) * delay + 1
    out = np.full(values.shape[0], math.nan)
    if order < 2 or values.shape[1] < span:
        return out
    windows = sliding_window_view(values, span, axis=1)[:, :, ::delay]
    codes = _pattern_codes(windows, order)
    inside = None if (n == values.shape[1]).all() else np.arange(codes.shape[1])[None, :] < (n - span + 1)[:, None]
    if order <= 6:  # every possible code, ascending as np.unique lists them per symbol: one count per kind
        kinds = np.sort(np.array(list(itertools.permutations(range(order)))) @ (order ** np.arange(order)))
        counts = np.empty((codes.shape[0], kinds.size))
        for k, kind in enumerate(kinds.tolist()):
            hit = codes == kind
            if inside is not None:
                hit &= inside
            counts[:, k] = np.count_nonzero(hit, axis=1)
    else:
        inside = np.ones(codes.shape, dtype=bool) if inside is None else inside
        rows = np.broadcast_to(np.arange(codes.shape[0])[:, None], codes.shape)[inside]
        kinds, code = np.unique(codes[inside], return_inverse=True)
        counts = np.bincount(rows * kinds.size + code, minlength=codes.shape[0] * kinds.size)
        counts = counts.reshape(codes.shape[0], kinds.size).astype("float64")
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        prob = counts / total
        terms = np.where(counts > 0, prob * np.log(prob), 0.0)
    entropy = -terms.sum(axis=1) / math.log(math.factorial(order))
    return np.where(n >= span, entropy, out)


def _pattern_codes(windows: np.ndarray, order: int) -> np.ndarray:
    """`argsort(window, kind="stable") @ order**arange(order)` for every window of the last axis.

    The stable argsort is the inverse of the ranks (rank_i = #{j: w_j < w_i} + #{j < i: w_j ==
    w_i}), so the code is sum_i i * order**rank_i: order^2 vectorised comparisons instead of
    one tiny sort per window.
    """
    if order > 6:
        return np.argsort(windows, axis=-1, kind="stable") @ (order ** np.arange(order))
    w = [windows[..., i] for i in range(order)]
    small = np.int32 if order > 4 else np.int16  # the largest code is below order^(order + 1)
    codes = np.zeros(windows.shape[:-1], dtype=small)
    for i in range(1, order):  # i = 0 adds 0 whatever its rank
        rank = np.zeros(windows.shape[:-1], dtype=small)
        for j in range(order):
            if j != i:
                rank += (w[j] <= w[i]) if j < i else (w[j] < w[i])
        codes += (i * np.power(order, rank, dtype=small)).astype(small)
    return codes


def hurst_exponent(p: Packed, log_r: np.ndarray, max_lag: int = 20) -> np.ndarray:
    """As `signals.hurst_exponent`: least squares of log std(x[t+k] - x[t]) on log k, k = 2..L.

    L = min(max_lag, (n + 1) // 2) depends on the symbol's count n; symbols that share L are
    fitted together by one `np.polyfit` (one least-squares problem with a column per symbol).
    """
    _, n, valid = p
    observed = log_r if _everywhere(valid) else np.where(valid, log_r, 0.0)
    path = np.concatenate([np.zeros((log_r.shape[0], 1)), np.cumsum(observed, axis=1)], axis=1)
    last_lag = np.minimum(max_lag, (n + 1) // 2)
    out = np.full(log_r.shape[0], math.nan)
    lags = np.arange(2, int(last_lag.max(initial=0)) + 1)
    if lags.size < 3:
        return out
    tau = np.empty((log_r.shape[0], lags.size))
    full = n == log_r.shape[1]  # no NaN in the window: plain np.std on whole rows
    tau[full] = _lag_std(path[full], lags)
    tau[~full] = _lag_std(path[~full], lags, n[~full])
    for size in np.unique(last_lag):
        if size - 1 < 3:
            continue
        rows = np.flatnonzero(last_lag == size)
        t = tau[rows, : size - 1]
        fit = np.all(t > 0, axis=1) & np.all(np.isfinite(t), axis=1)  # else undefined (NaN)
        if fit.any():
            with np.errstate(divide="ignore"):
                slope = np.polyfit(np.log(lags[: size - 1]), np.log(t[fit]).T, 1)[0]
            out[rows[fit]] = slope
    return out


def _lag_std(path: np.ndarray, lags: np.ndarray, n: np.ndarray | None = None) -> np.ndarray:
    """np.std(x[k:] - x[:-k]) of each row's path x[0..n] (the whole row when n is None) for each lag."""
    tau = np.empty((path.shape[0], lags.size))
    if path.shape[0] == 0:
        return tau
    if n is None:  # whole rows: np.std's steps on the days x symbols transpose, in place in one buffer
        # (each step one contiguous pass for every symbol at once: ~3x faster than row by row; the
        # sums run down the columns instead of pairwise along a row, which moves the std by ~1e-15)
        columns = np.ascontiguousarray(path.T)
        buffer = np.empty((columns.shape[0] - 1, columns.shape[1]))
        for i, k in enumerate(lags):
            moves = np.subtract(columns[k:], columns[:-k], out=buffer[: columns.shape[0] - k])
            mean = moves.sum(axis=0) / moves.shape[0]
            np.subtract(moves, mean, out=moves)
            np.square(moves, out=moves)
            tau[:, i] = np.sqrt(moves.sum(axis=0) / moves.shape[0])
        return tau
    # rows of different lengths: the same masked sums, computed in one reused buffer (in place:
    # the temporaries of `np.where` cost more than the arithmetic); each row is summed along
    # itself as before, so every bit is the same
    buffer = np.empty((path.shape[0], path.shape[1] - 1))
    positions = np.arange(path.shape[1] - 1)
    for i, k in enumerate(lags):
        moves = np.subtract(path[:, k:], path[:, :-k], out=buffer[:, : path.shape[1] - k])
        outside = positions[None, : moves.shape[1]] >= (n + 1 - k)[:, None]  # an end beyond x[0..n]
        count = np.maximum(moves.shape[1] - outside.sum(axis=1), 1)
        np.copyto(moves, 0.0, where=outside)
        mean = moves.sum(axis=1) / count
        np.subtract(moves, mean[:, None], out=moves)
        np.copyto(moves, 0.0, where=outside)
        np.square(moves, out=moves)
        tau[:, i] = np.sqrt(moves.sum(axis=1) / count)
    return tau


def conditional_value_at_risk(p: Packed, level: float = 0.05) -> np.ndarray:
    """Mean of the observed returns at or below their `level` quantile (numpy's 'linear' quantile)."""
    values, n, valid = p
    var = linear_quantile(np.sort(values, axis=1), n, level)
    tail = valid & (values <= var[:, None])
    return _divide(_masked_sum(values, tail), tail.sum(axis=1), n == 0)


def linear_quantile(sorted_rows: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Each row's `q` quantile of its first n (sorted) values, computed as `np.quantile` does."""
    virtual = (n - 1) * np.float64(q)
    below = np.floor(virtual)
    gamma = virtual - below
    lo = np.clip(below.astype("int64"), 0, None)
    hi = lo + 1
    top = virtual >= n - 1
    lo, hi = np.where(top, n - 1, lo), np.where(top, n - 1, hi)
    rows = np.arange(sorted_rows.shape[0])
    safe = np.maximum(n - 1, 0)
    a = sorted_rows[rows, np.minimum(lo, safe)]
    b = sorted_rows[rows, np.minimum(hi, safe)]
    diff = b - a
    out = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return np.where(n > 0, out, math.nan)


def median(p: Packed) -> np.ndarray:
    """Each row's median of its observed values (as `np.median`), NaN when none."""
    values, n, _ = p
    s = np.sort(values, axis=1)
    rows = np.arange(s.shape[0])
    lo, hi = np.maximum((n - 1) // 2, 0), np.maximum(n // 2, 0)
    mid = np.where(n % 2 == 1, s[rows, hi], (s[rows, lo] + s[rows, hi]) / 2.0)
    return np.where(n > 0, mid, math.nan)
