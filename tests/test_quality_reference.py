"""`sanitize` on numpy arrays gives exactly what the pandas implementation it replaced gave.

The reference below is that implementation (quantlake before issue 14, item 8), kept verbatim
but for names: staged files, quarantines and the committed baselines were made with it, so any
input must give the same clean bars, the same quarantine (rows, order, dtypes) and the same
`toxic_from`. The inputs are adversarial: misaligned and future bars, NaN, zero and negative
values, broken OHLC order, bad wicks, flat zero-volume runs, jumps that come back or not,
identical and conflicting duplicates, out-of-order rows and non-numeric columns.
"""

import datetime as dt

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from quantlake.contracts import DAY_MS, OHLCV_COLUMNS, coerce_bars, date_to_ms
from quantlake.data.quality import VALUE_RULES, QualityRules, empty_quarantine, sanitize, sort_quarantine

T0 = date_to_ms(dt.date(2024, 1, 1))


def _ref_bar_events(symbol, df, mask, rule):
    sel = df.loc[mask, list(OHLCV_COLUMNS)]
    out = pd.DataFrame({"symbol": symbol, "timestamp": sel["timestamp"].to_numpy(), "rule": rule, "field": "bar", "original": np.nan})
    for c in OHLCV_COLUMNS[1:]:
        out[c] = sel[c].to_numpy()
    return out


def reference_sanitize(raw, *, symbol, as_of, rules):
    df = coerce_bars(raw, where=symbol)
    events = []

    def drop(mask, rule):
        nonlocal df
        if mask.any():
            events.append(_ref_bar_events(symbol, df, mask, rule))
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
    df = df.drop_duplicates(keep="first").reset_index(drop=True)
    drop(df["timestamp"].duplicated(keep="first").to_numpy(), "duplicate_timestamp")
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    for rule, col in VALUE_RULES.items():
        body = np.minimum(df["open"], df["close"]) if col == "low" else np.maximum(df["open"], df["close"])
        mask = (df[col] < body / rules.wick_low_factor) if col == "low" else (df[col] > body * rules.wick_high_factor)
        mask = mask.to_numpy()
        if mask.any():
            ev = _ref_bar_events(symbol, df, mask, rule)
            ev["field"] = col
            ev["original"] = df.loc[mask, col].to_numpy()
            events.append(ev)
            df.loc[mask, col] = body[mask]
    drop(_ref_stall_mask(df, rules.stall_days), "zero_volume_stall")
    contaminated, unisolated = _ref_contamination_masks(df["close"].to_numpy(), rules)
    toxic_from = None
    if unisolated.any():
        toxic_from = pd.Timestamp(int(df["timestamp"].to_numpy()[np.argmax(unisolated)]), unit="ms").date()
    both = contaminated | unisolated
    if both.any():
        ev_c = _ref_bar_events(symbol, df, contaminated & ~unisolated, "contamination")
        ev_u = _ref_bar_events(symbol, df, unisolated, "contamination_unisolated")
        events.extend(e for e in (ev_c, ev_u) if len(e))
        df = df.loc[~both].reset_index(drop=True)
    quarantine = empty_quarantine() if not events else pd.concat(events, ignore_index=True)
    return df.reset_index(drop=True), sort_quarantine(quarantine), toxic_from


def _ref_stall_mask(df, stall_days):
    flat = ((df["volume"] == 0) & (df["open"] == df["high"]) & (df["high"] == df["low"]) & (df["low"] == df["close"])).to_numpy()
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


def _ref_contamination_masks(close, rules):
    n = len(close)
    isolated = np.zeros(n, dtype=bool)
    unisolated = np.zeros(n, dtype=bool)
    up = 1.0 + rules.toxic_threshold
    i = 1
    while i < n:
        ref = close[i - 1]
        ratio = close[i] / ref
        if ratio > up or ratio < 1.0 / up:
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


