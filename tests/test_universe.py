"""The point-in-time universe (issue 11, item 1): rules at every date, no look-ahead, the file."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from quantlake.data.discovery import ScannerConfig
from quantlake.data.universe import (
    UNIVERSE_COLUMNS,
    UniverseError,
    UniverseSpec,
    compute_universe,
    intervals,
    membership_matrix,
    publish_universe,
    read_universe,
    scanner_membership,
    tradable_scanners,
    traded_value_panel,
    universe_to_parquet_bytes,
)

DAYS = pd.date_range("2024-01-01", periods=120, freq="D", name="date")


def panel(**cols) -> pd.DataFrame:
    return pd.DataFrame({k: np.asarray(v, dtype="float64") for k, v in sorted(cols.items())}, index=DAYS)


def series(value=1e6, start=0, stop=None):
    out = np.full(len(DAYS), np.nan)
    out[start:stop] = value
    return out


def scanner(**kw) -> ScannerConfig:
    return ScannerConfig(name=kw.pop("name", "s"), **kw)


def members(value, cfg, admitted=None):
    return scanner_membership(value, cfg, admitted)


def test_listing_age_both_sides_of_the_boundary():
    m = members(panel(A=series(start=10)), scanner(min_listing_days=30))
    assert not m["A"].iloc[10 + 28]  # day 29 of listing
    assert m["A"].iloc[10 + 29] and m["A"].iloc[-1]  # day 30 of listing on
    assert not m["A"].iloc[:10].any()  # never before the first bar


def test_traded_value_threshold_both_sides():
    value = panel(A=series(2e6))
    assert members(value, scanner(min_traded_value_30d=2e6))["A"].all()
    assert not members(value, scanner(min_traded_value_30d=2e6 * (1 + 1e-12)))["A"].any()


def test_median_skips_missing_days_and_ignores_one_spike():
    a = series(1e6)
    a[40:60:2] = np.nan  # every other day missing: a zero would halve the median
    a[70] = 1e12  # one spike does not move a median
    m = members(panel(A=a), scanner(min_traded_value_30d=1e6))
    assert m["A"].all()
    b = series(1e6)
    b[50:66] = 0.0  # 16 zero-value days of the 30: the median falls to 0
    m = members(panel(B=b), scanner(min_traded_value_30d=1e6))["B"]
    # window [t-29, t]: 14 zeros keep the median at 1e6, 15 make it (0 + 1e6) / 2
    assert m.iloc[63] and not m.iloc[64] and not m.iloc[80] and m.iloc[81]


def test_status_from_days_without_a_bar_both_sides():
    a = series(1e6, stop=60)  # last bar on day 59
    liquid, inactive = scanner(halt_after_days=3), scanner(name="i", halt_after_days=3, statuses=["HALT", "BREAK"])
    on, off = members(panel(A=a), liquid)["A"], members(panel(A=a), inactive)["A"]
    assert on.iloc[59 + 2] and not on.iloc[59 + 3] and not on.iloc[59 + 3:].any()
    assert not off.iloc[:59 + 3].any() and off.iloc[59 + 3:].all()  # judged on its last 30 days
    gap = series(1e6)
    gap[30:32] = np.nan  # two missing days (an exchange outage) do not halt it
    assert members(panel(A=gap), liquid)["A"].all()


def test_inactive_liquidity_is_judged_on_the_window_ending_at_the_last_bar():
    a = series(1e6, stop=60)
    cfg = scanner(name="i", statuses=["HALT"], min_traded_value_30d=1e6)
    assert members(panel(A=a), cfg)["A"].iloc[-1]
    assert not members(panel(A=series(5e5, stop=60)), cfg)["A"].any()


def test_sort_and_limit_per_day_with_ties_by_symbol():
    b = series(3e6)
    b[60:] = 1e5  # B's value collapses: C takes its place once B's 30-day median falls
    value = panel(A=series(5e6), B=b, C=series(2e6), D=series(2e6))
    m = members(value, scanner(limit=2))
    assert m.iloc[50].to_dict() == {"A": True, "B": True, "C": False, "D": False}
    assert m.iloc[-1].to_dict() == {"A": True, "B": False, "C": True, "D": False}  # C ties D: by symbol
    asc = members(value, scanner(limit=1, sort_by="symbol", descending=False))
    assert asc.sum(axis=1).eq(1).all() and asc["A"].all()


def test_sort_by_listing_age_and_by_the_last_bar_value():
    a, b = series(1e6, start=20), series(2e6)
    b[-1] = 1e5  # B's last bar: a small day (its 30-day median stays 2e6)
    value = panel(A=a, B=b)
    oldest = members(value, scanner(limit=1, sort_by="listing_days"))
    assert oldest["B"].all() and not oldest["A"].any()
    youngest = members(value, scanner(limit=1, sort_by="listing_days", descending=False))
    assert youngest["A"].iloc[20:].all() and youngest["B"].iloc[:20].all()
    last_day = members(value, scanner(limit=1, sort_by="traded_value_24h"))
    assert last_day["B"].iloc[-2] and last_day["A"].iloc[-1] and not last_day["B"].iloc[-1]
    assert members(value, scanner(limit=1))["B"].iloc[-1]  # by the 30-day median B still leads


def test_symbols_a_scanner_does_not_admit_are_never_members():
    value = panel(A=series(), B=series())
    assert not members(value, scanner(), admitted=["A"])["B"].any()


def _random_panel(seed: int, days: int = 400, symbols: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    v = rng.lognormal(14, 1.5, (days, symbols))
    start = rng.integers(0, days, symbols)
    stop = np.minimum(days, start + rng.integers(20, days, symbols))
    rows = np.arange(days)[:, None]
    v[(rows < start) | (rows >= stop)] = np.nan
    v[rng.random((days, symbols)) < 0.03] = np.nan  # scattered missing days
    idx = pd.date_range("2022-01-01", periods=days, freq="D", name="date")
    return pd.DataFrame(v, index=idx, columns=[f"SIM:S{i:02d}USDT" for i in range(symbols)])


SPEC = UniverseSpec(
    (
        ScannerConfig("liquid", min_listing_days=30, min_traded_value_30d=1e6, limit=10),
        ScannerConfig("inactive", statuses=["HALT", "BREAK"], min_traded_value_30d=5e5, limit=100),
    )
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_intervals_round_trip_to_the_daily_membership(seed):
    value = _random_panel(seed)
    universe = compute_universe(value, SPEC)
    for cfg in SPEC.scanners:
        direct = scanner_membership(value, cfg)
        back = membership_matrix(universe, value.index, list(value.columns), [cfg.name])
        pd.testing.assert_frame_equal(back, direct, check_names=False)
    assert (universe["end"] >= universe["start"]).all()
    assert list(universe.columns) == list(UNIVERSE_COLUMNS)
    assert universe.equals(universe.sort_values(["scanner", "symbol", "start"]).reset_index(drop=True))


@pytest.mark.parametrize("seed", [4, 5])
def test_universe_at_t_is_the_same_with_data_up_to_t_or_later(seed):
    """No look-ahead: membership up to t never depends on a bar after t."""
    value = _random_panel(seed)
    full = compute_universe(value, SPEC)
    rng = np.random.default_rng(seed)
    for t in sorted(rng.choice(value.index[1:], size=6, replace=False)):
        early = compute_universe(value.loc[:t], SPEC)
        days = value.index[value.index <= t]
        a = membership_matrix(early, days, list(value.columns))
        b = membership_matrix(full, days, list(value.columns))
        assert a.equals(b), f"membership up to {t} changed with later data"
        # per scanner too (the inactive scanner judges on last bars, a likely leak)
        for cfg in SPEC.scanners:
            assert membership_matrix(early, days, list(value.columns), [cfg.name]).equals(
                membership_matrix(full, days, list(value.columns), [cfg.name])
            )


def test_universe_on_the_sim_is_point_in_time(sim_lakehouse):
    """The same property on the sim's certified bars (listings, delistings, a halt, outages)."""
    from quantlake.storage import read_json, read_ohlcv as read_bars

    lake = sim_lakehouse / "lakehouse"
    cert = read_json(lake / "certified.json")["symbols"]
    bars = {s: read_bars(lake / e["file"]) for s, e in cert.items()}
    spec = UniverseSpec((ScannerConfig("liquid", min_listing_days=30, min_traded_value_30d=1e6, limit=8),))
    full = compute_universe(traded_value_panel(bars, dt.date(2026, 11, 20)), spec)
    for t in ("2022-05-01", "2022-11-15", "2024-11-12", "2025-06-30", "2026-08-20"):
        early = compute_universe(traded_value_panel(bars, dt.date.fromisoformat(t)), spec)
        days = pd.date_range("2022-01-01", t, freq="D")
        assert membership_matrix(early, days, sorted(cert)).equals(membership_matrix(full, days, sorted(cert))), t
    m = membership_matrix(full, pd.DatetimeIndex(["2026-11-20"]), sorted(cert))
    assert m.sum(axis=1).iloc[0] == 8 and not m["SIM:WAVESUSDT"].iloc[0]  # halted since 2026-08-15


