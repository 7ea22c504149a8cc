"""Atoms: long/short streams, the short clip, lagged trend/momentum positions, physical mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantlake.params_base import ParamsError
from quantlake.alpha.synthesis import Atom, AtomBank, SynthesisParams, synthesize
from quantlake.contracts import ContractError

ALL = SynthesisParams.from_params(
    {"logics": ["long", "short", "trend", "momentum"], "directions": ["long", "short"],
     "trend_lookback": 5, "momentum_lookback": 3}
)


def panel(seed: int = 0, n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2023-01-01", periods=n, freq="D", name="date")
    data = {
        "SIM:AAA": rng.normal(0.002, 0.04, n),
        "SIM:BBB": np.where(np.arange(n) < 20, np.nan, rng.normal(-0.002, 0.05, n)),  # listed on day 20
    }
    data["SIM:AAA"][[40, 41]] = np.nan  # two days without a bar
    return pd.DataFrame(data, index=dates)


def test_atom_ids_are_stable_and_validated():
    atom = Atom("BINANCE:BTCUSDT", "trend", "short")
    assert atom.id == "BINANCE:BTCUSDT|trend|short" and Atom.parse(atom.id) == atom
    with pytest.raises(ContractError, match="unknown logic"):
        Atom("SIM:AAA", "carry", "long")
    with pytest.raises(ContractError, match="logic 'short' has direction 'short'"):
        Atom("SIM:AAA", "short", "long")
    with pytest.raises(ContractError, match="expected SYMBOL\\|logic\\|direction"):
        Atom.parse("SIM:AAA|long")


def test_atoms_generated_in_a_deterministic_order():
    atoms = synthesize(panel(), ["SIM:BBB", "SIM:AAA"], ALL)
    assert atoms.ids[:6] == [
        "SIM:BBB|long|long", "SIM:BBB|short|short", "SIM:BBB|trend|long",
        "SIM:BBB|trend|short", "SIM:BBB|momentum|long", "SIM:BBB|momentum|short",
    ]
    assert len(atoms.ids) == 12 and atoms.symbols == ["SIM:BBB", "SIM:AAA"]
    assert list(atoms.returns.columns) == atoms.ids == list(atoms.positions.columns)


def test_long_is_the_symbol_and_short_is_minus_clipped_return():
    r = pd.DataFrame(
        {"SIM:AAA": [np.nan, 0.1, -0.5, 1.5, np.nan, 3.0, -0.99]},
        index=pd.date_range("2023-01-01", periods=7, freq="D", name="date"),
    )
    atoms = synthesize(r, ["SIM:AAA"], SynthesisParams.from_params({"logics": ["long", "short"]}))
    np.testing.assert_array_equal(atoms.returns["SIM:AAA|long|long"], r["SIM:AAA"])
    np.testing.assert_array_equal(
        atoms.returns["SIM:AAA|short|short"], [np.nan, -0.1, 0.5, -1.0, np.nan, -1.0, 0.99]
    )
    assert (atoms.returns["SIM:AAA|short|short"].dropna() >= -1.0).all()
    assert (atoms.positions["SIM:AAA|short|short"] == -1.0).all()


def test_positions_have_one_more_day_the_day_after_the_data():
    r = panel()
    atoms = synthesize(r, ["SIM:AAA"], ALL)
    assert atoms.returns.index.equals(r.index)
    assert len(atoms.positions) == len(r) + 1
    assert atoms.positions.index[-1] == r.index[-1] + pd.Timedelta(days=1)
    assert atoms.positions.isin([-1.0, 0.0, 1.0]).all().all()


def test_changing_a_days_return_does_not_change_that_days_position():
    r = panel(1)
    base = synthesize(r, ["SIM:AAA", "SIM:BBB"], ALL)
    for day in (30, 55, 79):
        shocked = r.copy()
        shocked.iloc[day] = [0.9, -0.6]
        other = synthesize(shocked, ["SIM:AAA", "SIM:BBB"], ALL)
        pd.testing.assert_frame_equal(other.positions.iloc[: day + 1], base.positions.iloc[: day + 1])
        assert not other.positions.iloc[day + 1 :].equals(base.positions.iloc[day + 1 :])  # it moves later


def test_each_position_is_what_the_data_up_to_the_previous_day_decides():
    r = panel(2)
    full = synthesize(r, ["SIM:AAA", "SIM:BBB"], ALL)
    for day in range(1, len(r)):
        truncated = synthesize(r.iloc[:day], ["SIM:AAA", "SIM:BBB"], ALL)
        # the extra last row of the truncated run is the position for `day`
        pd.testing.assert_series_equal(truncated.positions.iloc[-1], full.positions.iloc[day], check_names=False)


def test_trend_and_momentum_follow_the_price():
    dates = pd.date_range("2023-01-01", periods=30, freq="D", name="date")
    r = pd.DataFrame({"SIM:UP": np.r_[np.nan, np.full(14, 0.01), np.full(15, -0.01)]}, index=dates)
    atoms = synthesize(r, ["SIM:UP"], ALL)
    pos = atoms.positions
    # momentum (3 days) needs the index level 3 days back: level starts on day 1, decided on day 4, held day 5
    assert (pos["SIM:UP|momentum|long"].iloc[:5] == 0).all() and pos["SIM:UP|momentum|long"].iloc[5] == 1.0
    # trend (5-day average): first decided on day 5, held from day 6
    assert pos["SIM:UP|trend|long"].iloc[5] == 0.0 and pos["SIM:UP|trend|long"].iloc[6] == 1.0
    # prices fall from day 15: the close of day 16 is the first below its 5-day average
    # (0.9801 vs 0.9881 of day 14's level) and the first with a negative 3-day return
    # (1.01 * 0.99 * 0.99 < 1); both sides switch on day 17
    for logic in ("trend", "momentum"):
        assert (pos[f"SIM:UP|{logic}|short"].iloc[:17] == 0).all() and (pos[f"SIM:UP|{logic}|short"].iloc[17:] == -1).all()
        assert (pos[f"SIM:UP|{logic}|long"].iloc[6:17] == 1).all() and (pos[f"SIM:UP|{logic}|long"].iloc[17:] == 0).all()
    ret = atoms.returns["SIM:UP|trend|short"]
    np.testing.assert_allclose(ret.iloc[17:], 0.01)  # short while it falls 1 % a day
    np.testing.assert_allclose(ret.iloc[1:17], 0.0)


def test_out_of_the_market_atoms_earn_zero_but_keep_nan_on_missing_days():
    atoms = synthesize(panel(), ["SIM:AAA"], ALL)
    flat = atoms.positions["SIM:AAA|trend|short"].iloc[:-1] == 0
    ret = atoms.returns["SIM:AAA|trend|short"]
    assert (ret[flat & panel()["SIM:AAA"].notna()] == 0).all()
    assert ret.iloc[[40, 41]].isna().all()
    assert not np.signbit(atoms.returns.fillna(1.0).to_numpy()[atoms.returns.fillna(1.0).to_numpy() == 0]).any()


def test_to_physical_nets_long_and_short_atoms():
    atoms = synthesize(panel(), ["SIM:AAA", "SIM:BBB"], ALL)
    weights = pd.Series({"SIM:AAA|long|long": 0.5, "SIM:AAA|short|short": 0.2, "SIM:BBB|long|long": 0.3})
    day = atoms.positions.index[50]
    physical = atoms.to_physical(weights, day)
    assert list(physical.index) == ["SIM:AAA", "SIM:BBB"]
    assert physical["SIM:AAA"] == pytest.approx(0.3) and physical["SIM:BBB"] == pytest.approx(0.3)
    trend = pd.Series({"SIM:AAA|trend|long": 0.4, "SIM:AAA|trend|short": 0.6})
    expected = 0.4 * atoms.positions.at[day, "SIM:AAA|trend|long"] + 0.6 * atoms.positions.at[day, "SIM:AAA|trend|short"]
    assert atoms.to_physical(trend, day)["SIM:AAA"] == pytest.approx(expected)
    assert atoms.to_physical(trend, atoms.positions.index[-1]).index.tolist() == ["SIM:AAA", "SIM:BBB"]
    with pytest.raises(ContractError, match="not in this atom set"):
        atoms.to_physical(pd.Series({"SIM:CCC|long|long": 1.0}), day)
    with pytest.raises(ContractError, match="no atom positions for 2030-01-01"):
        atoms.to_physical(weights, "2030-01-01")


def test_params_validation():
    with pytest.raises(ParamsError, match=r"synthesis.lookback: unknown key"):
        SynthesisParams.from_params({"lookback": 3})
    with pytest.raises(ParamsError, match="synthesis.logics: unknown logic"):
        SynthesisParams.from_params({"logics": ["long", "pairs"]})
    with pytest.raises(ParamsError, match="synthesis.logics: expected a list"):
        SynthesisParams.from_params({"logics": "long"})
    with pytest.raises(ContractError, match="not columns of the returns matrix"):
        synthesize(panel(), ["SIM:ZZZ"], ALL)


def test_deterministic():
    a, b = synthesize(panel(3), ["SIM:AAA", "SIM:BBB"], ALL), synthesize(panel(3), ["SIM:AAA", "SIM:BBB"], ALL)
    pd.testing.assert_frame_equal(a.returns, b.returns)
    pd.testing.assert_frame_equal(a.positions, b.positions)


def test_the_atom_bank_reads_what_synthesize_gives_on_the_truncated_panel():
    """Synthesis is causal and per symbol: the bank's atoms at T are synthesize(returns[:T]), bit for bit."""
    r = panel(7, n=90)
    bank = AtomBank(r, ALL)
    for t in r.index[1:]:
        for symbols in (["SIM:AAA", "SIM:BBB"], ["SIM:BBB"], []):
            expected = synthesize(r.loc[:t], symbols, ALL)
            got = bank.atom_set(symbols, t)
            assert got.atoms == expected.atoms
            pd.testing.assert_frame_equal(got.returns, expected.returns, check_exact=True)
            pd.testing.assert_frame_equal(got.positions, expected.positions, check_exact=True)
    atoms, streams, positions = bank.arrays(["SIM:BBB", "SIM:AAA"], slice(30, 40))
    whole = synthesize(r, ["SIM:BBB", "SIM:AAA"], ALL)
    assert atoms == whole.atoms
    np.testing.assert_array_equal(streams, whole.returns.to_numpy()[30:40])
    np.testing.assert_array_equal(positions, whole.positions.to_numpy()[30:40])
    with pytest.raises(ContractError, match="2030-01-01 is not a day of the panel"):
        bank.atom_set(["SIM:AAA"], pd.Timestamp("2030-01-01"))
    with pytest.raises(ContractError, match="SIM:CCC"):
        bank.arrays(["SIM:CCC"])


def test_to_physical_sums_each_symbols_atoms_as_a_groupby_does():
    """Six atoms per symbol with uneven weights: the net exposure is pandas' (compensated) group sum, bit for bit."""
    r = panel(3, n=120)
    atoms = synthesize(r, ["SIM:AAA", "SIM:BBB"], ALL)
    rng = np.random.default_rng(11)
    weights = pd.Series(rng.dirichlet(np.full(len(atoms.ids), 0.3)) * 1e3 ** rng.uniform(-1, 1, len(atoms.ids)), index=atoms.ids)
    for day in atoms.positions.index[[60, 90, -1]]:
        exposure = weights.to_numpy() * atoms.positions.loc[day, atoms.ids].to_numpy()
        expected = pd.Series(exposure, index=atoms.ids).groupby(atoms.symbol_of.to_numpy(), sort=False).sum()
        got = atoms.to_physical(weights, day)
        np.testing.assert_array_equal(got.to_numpy(), (expected.reindex(atoms.symbols) + 0.0).to_numpy())
        assert got.index.tolist() == atoms.symbols and got.name == "weight"
