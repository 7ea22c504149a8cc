"""The Python API (`quantlake.open_lakehouse`) on small lakehouses built here, in both layouts.

Layouts (tests/lake_tools.py): `file` stores each table as one Parquet file (the seed's);
`dir` stores it as a directory of fragments under the same name (bars: one per year;
features: one per month), with a hidden temporary file and a `_` file beside the fragments
that a reader must skip.
The integration tests at the end run the real Data Cycle with git + dvc and read an older
version by its tag without a checkout, from the cache and from a remote.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from lake_tools import AS_OF, CERTIFIED, SPEC, build_lakehouse, make_bars, make_features

import quantlake
from quantlake.api import Lakehouse, LakehouseError, open_lakehouse
from quantlake.contracts import ContractError, SymbolId, date_to_ms

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["file", "dir"])
def repo(request, tmp_path) -> Path:
    build_lakehouse(tmp_path, request.param)
    return tmp_path


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# --------------------------------------------------------------------------- catalog and symbols


def test_open_reads_as_of_catalog_and_filters_symbols_by_status(repo):
    lh = quantlake.open_lakehouse(repo)
    assert lh.as_of == AS_OF
    assert set(lh.catalog["symbols"]) == set(SPEC)
    assert lh.symbols() == sorted(SPEC)
    assert lh.symbols("ok") == ["SIM:AAAUSDT"]
    assert lh.symbols(["degraded", "stale"]) == ["SIM:BBBUSDT", "SIM:CCCUSDT"]
    assert lh.symbols(status="toxic") == ["SIM:TOXUSDT"]
    assert "as_of 2026-01-20, 4 symbols" in repr(lh)
    with pytest.raises(LakehouseError, match=r"unknown status \['healthy'\]"):
        lh.symbols(["ok", "healthy"])


def test_a_missing_lakehouse_is_a_clear_error(tmp_path):
    with pytest.raises(LakehouseError, match=r"no catalog\.json at .*data/lakehouse/catalog\.json .*dvc pull"):
        open_lakehouse(tmp_path)


# --------------------------------------------------------------------------- bars


def test_bars_are_the_stored_ohlcv_indexed_by_utc_day(repo):
    lh = open_lakehouse(repo)
    for sym in CERTIFIED:
        bars = lh.bars(sym)
        src = make_bars(sym)
        assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
        assert all(bars[c].dtype == np.float64 for c in bars.columns)
        assert bars.index.name == "date" and bars.index.dtype == "datetime64[ns]" and bars.index.tz is None
        assert bars.index.is_monotonic_increasing
        assert list(bars.index) == list(pd.to_datetime(src["timestamp"], unit="ms"))
        np.testing.assert_array_equal(bars.to_numpy(), src.drop(columns="timestamp").to_numpy())


def test_bars_start_and_end_are_inclusive_utc_days(repo):
    bars = open_lakehouse(repo).bars("SIM:AAAUSDT", start="2025-12-31", end=dt.date(2026, 1, 2))
    assert list(bars.index) == [day("2025-12-31"), day("2026-01-01"), day("2026-01-02")]
    with pytest.raises(LakehouseError, match="before start"):
        open_lakehouse(repo).bars("SIM:AAAUSDT", start="2026-01-02", end="2026-01-01")


def test_bars_of_a_toxic_unknown_or_malformed_symbol_are_clear_errors(repo):
    lh = open_lakehouse(repo)
    with pytest.raises(LakehouseError, match=r"SIM:TOXUSDT is toxic .*no bars .*contamination_unisolated"):
        lh.bars("SIM:TOXUSDT")
    with pytest.raises(LakehouseError, match=r"SIM:ZZZUSDT is not in the catalog .*as_of 2026-01-20"):
        lh.bars("SIM:ZZZUSDT")
    with pytest.raises(ContractError, match=r"invalid symbol id 'btc/usdt'"):
        lh.bars("btc/usdt")


def test_a_missing_bar_file_names_the_symbol_and_the_path(repo):
    lake = repo / "data" / "lakehouse"
    target = lake / SymbolId.parse("SIM:CCCUSDT").filename
    os.rename(target, lake / "moved")
    with pytest.raises(LakehouseError, match=r"bars of SIM:CCCUSDT is missing .*SIM_CCCUSDT_1d\.parquet"):
        open_lakehouse(repo).bars("SIM:CCCUSDT")


def test_fragments_of_a_directory_are_read_whatever_their_names_order(tmp_path):
    """A fragment holding older days that sorts after a newer one still gives sorted bars."""
    build_lakehouse(tmp_path, "dir")
    folder = tmp_path / "data" / "lakehouse" / "SIM_AAAUSDT_1d.parquet"
    os.rename(folder / "2025.parquet", folder / "zz-old.parquet")
    bars = open_lakehouse(tmp_path).bars("SIM:AAAUSDT")
    assert bars.index.is_monotonic_increasing and len(bars) == len(make_bars("SIM:AAAUSDT"))


def test_row_groups_outside_the_days_asked_are_skipped_on_both_sides_of_each_boundary(tmp_path):
    from quantlake.api import _row_groups

    bars = make_bars("SIM:AAAUSDT")  # 51 days from 2025-12-01
    path = tmp_path / "bars.parquet"
    pq.write_table(pa.Table.from_pandas(bars, preserve_index=False), path, row_group_size=10)
    meta = pq.ParquetFile(path).metadata
    ts = bars["timestamp"].to_numpy()
    assert _row_groups(meta, (None, None)) == [0, 1, 2, 3, 4, 5]
    assert _row_groups(meta, (int(ts[9]), None)) == [0, 1, 2, 3, 4, 5]  # lo at group 0's last day
    assert _row_groups(meta, (int(ts[9]) + 1, None)) == [1, 2, 3, 4, 5]  # lo just after it
    assert _row_groups(meta, (None, int(ts[10]))) == [0]  # hi (exclusive) at group 1's first day
    assert _row_groups(meta, (None, int(ts[10]) + 1)) == [0, 1]
    assert _row_groups(meta, (int(ts[50]) + 1, None)) == []


def test_bars_between_two_days_from_many_row_groups_are_exact(tmp_path):
    lake = build_lakehouse(tmp_path, "file")
    src = make_bars("SIM:AAAUSDT")
    pq.write_table(pa.Table.from_pandas(src, preserve_index=False), lake / "SIM_AAAUSDT_1d.parquet", row_group_size=7)
    lh = open_lakehouse(tmp_path)
    index = pd.to_datetime(src["timestamp"], unit="ms")
    for start, end in [("2025-12-07", "2025-12-08"), ("2025-12-01", "2026-01-20"), ("2025-11-01", "2025-12-03"), ("2026-01-20", None), (None, "2025-11-30")]:
        got = lh.bars("SIM:AAAUSDT", start=start, end=end)
        keep = (index >= (start or "1970-01-01")) & (index <= (end or "2100-01-01"))
        assert list(got.index) == list(index[keep]), (start, end)
        np.testing.assert_array_equal(got["close"].to_numpy(), src.loc[keep.to_numpy(), "close"].to_numpy())


def test_a_day_stored_in_two_fragments_is_an_error_naming_it(tmp_path):
    lake = build_lakehouse(tmp_path, "dir")
    folder = lake / "SIM_AAAUSDT_1d.parquet"
    again = make_bars("SIM:AAAUSDT").iloc[[40]]  # 2026-01-10, already in 2026.parquet
    pq.write_table(pa.Table.from_pandas(again, preserve_index=False), folder / "extra.parquet")
    lh = open_lakehouse(tmp_path)
    with pytest.raises(LakehouseError, match=r"bars of SIM:AAAUSDT: day 2026-01-10 is stored twice in .*SIM_AAAUSDT_1d\.parquet"):
        lh.bars("SIM:AAAUSDT")
    assert len(lh.bars("SIM:AAAUSDT", end="2026-01-09")) == 40  # the days before it still read


# --------------------------------------------------------------------------- closes


def expected_closes(symbols) -> pd.DataFrame:
    """An independent construction: outer join of each symbol's close series."""
    series = {s: make_bars(s).set_index(pd.to_datetime(make_bars(s)["timestamp"], unit="ms"))["close"] for s in symbols}
    frame = pd.concat(series, axis=1, sort=True)
    frame.index = frame.index.as_unit("ns").rename("date")
    return frame