def test_membership_matrix_ignores_unknown_symbols_and_unions_scanners():
    u = pd.DataFrame(
        {
            "symbol": ["SIM:AUSDT", "SIM:AUSDT", "SIM:ZUSDT"],
            "scanner": ["x", "y", "x"],
            "start": pd.to_datetime(["2024-01-02", "2024-01-04", "2024-01-01"]),
            "end": pd.to_datetime(["2024-01-03", "2024-01-05", "2024-01-09"]),
        }
    )
    dates = pd.date_range("2024-01-01", periods=6, freq="D")
    m = membership_matrix(u, dates, ["SIM:AUSDT", "SIM:BUSDT"])
    assert m["SIM:AUSDT"].tolist() == [False, True, True, True, True, False] and not m["SIM:BUSDT"].any()
    assert membership_matrix(u, dates, ["SIM:AUSDT"], ["y"])["SIM:AUSDT"].tolist() == [False, False, False, True, True, False]


def test_file_round_trip_is_deterministic_and_self_describing(tmp_path):
    value = _random_panel(7)
    universe = compute_universe(value, SPEC)
    data = universe_to_parquet_bytes(universe, SPEC, dt.date(2023, 2, 4))
    assert data == universe_to_parquet_bytes(universe.sample(frac=1, random_state=1), SPEC, dt.date(2023, 2, 4))
    (tmp_path / "u.parquet").write_bytes(data)
    back = read_universe(tmp_path / "u.parquet")
    pd.testing.assert_frame_equal(back, universe)
    assert back.attrs["as_of"] == "2023-02-04" and tradable_scanners(back) == ["liquid"]


