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

from ..contracts import DAY_MS, OHLCV_COLUMNS, coerce_bars, date_to_ms
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


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.Series([], dtype="object"),
            "timestamp": pd.Series([], dtype="int64"),
            "rule": pd.Series([], dtype="object"),
            "field": pd.Series([], dtype="object"),
            "original": pd.Series([], dtype="float64"),
            **{c: pd.Series([], dtype="float64") for c in OHLCV_COLUMNS[1:]},
        }
    )


def _bar_events(symbol: str, df: pd.DataFrame, mask: np.ndarray, rule: str) -> pd.DataFrame:
    sel = df.loc[mask, list(OHLCV_COLUMNS)]
    out = pd.DataFrame({"symbol": symbol, "timestamp": sel["timestamp"].to_numpy(), "rule": rule, "field": "bar", "original": np.nan})
    for c in OHLCV_COLUMNS[1:]:
        out[c] = sel[c].to_numpy()
    return out


def sanitize(raw: pd.DataFrame, *, symbol: str, as_of: dt.date, rules: QualityRules) -> SanitizeResult:
    """Apply every gate to `raw` (any order, may hold duplicates) and return clean bars + quarantine."""
    df = coerce_bars(raw, where=symbol)
    events: list[pd.DataFrame] = []

    def drop(mask: np.ndarray, rule: str) -> None:
        nonlocal df
        if mask.any():
            events.append(_bar_events(symbol, df, mask, rule))
            df = df.loc[~mask].reset_index(drop=True)

    drop((df["timestamp"] % DAY_MS != 0).to_numpy(), "misaligned_timestamp")
    drop((df["timestamp"] > date_to_ms(as_of)).to_numpy(), "not_closed")

    o, h, l, c, v = (df[k].to_numpy() for k in OHLCV_COLUMNS[1:])
    prices = np.column_stack([o, h, l, c])
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1) | ~np.isfinite(v) | (v < 0)
    drop(bad, "invalid_value")

    o, h, l, c = (df[k].to_numpy() for k in ("open", "high", "low", "close"))
    drop((l > np.minimum(o, c)) | (h < np.maximum(o, c)), "ohlc_order")

    # Identical duplicates merge silently; a different bar for a known day never replaces the
    # first one seen (the stored one: ingestion puts stored history before new fetches).
    df = df.drop_duplicates(keep="first").reset_index(drop=True)
    drop(df["timestamp"].duplicated(keep="first").to_numpy(), "duplicate_timestamp")
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)

    for rule, col in VALUE_RULES.items():
        body = np.minimum(df["open"], df["close"]) if col == "low" else np.maximum(df["open"], df["close"])
        mask = (df[col] < body / rules.wick_low_factor) if col == "low" else (df[col] > body * rules.wick_high_factor)
        mask = mask.to_numpy()
        if mask.any():
            ev = _bar_events(symbol, df, mask, rule)
            ev["field"] = col
            ev["original"] = df.loc[mask, col].to_numpy()
            events.append(ev)
            df.loc[mask, col] = body[mask]

    drop(_stall_mask(df, rules.stall_days), "zero_volume_stall")

    contaminated, unisolated = _contamination_masks(df["close"].to_numpy(), rules)
    toxic_from = None
    if unisolated.any():
        toxic_from = pd.Timestamp(int(df["timestamp"].to_numpy()[np.argmax(unisolated)]), unit="ms").date()
    both = contaminated | unisolated
    if both.any():
        ev_c = _bar_events(symbol, df, contaminated & ~unisolated, "contamination")
        ev_u = _bar_events(symbol, df, unisolated, "contamination_unisolated")
        events.extend(e for e in (ev_c, ev_u) if len(e))
        df = df.loc[~both].reset_index(drop=True)

    quarantine = empty_quarantine() if not events else pd.concat(events, ignore_index=True)
    quarantine = sort_quarantine(quarantine)
    return SanitizeResult(bars=df.reset_index(drop=True), quarantine=quarantine, toxic_from=toxic_from)


def sort_quarantine(q: pd.DataFrame) -> pd.DataFrame:
    q = q.astype({"timestamp": "int64", "original": "float64", **{c: "float64" for c in OHLCV_COLUMNS[1:]}})
    q = q.drop_duplicates(subset=["timestamp", "rule", "field", "open", "high", "low", "close", "volume"])
    return q.sort_values(["timestamp", "rule", "field", "open", "high", "low", "close", "volume"], kind="stable").reset_index(drop=True)


def _stall_mask(df: pd.DataFrame, stall_days: int) -> np.ndarray:
    flat = (
        (df["volume"] == 0)
        & (df["open"] == df["high"])
        & (df["high"] == df["low"])
        & (df["low"] == df["close"])
    ).to_numpy()
    mask = np.zeros(len(flat), dtype=bool)
    i = 0
    while i < len(flat):
        if flat[i]:
            j = i
            while j < len(flat) and flat[j]:
                j += 1
            if j - i >= stall_days:
                mask[i:j] = True
            i = j
        else:
            i += 1
    return mask


def _contamination_masks(close: np.ndarray, rules: QualityRules) -> tuple[np.ndarray, np.ndarray]:
    """Bars at a foreign price level: (isolated stretches, an unisolated tail)."""
    n = len(close)
    isolated = np.zeros(n, dtype=bool)
    unisolated = np.zeros(n, dtype=bool)
    up = 1.0 + rules.toxic_threshold
    i = 1
    while i < n:
        ref = close[i - 1]
        ratio = close[i] / ref
        if ratio > up or ratio < 1.0 / up:
            # find the first bar back at the reference level (within a factor `up` of it)
            limit = min(n, i + rules.max_contamination_days + 1)
            back = next((j for j in range(i + 1, limit) if 1.0 / up <= close[j] / ref <= up), None)
            if back is not None:
                isolated[i:back] = True
                i = back + 1
                continue
            if ratio > up:
                unisolated[i:] = True
                break
        i += 1
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