def test_closes_default_to_the_certified_symbols_with_nan_where_a_symbol_did_not_trade(repo):
    closes = open_lakehouse(repo).closes()
    assert list(closes.columns) == CERTIFIED  # never the toxic one
    pd.testing.assert_frame_equal(closes, expected_closes(CERTIFIED), check_freq=False, check_column_type=False)
    assert np.isnan(closes.loc[day("2026-01-03"), "SIM:BBBUSDT"])  # the missing day
    assert closes.loc[day("2026-01-02"), "SIM:BBBUSDT"] > 0
    assert closes.loc[day("2026-01-11"):, "SIM:CCCUSDT"].isna().all()  # after its last bar
    assert closes.loc[:day("2025-12-19"), "SIM:BBBUSDT"].isna().all()  # before its first bar
    assert closes.index[0] == day("2025-11-25") and closes.index[-1] == day("2026-01-20")


def test_closes_of_chosen_symbols_between_two_days(repo):
    closes = open_lakehouse(repo).closes(["SIM:CCCUSDT", "SIM:AAAUSDT"], start="2026-01-09", end="2026-01-12")
    assert list(closes.columns) == ["SIM:AAAUSDT", "SIM:CCCUSDT"]
    assert list(closes.index) == [day(f"2026-01-{d:02d}") for d in (9, 10, 11, 12)]
    pd.testing.assert_frame_equal(
        closes, expected_closes(["SIM:AAAUSDT", "SIM:CCCUSDT"]).loc["2026-01-09":"2026-01-12"], check_freq=False, check_column_type=False
    )
    with pytest.raises(LakehouseError, match="SIM:TOXUSDT is toxic"):
        open_lakehouse(repo).closes(["SIM:AAAUSDT", "SIM:TOXUSDT"])