def test_bad_universe_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"symbol": ["SIM:AUSDT"], "day": [1]}).to_parquet(bad)
    with pytest.raises(UniverseError, match="bad.parquet: columns"):
        read_universe(bad)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(UniverseError, match="junk.parquet: cannot read"):
        read_universe(tmp_path / "junk.parquet")


def test_spec_from_candidates_attributes_and_checks_scanner_names():
    doc = {
        "scanners": [{"name": "a", "statuses": ["TRADING"]}, {"name": "b", "statuses": ["HALT"]}],
        "candidates": [
            {"symbol": "SIM:XUSDT", "scanner": "a", "scanners": [{"scanner": "a", "rank": 1}, {"scanner": "b", "rank": 1}]},
            {"symbol": "SIM:YUSDT", "scanner": "b", "scanners": [{"scanner": "b", "rank": 2}]},
        ],
    }
    doc["candidates"].append({"symbol": "SIM:ZUSDT"})  # claimed by no scanner: in no universe
    spec = UniverseSpec.from_candidates(doc)
    assert spec.attribution == {"a": frozenset({"SIM:XUSDT"}), "b": frozenset({"SIM:XUSDT", "SIM:YUSDT"})}
    assert UniverseSpec.from_candidates({"scanners": [], "candidates": []}) is None
    doc["candidates"][1]["scanners"] = [{"scanner": "nope"}]
    with pytest.raises(UniverseError, match="SIM:YUSDT.*'nope'"):
        UniverseSpec.from_candidates(doc)
    with pytest.raises(UniverseError, match=r"scanners\[0\] has unknown key"):
        UniverseSpec.from_candidates({"scanners": [{"name": "a", "limt": 3}]})


