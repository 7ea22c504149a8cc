"""Each quality gate, on hand-made bars, on the sim's labelled defects and on real Binance data."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from conftest import load_freqtrade, real_bases

from quantlake.contracts import DAY_MS, date_to_ms, validate_ohlcv
from quantlake.data.quality import QualityRules, restorable_raw, sanitize
from quantlake.sources.sim import DEFECTS, SimExchange

RULES = QualityRules()
FAR = dt.date(2030, 1, 1)


def bars(closes, start=dt.date(2024, 1, 1)):
    c = np.asarray(closes, dtype="float64")
    ts = date_to_ms(start) + np.arange(len(c), dtype="int64") * DAY_MS
    return pd.DataFrame({"timestamp": ts, "open": c, "high": c * 1.01, "low": c * 0.99, "close": c, "volume": np.full(len(c), 10.0)})


def run(df, as_of=FAR, **kw):
    return sanitize(df, symbol="SIM:TESTUSDT", as_of=as_of, rules=QualityRules(**kw) if kw else RULES)


def rules_fired(result):
    return sorted(set(result.quarantine["rule"]))


def test_clean_bars_pass_untouched():
    df = bars(np.linspace(1, 2, 50))
    res = run(df)
    pd.testing.assert_frame_equal(res.bars, df)
    assert res.quarantine.empty and res.toxic_from is None


def test_isolated_contamination_is_quarantined_and_genuine_moves_stay():
    closes = [1.0] * 10 + [1000.0, 1010.0, 990.0] + [1.02] * 5 + [4.9]  # the last: +380%, genuine
    res = run(bars(closes))
    assert rules_fired(res) == ["contamination"]
    assert len(res.quarantine) == 3
    assert res.bars["close"].max() == 4.9 and res.toxic_from is None
    q = res.quarantine.iloc[0]
    assert q["symbol"] == "SIM:TESTUSDT" and q["close"] == 1000.0 and q["field"] == "bar"


def test_unisolated_contamination_quarantines_the_tail_and_keeps_the_clean_past():
    df = bars([1.0] * 10 + [1000.0] * 40)
    res = run(df)
    jump = pd.Timestamp(int(df["timestamp"].iloc[10]), unit="ms").date()
    assert res.toxic_from == jump
    q = res.quarantine
    assert (q["rule"] == "contamination_unisolated").sum() == 40 and q["timestamp"].min() == df["timestamp"].iloc[10]
    # both sides of the boundary: the day before the jump is kept, the jump day is not
    pd.testing.assert_frame_equal(res.bars, df.iloc[:10].reset_index(drop=True))


def test_a_jump_just_below_the_threshold_is_not_a_toxic_tail():
    res = run(bars([1.0] * 10 + [5.999] * 40))  # +499.9% with the 500% threshold
    assert res.toxic_from is None and res.quarantine.empty and len(res.bars) == 50
    res = run(bars([1.0] * 10 + [6.001] * 40))  # +500.1%
    assert res.toxic_from is not None and len(res.bars) == 10


def test_a_crash_that_does_not_come_back_is_kept():
    res = run(bars([1.0] * 5 + [0.1] * 20))  # -90%, stays there
    assert res.quarantine.empty and len(res.bars) == 25


def test_bad_wicks_are_fixed_value_by_value_and_the_originals_kept():
    df = bars([10.0] * 5)
    df.loc[1, "low"] = 0.01
    df.loc[3, "high"] = 500.0
    res = run(df)
    assert rules_fired(res) == ["bad_wick_high", "bad_wick_low"]
    assert res.bars.loc[1, "low"] == 10.0 and res.bars.loc[3, "high"] == 10.0
    orig = res.quarantine.set_index("rule")["original"]
    assert orig["bad_wick_low"] == 0.01 and orig["bad_wick_high"] == 500.0
    assert len(res.bars) == 5


def test_broken_order_invalid_values_and_misaligned_bars_are_removed():
    df = bars([10.0] * 6)
    df.loc[1, ["high", "low"]] = [9.0, 11.0]
    df.loc[2, "close"] = 0.0
    df.loc[3, "volume"] = -1.0
    df.loc[4, "open"] = np.nan
    df.loc[5, "timestamp"] += 3_600_000
    res = run(df)
    assert rules_fired(res) == ["invalid_value", "misaligned_timestamp", "ohlc_order"]
    assert len(res.bars) == 1 and validate_ohlcv(res.bars) == []


def test_duplicates_merge_when_identical_and_the_first_wins_otherwise():
    df = bars([10.0, 11.0, 12.0])
    changed = df.iloc[[1]].assign(close=11.5, high=12.0)
    res = run(pd.concat([df, df.iloc[[2]], changed], ignore_index=True))
    assert len(res.bars) == 3 and res.bars.loc[1, "close"] == 11.0
    assert rules_fired(res) == ["duplicate_timestamp"] and res.quarantine["close"].iloc[0] == 11.5


def test_bars_after_as_of_are_never_kept():
    res = run(bars([1.0] * 10), as_of=dt.date(2024, 1, 7))
    assert len(res.bars) == 7 and rules_fired(res) == ["not_closed"]


def test_zero_volume_flat_stalls_are_removed_but_single_quiet_days_stay():
    df = bars([10.0] * 12)
    for i in (2, 3, 4, 5):  # a 4-day stall
        df.loc[i, ["open", "high", "low", "close", "volume"]] = [10.0, 10.0, 10.0, 10.0, 0.0]
    df.loc[9, ["open", "high", "low", "close", "volume"]] = [10.0, 10.0, 10.0, 10.0, 0.0]  # one quiet day
    res = run(df)
    assert (res.quarantine["rule"] == "zero_volume_stall").sum() == 4
    assert len(res.bars) == 8


def test_restorable_raw_gives_back_the_original_history():
    df = bars([1.0] * 10 + [1000.0] * 2 + [1.0] * 5)
    df.loc[3, "low"] = 0.0001
    df.loc[10, "low"] = 0.0001  # a bad wick inside the contaminated stretch
    res = run(df)
    raw = restorable_raw(res.bars, res.quarantine).sort_values("timestamp").reset_index(drop=True)
    pd.testing.assert_frame_equal(raw, df)
    again = run(raw)
    pd.testing.assert_frame_equal(again.bars, res.bars)
    pd.testing.assert_frame_equal(again.quarantine, res.quarantine)


# --------------------------------------------------------------------------- sim defects


@pytest.fixture(scope="module")
def sim():
    return SimExchange(seed=7)


def _sim_result(sim, sym):
    from quantlake.contracts import SymbolId

    raw = sim.fetch_bars(SymbolId.parse(f"SIM:{sym}"), dt.date(2020, 1, 1), dt.date(2026, 11, 20))
    return sanitize(raw, symbol=f"SIM:{sym}", as_of=dt.date(2026, 11, 20), rules=RULES)


@pytest.mark.parametrize(
    "symbol, rule, count",
    [
        ("ADAUSDT", "contamination", 4),
        ("XVGUSDT", "contamination_unisolated", 51),
        ("LINKUSDT", "bad_wick_low", 1),
        ("FTTUSDT", "bad_wick_high", 1),
        ("EOSUSDT", "ohlc_order", 1),
        ("XEMUSDT", "zero_volume_stall", 10),
    ],
)
def test_each_sim_defect_fires_its_gate_at_its_documented_place(sim, symbol, rule, count):
    defect = next(d for d in DEFECTS if d.symbol == symbol and d.kind in (rule, "contamination"))
    res = _sim_result(sim, symbol)
    q = res.quarantine
    assert rules_fired(res) == [rule]
    assert len(q) == count
    assert q["timestamp"].min() == date_to_ms(defect.start)
    assert (res.toxic_from is not None) == (rule == "contamination_unisolated")


def test_sim_genuine_moves_are_kept(sim):
    res = _sim_result(sim, "DOGEUSDT")
    assert res.quarantine.empty
    c = res.bars.set_index("timestamp")["close"]
    day = date_to_ms(dt.date(2021, 1, 28))
    assert c[day] / c[day - DAY_MS] - 1 == pytest.approx(3.92, rel=1e-9)
    btc = _sim_result(sim, "BTCUSDT")
    crash = btc.bars.set_index("timestamp")["close"]
    assert crash[date_to_ms(dt.date(2020, 3, 12))] / crash[date_to_ms(dt.date(2020, 3, 11))] < 0.7
    assert btc.quarantine.empty


# --------------------------------------------------------------------------- real data


def _sanitize_real(base):
    return sanitize(load_freqtrade(base), symbol=f"BINANCE:{base}USDT", as_of=dt.date(2022, 10, 10), rules=RULES)


def _q_dates(res, rule=None):
    q = res.quarantine if rule is None else res.quarantine[res.quarantine["rule"] == rule]
    return {pd.Timestamp(int(t), unit="ms").date().isoformat() for t in q["timestamp"]}


@pytest.mark.parametrize(
    "base, day",
    [("LINK", "2020-03-12"), ("FTT", "2020-02-19"), ("EGLD", "2021-02-15"), ("MANA", "2020-09-10"), ("SAND", "2021-02-22"), ("VET", "2021-05-19")],
)
def test_real_bad_low_prints_are_quarantined(base, day):
    res = _sanitize_real(base)
    assert day in _q_dates(res, "bad_wick_low")
    row = res.bars[res.bars["timestamp"] == date_to_ms(dt.date.fromisoformat(day))].iloc[0]
    assert row["low"] == min(row["open"], row["close"])  # the bar itself is kept


def test_real_listing_day_absurd_ranges_are_caught():
    assert "2022-03-17" in _q_dates(_sanitize_real("APE"), "bad_wick_high")
    assert "2017-11-06" in _q_dates(_sanitize_real("BNB"), "bad_wick_low")


def test_real_genuine_moves_are_kept_everywhere():
    doge = _sanitize_real("DOGE").bars.set_index("timestamp")["close"]
    d = date_to_ms(dt.date(2021, 1, 28))
    assert doge[d] / doge[d - DAY_MS] - 1 == pytest.approx(3.924, abs=1e-3)
    crash_days = {date_to_ms(dt.date(2020, 3, 12)), date_to_ms(dt.date(2021, 5, 19))}
    for base in real_bases():
        res = _sanitize_real(base)
        raw = load_freqtrade(base)
        # no close, no bar is ever dropped from the real files: only wick values are fixed
        assert len(res.bars) == len(raw), base
        assert set(res.quarantine["field"]) <= {"low", "high"}, base
        assert res.toxic_from is None
        kept = res.bars.set_index("timestamp")["close"]
        for day in crash_days & set(kept.index):
            assert kept[day] == raw.set_index("timestamp")["close"][day]
        assert validate_ohlcv(res.bars, as_of=dt.date(2022, 10, 10)) == []


def test_real_quarantine_stays_small_and_labelled():
    total = {b: len(_sanitize_real(b).quarantine) for b in real_bases()}
    assert sum(total.values()) <= 15, total  # a handful of labelled bad prints, not a purge
    assert total["LINK"] >= 1 and total["FTT"] >= 1


# --------------------------------------------------------------------------- boundaries
# Every threshold on both sides (params.yaml defaults: toxic_threshold 5.0, wick factors 2 and 3,
# stall_days 3, max_contamination_days 30).


@pytest.mark.parametrize("close, kept", [(5.99, True), (6.0, True), (6.01, False)])  # +499%, +500% kept; +501% toxic
def test_an_up_jump_is_contamination_only_above_the_threshold(close, kept):
    res = run(bars([1.0] * 10 + [close] * 20), toxic_threshold=5.0)
    assert (len(res.bars) == 30) is kept
    assert (res.toxic_from is None) is kept
    if not kept:
        assert rules_fired(res) == ["contamination_unisolated"] and len(res.quarantine) == 20 and len(res.bars) == 10  # the clean past stays


@pytest.mark.parametrize("low, kept", [(1 / 5.99, True), (1 / 6.0, True), (1 / 6.01, False)])  # the mirror image of +499% / +501%
def test_a_down_jump_that_comes_back_is_contamination_only_beyond_the_threshold(low, kept):
    res = run(bars([1.0] * 10 + [low] * 3 + [1.0] * 5), toxic_threshold=5.0)
    assert res.toxic_from is None
    if kept:
        assert res.quarantine.empty and len(res.bars) == 18
    else:
        assert rules_fired(res) == ["contamination"] and len(res.quarantine) == 3 and len(res.bars) == 15


def test_a_genuine_450_percent_move_is_kept_with_the_default_threshold():
    res = run(bars([1.0] * 10 + [5.5] * 20))
    assert res.quarantine.empty and res.toxic_from is None


@pytest.mark.parametrize(
    "field, value, fixed",
    [("low", 5.0, False), ("low", 4.99, True), ("high", 30.0, False), ("high", 30.01, True)],  # body 10; factors 2 and 3
)
def test_the_wick_factor_boundaries(field, value, fixed):
    df = bars([10.0] * 3)
    df.loc[1, field] = value
    res = run(df)
    assert (rules_fired(res) == [f"bad_wick_{field}"]) is fixed
    assert res.bars.loc[1, field] == (10.0 if fixed else value)


@pytest.mark.parametrize("run_length, removed", [(2, False), (3, True)])  # stall_days 3
def test_the_stall_days_boundary(run_length, removed):
    df = bars([10.0] * 8)
    for i in range(2, 2 + run_length):
        df.loc[i, ["open", "high", "low", "close", "volume"]] = [10.0, 10.0, 10.0, 10.0, 0.0]
    res = run(df)
    assert (res.quarantine["rule"] == "zero_volume_stall").sum() == (run_length if removed else 0)
    assert len(res.bars) == 8 - (run_length if removed else 0)


@pytest.mark.parametrize("stretch, isolated", [(30, True), (31, False)])  # max_contamination_days 30
def test_the_max_contamination_days_boundary(stretch, isolated):
    res = run(bars([1.0] * 10 + [1000.0] * stretch + [1.0] * 5))
    if isolated:
        assert res.toxic_from is None and rules_fired(res) == ["contamination"]
        assert len(res.quarantine) == stretch and len(res.bars) == 15
    else:
        assert res.toxic_from is not None and rules_fired(res) == ["contamination_unisolated"]
        assert len(res.bars) == 10