def test_both_layouts_read_identically(tmp_path):
    a, b = build_lakehouse(tmp_path / "a", "file"), build_lakehouse(tmp_path / "b", "dir")
    assert (a / "SIM_AAAUSDT_1d.parquet").is_file() and (b / "SIM_AAAUSDT_1d.parquet").is_dir()
    la, lb = open_lakehouse(tmp_path / "a"), open_lakehouse(tmp_path / "b")
    pd.testing.assert_frame_equal(la.closes(), lb.closes())
    pd.testing.assert_frame_equal(la.bars("SIM:BBBUSDT"), lb.bars("SIM:BBBUSDT"))
    pd.testing.assert_frame_equal(la.features(), lb.features())


# --------------------------------------------------------------------------- features


def test_features_read_the_columns_symbols_and_days_asked(repo):
    lh = open_lakehouse(repo)
    full = lh.features()
    assert list(full.columns) == ["recommend_all", "recommend_ma", "rsi_14"]
    assert full.index.names == ["date", "symbol"] and full.index.is_monotonic_increasing
    assert len(full) == sum(len(make_bars(s)) for s in CERTIFIED)

    part = lh.features(["recommend_all"], symbols="SIM:BBBUSDT", start="2026-01-01", end="2026-01-05")
    assert list(part.columns) == ["recommend_all"]
    assert set(part.index.get_level_values("symbol")) == {"SIM:BBBUSDT"}
    assert list(part.index.get_level_values("date")) == [day(f"2026-01-{d:02d}") for d in (1, 2, 4, 5)]
    pd.testing.assert_frame_equal(part, full.loc[part.index, ["recommend_all"]])
    wide = lh.features("recommend_all", start="2026-01-19")["recommend_all"].unstack("symbol")
    assert list(wide.columns) == ["SIM:AAAUSDT", "SIM:BBBUSDT"] and len(wide) == 2  # CCC stopped on 2026-01-10

    with pytest.raises(LakehouseError, match=r"feature column\(s\) \['rsi'\] not in tv_technicals_1d\.parquet \(available: recommend_all, recommend_ma, rsi_14\)"):
        lh.features(["rsi"])


class CountingFS(LocalFileSystem):
    """A local fsspec filesystem that counts the bytes a reader asks for."""

    cachable = False

    def __init__(self):
        super().__init__()
        self.bytes_read = 0

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode, **kwargs)
        inner = f.read

        def read(*args):
            data = inner(*args)
            self.bytes_read += len(data)
            return data

        f.read = read
        return f