def test_bars_after_as_of_are_ignored():
    day = 86_400_000
    ts = pd.Timestamp("2024-01-01").value // 1_000_000
    bars = {"SIM:AUSDT": pd.DataFrame({"timestamp": [ts, ts + day, ts + 2 * day], "close": [1.0, 2.0, 3.0], "volume": [1.0, 1.0, 1.0]})}
    value = traded_value_panel(bars, dt.date(2024, 1, 2))
    assert value["SIM:AUSDT"].tolist() == [1.0, 2.0] and value.index[-1] == pd.Timestamp("2024-01-02")
    with pytest.raises(UniverseError, match="SIM:BUSDT: bars lack column"):
        traded_value_panel({"SIM:BUSDT": pd.DataFrame({"timestamp": [ts]})}, dt.date(2024, 1, 2))


def test_publish_without_scanners_writes_nothing(tmp_path):
    assert publish_universe(tmp_path, {"symbols": {}}, None, dt.date(2024, 1, 1))["file"] is None
    assert not list(tmp_path.iterdir())


def _reindexed_panel(bars: dict, as_of: dt.date) -> pd.DataFrame:
    """The panel as it was built before `traded_value_matrix`: one Series reindexed per symbol."""
    end = pd.Timestamp(as_of)
    series = {}
    for sym in sorted(bars):
        b = bars[sym]
        days = pd.to_datetime(b["timestamp"].to_numpy("int64"), unit="ms")
        keep = days <= end
        series[sym] = pd.Series(b["close"].to_numpy("float64")[keep] * b["volume"].to_numpy("float64")[keep], index=days[keep])
    start = min(s.index[0] for s in series.values() if len(s))
    calendar = pd.date_range(start, end, freq="D", name="date")
    return pd.DataFrame({sym: s.reindex(calendar) for sym, s in series.items()}, index=calendar).astype("float64")


def test_the_traded_value_matrix_is_the_reindexed_panel_bit_for_bit():
    from quantlake.sources.sim import SimExchange
    from quantlake.contracts import SymbolId

    sim = SimExchange(7, extra_symbols=40)
    names = ["BTCUSDT", "ETHUSDT", "LUNAUSDT", "FTTUSDT", *(f"Q{i:05d}USDT" for i in range(40))]
    bars = {f"SIM:{n}": sim.fetch_bars(SymbolId.parse(f"SIM:{n}"), dt.date(2019, 6, 1), dt.date(2026, 11, 25)) for n in names}
    odd = bars["SIM:ETHUSDT"].copy()
    odd.loc[5, "timestamp"] += 3_600_000  # not a midnight: matches no calendar day
    bars["SIM:ETHUSDT"] = odd.drop(index=range(100, 130)).reset_index(drop=True)  # a hole
    for as_of in (dt.date(2026, 11, 20), dt.date(2021, 3, 1)):
        got, want = traded_value_panel(bars, as_of), _reindexed_panel(bars, as_of)
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_freq=False)
        assert np.isnan(got["SIM:ETHUSDT"].to_numpy()).sum() > 30
