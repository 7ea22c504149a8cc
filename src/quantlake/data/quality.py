"""The quality gates: turn the bars a source served into bars fit for the lakehouse.

`sanitize` is a pure function of the raw bars it is given (and `as_of`): the same raw bars
always give the same clean bars and the same quarantine, however they were fetched. Ingestion
relies on that: it re-sanitizes the union of what it already holds (clean bars plus the
originals kept in quarantine) and the new fetch, so any split of a history into fetches gives
byte-identical files.

Rules, applied in this order (the `rule` names stored in the quarantine):

==========================  ======  ===================================================================
rule                        scope   fires when
==========================  ======  ===================================================================
``misaligned_timestamp``    bar     the open time is not 00:00 UTC
``not_closed``              bar     the bar opens after ``as_of`` (not closed yet): never kept, and
                                    never restored from the quarantine (its values were partial)
``invalid_value``           bar     a price that is NaN, infinite or <= 0, or a NaN/negative volume
``ohlc_order``              bar     low > min(open, close) or high < max(open, close)
``duplicate_timestamp``     bar     a second bar with the same open time and *different* values; the
                                    first (the stored one) is kept. Identical duplicates are merged.
``bad_wick_low``            value   low < min(open, close) / wick_low_factor; low is set to
                                    min(open, close) and the original value quarantined
``bad_wick_high``           value   high > max(open, close) * wick_high_factor; high is set to
                                    max(open, close)
``zero_volume_stall``       bar     a run of >= stall_days bars with zero volume and
                                    open = high = low = close (a frozen feed, not trading)
``contamination``           bar     a close-to-close return above toxic_threshold (an up-jump) whose
                                    level comes back within max_contamination_days bars (or a
                                    down-jump below 1/(1+threshold) - 1 that comes back): the bars at
                                    the foreign level are removed
``contamination_unisolated`` bar    an up-jump above toxic_threshold that does not come back: the
                                    bars from the jump on are removed (a toxic tail, from
                                    ``toxic_from``); the clean history before the jump is kept
==========================  ======  ===================================================================

A genuine large move (DOGE +392% on 2021-01-28) stays: it is below the 500% threshold and the
level does not snap back. A crash that does not come back (-83% and more) is kept too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..contracts import DAY_MS, OHLCV_COLUMNS, coerce_bars, date_to_ms, ms_to_date
from ..params_base import check

QUARANTINE_COLUMNS = ("symbol", "timestamp", "rule", "field", "original", "open", "high", "low", "close", "volume")
# Rules whose quarantined bars are not raw history to reconsider later.
NOT_RESTORABLE = frozenset({"not_closed"})
VALUE_RULES = {"bad_wick_low": "low", "bad_wick_high": "high"}
# Bar rules applied after the value fixes (their quarantined bars hold fixed values).
LATE_BAR_RULES = frozenset({"zero_volume_stall", "contamination", "contamination_unisolated"})


@dataclass(frozen=True)
class QualityRules:
    toxic_threshold: float = 5.0
    wick_low_factor: float = 2.0
    wick_high_factor: float = 3.0
    stall_days: int = 3
    max_contamination_days: int = 30

    def __post_init__(self) -> None:
        # the keys live flat in the `data` section of params.yaml
        check(self.toxic_threshold > 0, f"data.toxic_threshold must be > 0, got {self.toxic_threshold}")
        check(self.wick_low_factor > 1, f"data.wick_low_factor must be > 1, got {self.wick_low_factor}")
        check(self.wick_high_factor > 1, f"data.wick_high_factor must be > 1, got {self.wick_high_factor}")
        check(self.stall_days >= 2, f"data.stall_days must be >= 2, got {self.stall_days}")
        check(self.max_contamination_days >= 1, f"data.max_contamination_days must be >= 1, got {self.max_contamination_days}")


@dataclass
class SanitizeResult:
    bars: pd.DataFrame
    quarantine: pd.DataFrame
    # first day of a contamination that cannot be isolated: every bar from it on is quarantined
    # (a toxic tail), the bars before it are clean and kept
    toxic_from: dt.date | None = None


_EMPTY_QUARANTINE = pd.DataFrame(
    {
        "symbol": pd.Series([], dtype="object"),
        "timestamp": pd.Series([], dtype="int64"),
        "rule": pd.Series([], dtype="object"),
        "field": pd.Series([], dtype="object"),
        "original": pd.Series([], dtype="float64"),
        **{c: pd.Series([], dtype="float64") for c in OHLCV_COLUMNS[1:]},
    }
)


def empty_quarantine() -> pd.DataFrame:
    # a copy of one template: building ten empty Series cost a millisecond per symbol
    return _EMPTY_QUARANTINE.copy()


Columns = dict[str, np.ndarray]  # the OHLCV columns of a bar table, one array each


def _columns(raw: pd.DataFrame, symbol: str) -> Columns:
    """Copies of `raw`'s OHLCV columns with the contract's dtypes (`coerce_bars` when they differ)."""
    if set(OHLCV_COLUMNS) <= set(raw.columns):
        cols = {c: raw[c].to_numpy(copy=True) for c in OHLCV_COLUMNS}
        if all(v.dtype == ("int64" if c == "timestamp" else "float64") for c, v in cols.items()):
            return cols
    raw = coerce_bars(raw, where=symbol)
    return {c: raw[c].to_numpy(copy=True) for c in OHLCV_COLUMNS}


def _select(cols: Columns, keep: np.ndarray) -> Columns:
    return {c: v[keep] for c, v in cols.items()}


def _bar_events(symbol: str, cols: Columns, mask: np.ndarray, rule: str) -> pd.DataFrame:
    out = pd.DataFrame({"symbol": symbol, "timestamp": cols["timestamp"][mask], "rule": rule, "field": "bar", "original": np.nan})
    for c in OHLCV_COLUMNS[1:]:
        out[c] = cols[c][mask]
    return out


def sanitize(raw: pd.DataFrame, *, symbol: str, as_of: dt.date, rules: QualityRules) -> SanitizeResult:
    """Apply every gate to `raw` (any order, may hold duplicates) and return clean bars + quarantine."""
    cols = _columns(raw, symbol)
    events: list[pd.DataFrame] = []

    def drop(mask: np.ndarray, rule: str) -> None:
        nonlocal cols
        if mask.any():
            events.append(_bar_events(symbol, cols, mask, rule))
            cols = _select(cols, ~mask)

    drop(cols["timestamp"] % DAY_MS != 0, "misaligned_timestamp")
    drop(cols["timestamp"] > date_to_ms(as_of), "not_closed")

    o, h, l, c, v = (cols[k] for k in OHLCV_COLUMNS[1:])
    prices = np.column_stack([o, h, l, c])
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1) | ~np.isfinite(v) | (v < 0)
    drop(bad, "invalid_value")

    o, h, l, c = (cols[k] for k in ("open", "high", "low", "close"))
    drop((l > np.minimum(o, c)) | (h < np.maximum(o, c)), "ohlc_order")

    # Identical duplicates merge silently; a different bar for a known day never replaces the
    # first one seen (the stored one: ingestion puts stored history before new fetches).
    order = np.argsort(cols["timestamp"], kind="stable")
    if (np.diff(cols["timestamp"][order]) == 0).any():
        # rare (overlapping fetches): pandas' row hashing decides what "identical" means
        cols = _select(cols, ~pd.DataFrame(cols).duplicated(keep="first").to_numpy())
        drop(pd.Series(cols["timestamp"]).duplicated(keep="first").to_numpy(), "duplicate_timestamp")
        order = np.argsort(cols["timestamp"], kind="stable")
    if (order[1:] < order[:-1]).any():  # not sorted yet
        cols = _select(cols, order)

    for rule, col in VALUE_RULES.items():
        o, c = cols["open"], cols["close"]
        body = np.minimum(o, c) if col == "low" else np.maximum(o, c)
        mask = (cols[col] < body / rules.wick_low_factor) if col == "low" else (cols[col] > body * rules.wick_high_factor)
        if mask.any():
            ev = _bar_events(symbol, cols, mask, rule)
            ev["field"] = col
            ev["original"] = cols[col][mask]
            events.append(ev)
            cols[col] = np.where(mask, body, cols[col])

    drop(_stall_mask(cols, rules.stall_days), "zero_volume_stall")

    contaminated, unisolated = _contamination_masks(cols["close"], rules)
    toxic_from = None
    if unisolated.any():
        toxic_from = ms_to_date(int(cols["timestamp"][np.argmax(unisolated)]))
    both = contaminated | unisolated
    if both.any():
        ev_c = _bar_events(symbol, cols, contaminated & ~unisolated, "contamination")
        ev_u = _bar_events(symbol, cols, unisolated, "contamination_unisolated")
        events.extend(e for e in (ev_c, ev_u) if len(e))
        cols = _select(cols, ~both)

    quarantine = empty_quarantine() if not events else sort_quarantine(pd.concat(events, ignore_index=True))
    return SanitizeResult(bars=pd.DataFrame(cols), quarantine=quarantine, toxic_from=toxic_from)


def sort_quarantine(q: pd.DataFrame) -> pd.DataFrame:
    q = q.astype({"timestamp": "int64", "original": "float64", **{c: "float64" for c in OHLCV_COLUMNS[1:]}})
    q = q.drop_duplicates(subset=["timestamp", "rule", "field", "open", "high", "low", "close", "volume"])
    return q.sort_values(["timestamp", "rule", "field", "open", "high", "low", "close", "volume"], kind="stable").reset_index(drop=True)


def _stall_mask(cols: Columns, stall_days: int) -> np.ndarray:
    """Runs of at least `stall_days` flat (open = high = low = close) zero-volume bars."""
    o, h, l, c, v = (cols[k] for k in OHLCV_COLUMNS[1:])
    flat = (v == 0) & (o == h) & (h == l) & (l == c)
    mask = np.zeros(len(flat), dtype=bool)
    if flat.any():
        edges = np.diff(np.r_[0, flat.astype(np.int8), 0])
        for first, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            if end - first >= stall_days:
                mask[first:end] = True
    return mask


def _contamination_masks(close: np.ndarray, rules: QualityRules) -> tuple[np.ndarray, np.ndarray]:
    """Bars at a foreign price level: (isolated stretches, an unisolated tail).

    A bar whose close jumps by more than the threshold from the previous close starts a
    stretch; it is isolated when a close within the threshold of the level before the jump
    follows within `max_contamination_days` bars (scanning resumes after that bar), and an
    up-jump that never comes back starts a toxic tail. Only the jumps are visited.
    """
    n = len(close)
    isolated = np.zeros(n, dtype=bool)
    unisolated = np.zeros(n, dtype=bool)
    up = 1.0 + rules.toxic_threshold
    if n < 2:
        return isolated, unisolated
    ratio = close[1:] / close[:-1]
    resume = 1  # the first bar the scan still looks at
    for i in (np.flatnonzero((ratio > up) | (ratio < 1.0 / up)) + 1).tolist():
        if i < resume:
            continue
        ref = close[i - 1]
        later = close[i + 1 : min(n, i + rules.max_contamination_days + 1)] / ref
        back = np.flatnonzero((1.0 / up <= later) & (later <= up))
        if len(back):
            isolated[i : i + 1 + back[0]] = True
            resume = i + 2 + back[0]
            continue
        if ratio[i - 1] > up:
            unisolated[i:] = True
            break
    return isolated, unisolated


def restorable_raw(bars: pd.DataFrame, quarantine: pd.DataFrame) -> pd.DataFrame:
    """The raw history behind stored clean bars: the bars plus the quarantined originals.

    Value-level fixes are undone (the original value put back, also on bars a later rule
    removed) and removed bars re-added, so that re-sanitizing gives the same result as
    sanitizing the original fetches.
    """
    raw = coerce_bars(bars)
    if quarantine is None or quarantine.empty:
        return raw
    q = quarantine[~quarantine["rule"].isin(NOT_RESTORABLE)]
    removed = q["field"] == "bar"
    # Bars removed after the value fixes carry fixed values: restore them together with the kept bars.
    late = removed & q["rule"].isin(LATE_BAR_RULES)
    raw = pd.concat([raw, coerce_bars(q[late])], ignore_index=True).sort_values("timestamp", kind="stable")
    raw = raw.reset_index(drop=True)
    ts = raw["timestamp"].to_numpy()
    for rule, col in VALUE_RULES.items():
        fix = q[q["rule"] == rule]
        if len(fix) and len(raw):
            pos = np.clip(np.searchsorted(ts, fix["timestamp"].to_numpy()), 0, len(raw) - 1)
            hit = ts[pos] == fix["timestamp"].to_numpy()
            raw.loc[pos[hit], col] = fix["original"].to_numpy()[hit]
    early = removed & ~late
    return pd.concat([raw, coerce_bars(q[early])], ignore_index=True)