def test_features_read_only_the_projected_columns_and_the_row_groups_of_the_days_asked(tmp_path):
    lake = tmp_path / "data" / "lakehouse"
    build_lakehouse(tmp_path, "dir")
    # A wide table: a large column nobody asks for, one fragment per month, several row groups
    # per fragment. Fragments are large next to the 64 KiB pyarrow reads to find a footer.
    frame = make_features(CERTIFIED)
    frame = pd.concat([frame.assign(symbol=frame["symbol"] + str(i)) for i in range(1500)], ignore_index=True)
    frame = frame.sort_values(["timestamp", "symbol"], kind="stable")
    frame["wide"] = np.random.default_rng(0).standard_normal(len(frame))
    folder = lake / "features" / "tv_technicals_1d.parquet"
    for p in folder.iterdir():
        p.unlink()
    keys = pd.to_datetime(frame["timestamp"], unit="ms").dt.strftime("%Y-%m")
    for key in sorted(keys.unique()):
        pq.write_table(pa.Table.from_pandas(frame[keys == key], preserve_index=False), folder / f"{key}.parquet", row_group_size=15000)

    def read(**kwargs) -> tuple[pd.DataFrame, int]:
        fs = CountingFS()
        out = Lakehouse(str(lake), filesystem=fs).features(**kwargs)
        return out, fs.bytes_read

    everything, n_all = read()
    stored = sum(p.stat().st_size for p in folder.iterdir())
    assert n_all >= 0.9 * stored  # the counter sees the reads
    one_col, n_col = read(columns=["recommend_all"])
    assert list(one_col.columns) == ["recommend_all"] and len(one_col) == len(everything)
    one_month, n_month = read(columns=["recommend_all"], start="2026-01-15", end="2026-01-20")
    assert set(one_month.index.get_level_values("date").month) == {1}
    assert n_col < 0.5 * n_all, (n_col, n_all)
    assert n_month < 0.5 * n_col, (n_month, n_col)


# --------------------------------------------------------------------------- universe


def test_universe_reads_membership_intervals_with_both_ends_included(tmp_path):
    universe = pd.DataFrame(
        {
            "symbol": ["SIM:AAAUSDT", "SIM:BBBUSDT", "SIM:CCCUSDT", "SIM:AAAUSDT"],
            "scanner": ["usdt_liquid", "usdt_liquid", "usdt_inactive", "usdt_liquid"],
            "start": ["2025-12-01", "2026-01-05", "2025-11-25", "2026-01-15"],
            "end": ["2026-01-09", None, "2026-01-10", None],
        }
    )
    build_lakehouse(tmp_path, "file", universe=universe)
    lh = open_lakehouse(tmp_path)
    assert lh.universe("2025-11-24") == []
    assert lh.universe("2026-01-04") == ["SIM:AAAUSDT", "SIM:CCCUSDT"]
    assert lh.universe(dt.date(2026, 1, 5)) == ["SIM:AAAUSDT", "SIM:BBBUSDT", "SIM:CCCUSDT"]
    assert lh.universe("2026-01-09") == ["SIM:AAAUSDT", "SIM:BBBUSDT", "SIM:CCCUSDT"]
    assert lh.universe("2026-01-10") == ["SIM:BBBUSDT", "SIM:CCCUSDT"]  # AAA left after the 9th
    assert lh.universe("2026-01-11") == ["SIM:BBBUSDT"]
    assert lh.universe("2026-01-15") == ["SIM:AAAUSDT", "SIM:BBBUSDT"]  # AAA is back, open-ended
    assert lh.universe("2026-01-10", scanner="usdt_inactive") == ["SIM:CCCUSDT"]
    assert lh.universe("2026-01-10", scanner=["usdt_inactive", "usdt_liquid"]) == ["SIM:BBBUSDT", "SIM:CCCUSDT"]
    assert lh.universe("2026-01-10", scanner="nope") == []


def test_universe_accepts_typed_dates_ms_and_daily_rows(tmp_path):
    ms = pd.DataFrame({"symbol": ["SIM:AAAUSDT"], "scanner": ["s"], "from": [date_to_ms(dt.date(2026, 1, 2))], "to": [date_to_ms(dt.date(2026, 1, 3))]})
    build_lakehouse(tmp_path / "ms", "file", universe=ms)
    assert [open_lakehouse(tmp_path / "ms").universe(f"2026-01-0{d}") for d in (1, 2, 3, 4)] == [[], ["SIM:AAAUSDT"], ["SIM:AAAUSDT"], []]
    typed = pd.DataFrame({"symbol": ["SIM:AAAUSDT"], "scanner": ["s"], "start": [dt.date(2026, 1, 2)], "end": [pd.NaT]})
    build_lakehouse(tmp_path / "typed", "file", universe=typed)
    assert open_lakehouse(tmp_path / "typed").universe("2026-01-01") == []
    assert open_lakehouse(tmp_path / "typed").universe("2030-01-01") == ["SIM:AAAUSDT"]
    daily = pd.DataFrame({"date": ["2026-01-02", "2026-01-02", "2026-01-03"], "symbol": ["SIM:BBBUSDT", "SIM:AAAUSDT", "SIM:AAAUSDT"]})
    build_lakehouse(tmp_path / "daily", "file", universe=daily)
    assert open_lakehouse(tmp_path / "daily").universe("2026-01-02") == ["SIM:AAAUSDT", "SIM:BBBUSDT"]