def make_raw(seed: int, n: int, flat_share: float, duplicates: bool, shuffle: bool, object_column: bool) -> pd.DataFrame:
    """Bars with every defect the gates know, in any order, sometimes with a non-numeric column."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 40, n)
    ts = T0 + days * DAY_MS + np.where(rng.random(n) < 0.05, 3_600_000, 0)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.1, n)))
    close = np.where(rng.random(n) < 0.1, close * rng.choice([1000.0, 1e-4, 7.0, 0.1]), close)
    o = close * np.exp(rng.normal(0, 0.01, n))
    h, l = np.maximum(o, close) * 1.01, np.minimum(o, close) * 0.99
    h, l = np.where(rng.random(n) < 0.05, h * 10, h), np.where(rng.random(n) < 0.05, l / 10, l)
    swap = rng.random(n) < 0.04
    h, l = np.where(swap, l, h), np.where(swap, h, l)
    v = rng.random(n) * 100
    flat = rng.random(n) < flat_share
    o, h, l, close = (np.where(flat, 5.0, x) for x in (o, h, l, close))
    v = np.where(flat, 0.0, v)
    close = np.where(rng.random(n) < 0.03, np.nan, close)
    v = np.where(rng.random(n) < 0.02, -1.0, v)
    o = np.where(rng.random(n) < 0.02, 0.0, o)
    df = pd.DataFrame({"timestamp": ts.astype("int64"), "open": o, "high": h, "low": l, "close": close, "volume": v})
    if n and duplicates:  # identical and conflicting duplicates
        extra = df.sample(int(rng.integers(1, n + 1)), random_state=int(rng.integers(2**31)))
        extra.loc[extra.index[: len(extra) // 2], "close"] *= 1.0001
        df = pd.concat([df, extra, extra.head(1)], ignore_index=True)
    if shuffle:
        df = df.sample(frac=1.0, random_state=int(rng.integers(2**31)))  # out of order, shuffled index
    if object_column:
        df = df.astype({"open": "object"})  # goes through coerce_bars
    return df


raw_bars = st.builds(make_raw, st.integers(0, 2**32 - 1), st.integers(0, 45), st.sampled_from([0.0, 0.2, 0.6]), st.booleans(), st.booleans(), st.booleans())


@settings(max_examples=400, deadline=None)
@given(raw=raw_bars, as_of_day=st.integers(10, 45), stall_days=st.integers(2, 4), max_days=st.integers(1, 6),
       threshold=st.sampled_from([5.0, 0.5]))
def test_sanitize_matches_the_pandas_reference(raw, as_of_day, stall_days, max_days, threshold):
    rules = QualityRules(toxic_threshold=threshold, stall_days=stall_days, max_contamination_days=max_days)
    as_of = dt.date(2024, 1, 1) + dt.timedelta(days=as_of_day)
    bars, quarantine, toxic_from = reference_sanitize(raw.copy(), symbol="SIM:TESTUSDT", as_of=as_of, rules=rules)
    got = sanitize(raw.copy(), symbol="SIM:TESTUSDT", as_of=as_of, rules=rules)
    pd.testing.assert_frame_equal(got.bars, bars, check_exact=True)
    pd.testing.assert_frame_equal(got.quarantine, quarantine, check_exact=True)
    assert list(got.quarantine.dtypes) == list(quarantine.dtypes)
    assert got.toxic_from == toxic_from


def test_the_inputs_of_the_comparison_reach_every_gate():
    """The bars compared above really fire every rule (else the comparison would prove little)."""
    rules = QualityRules(stall_days=2, max_contamination_days=5)
    seen, toxic = set(), 0
    for seed in range(200):
        raw = make_raw(seed, 45, 0.2, duplicates=seed % 2 == 0, shuffle=seed % 3 == 0, object_column=False)
        res = sanitize(raw, symbol="SIM:TESTUSDT", as_of=dt.date(2024, 2, 1), rules=rules)
        seen |= set(res.quarantine["rule"])
        toxic += res.toxic_from is not None
    assert seen == {"misaligned_timestamp", "not_closed", "invalid_value", "ohlc_order", "duplicate_timestamp", "bad_wick_low",
                    "bad_wick_high", "zero_volume_stall", "contamination", "contamination_unisolated"}
    assert 1 <= toxic < 200