def test_universe_without_the_file_or_with_unknown_columns_is_a_clear_error(tmp_path):
    build_lakehouse(tmp_path / "none", "file")
    with pytest.raises(LakehouseError, match=r"the point-in-time universe is missing \(.*universe\.parquet\)"):
        open_lakehouse(tmp_path / "none").universe("2026-01-01")
    build_lakehouse(tmp_path / "bad", "file", universe=pd.DataFrame({"symbol": ["SIM:AAAUSDT"], "since": ["2026-01-01"]}))
    with pytest.raises(LakehouseError, match=r"columns \['since', 'symbol'\]; expected symbol, start, end"):
        open_lakehouse(tmp_path / "bad").universe("2026-01-01")


def test_on_a_sim_data_cycle_the_api_reads_what_the_gate_published(sim_lakehouse):
    """Against the real Data Cycle's output (conftest's sim run): every certified file and the feature table."""
    from quantlake.storage import read_ohlcv as read_bars

    lake = sim_lakehouse / "lakehouse"
    with Lakehouse(str(lake)) as lh:
        certified = json.loads((lake / "certified.json").read_text())["symbols"]
        closes = lh.closes()
        assert list(closes.columns) == sorted(certified) and len(certified) >= 10
        for sym in certified:
            stored = read_bars(lake / SymbolId.parse(sym).filename)
            np.testing.assert_array_equal(closes[sym].dropna().to_numpy(), stored["close"].to_numpy())
            assert list(closes[sym].dropna().index) == list(pd.to_datetime(stored["timestamp"], unit="ms"))
        table = pd.read_parquet(lake / "features" / "tv_technicals_1d.parquet")
        got = lh.features(["recommend_all", "recommend_ma"])
        assert len(got) == len(table)
        want = table.assign(date=pd.to_datetime(table["timestamp"], unit="ms")).set_index(["date", "symbol"]).sort_index()
        pd.testing.assert_frame_equal(got, want[["recommend_all", "recommend_ma"]], check_index_type=False)
        assert set(lh.symbols()) >= set(certified) and lh.as_of == dt.date(2026, 11, 20)


# --------------------------------------------------------------------------- import cost


def test_importing_quantlake_and_its_api_loads_no_heavy_dependency():
    code = (
        "import sys, quantlake\n"
        "light = [m for m in ('pandas', 'pyarrow') if m in sys.modules]\n"
        "quantlake.open_lakehouse\n"
        "from quantlake import Lakehouse\n"
        "heavy = [m for m in ('sklearn', 'scipy', 'matplotlib', 'dvc') if m in sys.modules]\n"
        "print(light, heavy, 'pandas' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[] [] True"
    with pytest.raises(AttributeError, match="no attribute 'open_lakehose'"):
        quantlake.open_lakehose  # noqa: B018


# --------------------------------------------------------------------------- integration: real git + dvc

FIRST, SECOND = "2026-11-20", "2026-11-21"
TAG = f"lakehouse/{FIRST}"


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """A repository with two lakehouse versions (the Data Cycle on the sim): FIRST tagged, SECOND at HEAD.

    Both were pushed to the project's default remote (`../../quantlake-storage` from `.dvc/`).
    Returns (repo, env, the first version's closes and catalog read from its work tree).
    """
    from repo_tools import dvc, git, make_project, quantlake as ql

    base = tmp_path_factory.mktemp("api")
    repo, env = make_project(base / "repo", start="2025-09-01", limit=8)
    dvc(["repro", "audit"], repo, env)
    git(["add", "-A"], repo, env)
    git(["commit", "-qm", f"lakehouse {FIRST}"], repo, env)
    git(["tag", "-a", TAG, "-m", TAG], repo, env)
    dvc(["push", "-q"], repo, env)
    first = open_lakehouse(repo)
    assert first.as_of == dt.date.fromisoformat(FIRST)
    first_closes, first_catalog = first.closes(), first.catalog
    ql(["advance", "--as-of", SECOND, "--no-repro"], repo, env)
    dvc(["repro", "audit"], repo, env)
    git(["add", "-A"], repo, env)
    git(["commit", "-qm", f"lakehouse {SECOND}"], repo, env)
    dvc(["push", "-q"], repo, env)
    return repo, env, first_closes, first_catalog


def _worktree_state(repo: Path, env: dict) -> tuple[str, dict]:
    from repo_tools import git, lake_files

    return git(["status", "--porcelain"], repo, env).stdout, lake_files(repo / "data" / "lakehouse")


@pytest.mark.integration
def test_a_tagged_version_reads_its_own_closes_without_a_checkout(versions):
    repo, env, first_closes, first_catalog = versions
    before = _worktree_state(repo, env)
    assert before[0] == ""

    with open_lakehouse(repo, rev=TAG) as old:
        assert old.as_of == dt.date.fromisoformat(FIRST) and old.catalog == first_catalog
        closes = old.closes()
        pd.testing.assert_frame_equal(closes, first_closes)
        assert closes.index[-1] == day(FIRST) and closes.shape[1] >= 5
        sym = "SIM:BTCUSDT"
        pd.testing.assert_series_equal(old.bars(sym)["close"], first_closes[sym].dropna(), check_names=False)
        ratings = old.features(["recommend_all"], symbols=[sym], start="2026-11-01")
        assert ratings.index.get_level_values("date")[-1] == day(FIRST) and len(ratings) == 20
    old.close()  # idempotent

    now = open_lakehouse(repo)
    assert now.as_of == dt.date.fromisoformat(SECOND) and now.closes().index[-1] == day(SECOND)
    head = open_lakehouse(repo, rev="HEAD").closes()
    certified = json.loads((repo / "data" / "lakehouse" / "certified.json").read_text())["symbols"]
    assert list(head.columns) == sorted(certified)  # HEAD's closes are the certified universe
    pd.testing.assert_frame_equal(head, now.closes())
    assert _worktree_state(repo, env) == before  # nothing was checked out or written

    with pytest.raises(LakehouseError, match=r"cannot open revision 'no-such-tag'"):
        open_lakehouse(repo, rev="no-such-tag")
    with pytest.raises(LakehouseError, match=r"repo@HEAD~2: no catalog\.json at /data/lakehouse/catalog\.json \(a revision before the first"):
        open_lakehouse(repo, rev="HEAD~2")  # the project's first commit, before any repro


@pytest.mark.integration
def test_a_fresh_clone_reads_a_version_from_the_remote_without_a_pull(versions):
    from repo_tools import git

    repo, env, first_closes, _ = versions
    clone = repo.parent / "clone"  # beside the repo: the default remote resolves to the same folder
    git(["clone", "-q", str(repo), str(clone)], repo.parent, env)
    assert not (clone / ".dvc" / "cache").exists()
    with pytest.raises(LakehouseError, match=r"no catalog\.json .*dvc pull"):
        open_lakehouse(clone)
    pd.testing.assert_frame_equal(open_lakehouse(clone, rev=TAG).closes(), first_closes)
    assert not (clone / "data" / "lakehouse").exists()


@pytest.mark.integration
def test_quantlake_show_lists_a_revision(versions):
    from repo_tools import quantlake as ql

    repo, env, _, first_catalog = versions
    out = ql(["show", "--rev", TAG], repo, env).stdout
    lines = out.strip().split("\n")
    assert lines[-1].startswith(f"lakehouse {TAG}: as_of {FIRST}, {len(first_catalog['symbols'])} of ")
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert list(rows) == sorted(first_catalog["symbols"])
    for sym, e in first_catalog["symbols"].items():
        assert rows[sym][1:6] == [e["status"], e["start_date"], e["end_date"], str(e["rows"]), str(e["quarantined"])]
    assert f"as_of {SECOND}" in ql(["show"], repo, env).stdout


def documented_example() -> str:
    text = (ROOT / "docs" / "python_api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/python_api.md must hold exactly one python example"
    return blocks[0]


@pytest.mark.integration
def test_the_documented_example_runs(versions):
    from repo_tools import run

    repo, env, _, _ = versions
    proc = run([sys.executable, "-c", documented_example()], repo, {**env, "PYTHONPATH": str(ROOT / "src")})
    last = proc.stdout.strip().split("\n")[-1]
    assert last == f"{FIRST} {FIRST}", proc.stdout
    assert f"as_of {SECOND}" in proc.stdout
