"""The snapshot is point-in-time too (issue 11, item 4): its manifest covers every file it holds
(bars, features, universe) and every alpha stage verifies what it reads against it.
Snapshot.features(): projection and filters (after the check), on a single file and on a
directory dataset."""

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quantlake.alpha import stages
from quantlake.alpha.snapshot import FEATURES_FILE, PARTS, Snapshot, SnapshotError, hash_part, load_snapshot, take_snapshot
from quantlake.data.discovery import ScannerConfig
from quantlake.data.universe import UniverseSpec, read_universe, universe_to_parquet_bytes
from quantlake.params import load_params
from quantlake.storage import atomic_write_json, read_json, sha256_file

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 20)
PARAMS = load_params(ROOT / "params.yaml")
FEATURES = "features/tv_technicals_1d.parquet"


@pytest.fixture(scope="module")
def built(sim_lakehouse, tmp_path_factory):
    """A snapshot of the sim lakehouse and the returns stage's outputs (not to be modified)."""
    root = tmp_path_factory.mktemp("snap")
    shutil.copytree(sim_lakehouse / "lakehouse", root / "lakehouse")
    take_snapshot(root / "lakehouse", root / "snapshot", AS_OF)
    stages.run_returns(root / "snapshot", root / "alpha", PARAMS)
    return root


@pytest.fixture
def work(built, tmp_path):
    """A private copy (real copies, not links) of the snapshot and the alpha folder."""
    for name in ("lakehouse", "snapshot", "alpha"):
        shutil.copytree(built / name, tmp_path / name)
    return tmp_path


def rewrite(path: Path, frame: pd.DataFrame) -> None:
    """Replace a snapshot file behind the pipeline's back (a new inode, as an editor would)."""
    path.unlink()
    frame.to_parquet(path, index=False)


def rewrite_table(path: Path, change) -> None:
    """Rewrite every fragment of a table (a directory of fragments, or one file) with `change(frame)`."""
    for fragment in sorted(path.glob("*.parquet")) if path.is_dir() else [path]:
        rewrite(fragment, change(pd.read_parquet(fragment)))


def first_fragment(path: Path) -> Path:
    return sorted(path.glob("*.parquet"))[0]


def test_the_manifest_lists_every_file_with_its_sha256_and_the_id_covers_them(work):
    snap = load_snapshot(work / "snapshot")
    content = snap.manifest["content"]
    bars = {f"bars/{n}/{k}.parquet" for n, e in snap.manifest["files"].items() for k in e["fragments"]}
    features = {f"{FEATURES}/{k}.parquet" for k in snap.manifest["features"]["fragments"]}
    assert len(features) > 1 and set(content) == bars | features | {"universe.parquet"}
    for rel, sha in content.items():
        assert sha256_file(work / "snapshot" / rel) == sha
    assert snap.manifest["universe"]["intervals"] == len(read_universe(work / "snapshot/universe.parquet")) > 0
    # a lakehouse that differs only in its universe (or only in its features) gives another id
    def features(frame):
        frame.loc[0, "recommend_all"] = 0.123
        return frame

    universe = read_universe(work / "lakehouse/universe.parquet")
    universe.loc[0, "end"] -= pd.Timedelta(days=1)
    spec = UniverseSpec(tuple(ScannerConfig(**s) for s in universe.attrs["scanners"]))
    for rel, write in (
        (FEATURES, lambda path: rewrite(path, features(pd.read_parquet(path)))),
        ("universe.parquet", lambda path: (path.unlink(), path.write_bytes(universe_to_parquet_bytes(universe, spec, AS_OF)))),
    ):
        other = work / f"lake_{rel.replace('/', '_')}"
        shutil.copytree(work / "lakehouse", other)
        write(first_fragment(other / rel) if (other / rel).is_dir() else other / rel)
        again = take_snapshot(other, work / f"snap_{rel.replace('/', '_')}", AS_OF)
        assert again.snapshot_id != snap.snapshot_id, rel


def test_a_tampered_feature_table_is_refused_by_every_stage_that_reads_it(work):
    snap_dir, alpha = work / "snapshot", work / "alpha"
    stages.run_select(alpha, snap_dir, PARAMS)
    honest = read_json(alpha / "selection.json")["selected"]
    # the tampering of the issue: ratings pushed up for symbols that were not selected
    def forged(frame):
        frame.loc[~frame["symbol"].isin(honest), "recommend_all"] = 1.0
        frame.loc[frame["symbol"].isin(honest), "recommend_all"] = -1.0
        return frame

    # it matters: a snapshot made honestly from forged ratings selects other symbols
    shutil.copytree(work / "lakehouse", work / "forged_lake")
    rewrite_table(work / "forged_lake" / FEATURES, forged)
    take_snapshot(work / "forged_lake", work / "forged_snap", AS_OF)
    stages.run_returns(work / "forged_snap", work / "forged_alpha", PARAMS)
    assert stages.run_select(work / "forged_alpha", work / "forged_snap", PARAMS)["selected"] != honest
    rewrite_table(snap_dir / FEATURES, forged)
    for run in (
        lambda: stages.run_select(alpha, snap_dir, PARAMS),
        lambda: stages.run_backtest(alpha, snap_dir, work / "backtest", PARAMS),
    ):
        with pytest.raises(SnapshotError, match=r"features/tv_technicals_1d\.parquet/\d{4}-\d\d\.parquet: sha256 differs"):
            run()
    assert read_json(alpha / "selection.json")["selected"] == honest  # nothing was overwritten
    with pytest.raises(SnapshotError, match="tv_technicals_1d.parquet"):
        load_snapshot(snap_dir)  # the full check (used by `quantlake reproduce`) sees it too


def test_a_tampered_universe_is_refused(work):
    snap_dir = work / "snapshot"
    u = pd.read_parquet(snap_dir / "universe.parquet")
    rewrite(snap_dir / "universe.parquet", u.iloc[1:])
    with pytest.raises(SnapshotError, match="universe.parquet: sha256 differs"):
        stages.run_select(work / "alpha", snap_dir, PARAMS)
    with pytest.raises(SnapshotError, match="universe.parquet"):
        stages.run_backtest(work / "alpha", snap_dir, work / "backtest", PARAMS)


def test_tampered_bars_are_refused_by_the_returns_stage(work):
    target = first_fragment(work / "snapshot/bars/SIM_BTCUSDT_1d.parquet")
    bars = pd.read_parquet(target)
    bars.loc[10, "close"] *= 1.01
    rewrite(target, bars)
    with pytest.raises(SnapshotError, match=f"bars/SIM_BTCUSDT_1d.parquet/{target.name}: sha256 differs"):
        stages.run_returns(work / "snapshot", work / "alpha2", PARAMS)
    assert not (work / "alpha2").exists()


def test_missing_and_extra_files_and_a_forged_manifest_are_named(work):
    snap_dir = work / "snapshot"
    (snap_dir / "universe.parquet").unlink()
    (snap_dir / "bars" / "SIM_EXTRAUSDT_1d.parquet").write_bytes(b"x")
    with pytest.raises(SnapshotError) as err:
        load_snapshot(snap_dir)
    assert "bars/SIM_EXTRAUSDT_1d.parquet: not in the manifest" in str(err.value)  # the first part that fails
    with pytest.raises(SnapshotError, match="SIM_EXTRAUSDT_1d.parquet: not in the manifest"):
        load_snapshot(snap_dir, verify=("bars",))
    with pytest.raises(SnapshotError, match="universe.parquet: missing"):
        load_snapshot(snap_dir, verify=("universe",))
    # changing a hash in the manifest to match a forged file breaks the snapshot_id
    manifest = read_json(snap_dir / "manifest.json")
    manifest["content"][FEATURES] = "0" * 64
    atomic_write_json(snap_dir / "manifest.json", manifest)
    with pytest.raises(SnapshotError, match="snapshot_id does not match its content"):
        load_snapshot(snap_dir, verify=())


def test_stage_outputs_from_another_snapshot_are_refused(work, tmp_path):
    other = tmp_path / "other_lake"
    shutil.copytree(work / "lakehouse", other)
    cert = read_json(other / "certified.json")
    del cert["symbols"]["SIM:BTCUSDT"]
    atomic_write_json(other / "certified.json", cert)
    take_snapshot(other, tmp_path / "other_snap", AS_OF)
    with pytest.raises(SnapshotError, match="returns_matrix.parquet was made from snapshot"):
        stages.run_select(work / "alpha", tmp_path / "other_snap", PARAMS)


def test_parts_stored_as_directories_of_fragments_are_hashed_per_file(work, tmp_path):
    """The lakehouse layout may store a table as a directory of fragments: it just works."""
    lake = tmp_path / "lake"
    shutil.copytree(work / "lakehouse", lake)
    table = pq.read_table(lake / FEATURES).to_pandas()
    shutil.rmtree(lake / FEATURES)  # the gate's month fragments, re-cut another way
    (lake / FEATURES).mkdir()
    months = pd.to_datetime(table["timestamp"], unit="ms").dt.strftime("%Y-%m")
    for month in ("2025-01", "2025-02"):
        table[months == month].to_parquet(lake / FEATURES / f"{month}.parquet", index=False)
    table[~months.isin(["2025-01", "2025-02"])].to_parquet(lake / FEATURES / "rest.parquet", index=False)
    snap = take_snapshot(lake, tmp_path / "snap", AS_OF)
    frags = sorted(f for f in snap.manifest["content"] if f.startswith(FEATURES + "/"))
    assert frags == [f"{FEATURES}/2025-01.parquet", f"{FEATURES}/2025-02.parquet", f"{FEATURES}/rest.parquet"]
    assert snap.manifest["features"]["rows"] == len(table)
    assert len(load_snapshot(tmp_path / "snap").features()) == len(table)
    one = tmp_path / "snap" / FEATURES / "2025-02.parquet"
    part = pd.read_parquet(one)
    part.loc[0, "recommend_all"] = 0.5
    rewrite(one, part)
    with pytest.raises(SnapshotError, match="2025-02.parquet: sha256 differs"):
        load_snapshot(tmp_path / "snap", verify=()).features()
    assert PARTS["features"] == FEATURES


# --------------------------------------------------------------------------- features(columns, symbols, start, end)

DAY_MS = 86_400_000


def feature_table() -> pd.DataFrame:
    days = pd.date_range("2024-01-30", "2024-03-02", freq="D")
    symbols = ["SIM:AUSDT", "SIM:BUSDT", "SIM:CUSDT"]
    rows = [(d.value // 1_000_000, s) for d in days for s in symbols]
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "timestamp": np.array([r[0] for r in rows], dtype="int64"),
        "symbol": [r[1] for r in rows],
        "recommend_all": rng.normal(size=len(rows)),
        "recommend_ma": rng.normal(size=len(rows)),
        "rsi": rng.normal(size=len(rows)),
    })


def features_snapshot(root: Path, rows: int) -> Snapshot:
    """A Snapshot of the feature part under `root`, its manifest listing the part's files as
    `take_snapshot` writes them (`features` entry and `content` hashes)."""
    content = hash_part(root, PARTS["features"])
    manifest = {"snapshot_id": "x", "as_of": "2024-03-02", "files": {},
                "features": {"file": PARTS["features"], "rows": rows}, "content": content}
    return Snapshot(root, manifest)


@pytest.fixture(params=["file", "fragments"])
def snap(request, tmp_path) -> Snapshot:
    table = feature_table()
    path = tmp_path / "features" / FEATURES_FILE
    if request.param == "file":
        path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    else:  # one fragment per month, as the lakehouse's directory dataset
        path.mkdir(parents=True)
        month = pd.to_datetime(table["timestamp"], unit="ms").dt.strftime("%Y-%m")
        for m, part in table.groupby(month):
            pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False), path / f"{m}.parquet")
    return features_snapshot(tmp_path, len(table))


def test_whole_table_by_default(snap):
    pd.testing.assert_frame_equal(snap.features(), feature_table())


def test_columns_symbols_and_days(snap):
    got = snap.features(columns=["timestamp", "symbol", "recommend_all"], symbols={"SIM:CUSDT", "SIM:AUSDT"},
                        start=dt.date(2024, 2, 1), end="2024-02-29")
    t = feature_table()
    day = pd.to_datetime(t["timestamp"], unit="ms")
    keep = t["symbol"].isin(["SIM:AUSDT", "SIM:CUSDT"]) & (day >= "2024-02-01") & (day <= "2024-02-29")
    want = t.loc[keep, ["timestamp", "symbol", "recommend_all"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
    # the bounds are inclusive days: both ends are in, the days around them are not
    days = pd.to_datetime(got["timestamp"], unit="ms")
    assert days.min() == pd.Timestamp("2024-02-01") and days.max() == pd.Timestamp("2024-02-29")


def test_symbols_as_a_categorical_hold_the_same_rows(snap):
    # issue 14 item 4: the backtest reads the symbol column dictionary-encoded (a Categorical):
    # the selection takes it as an array at every rebalance; the values must not change.
    kw = dict(columns=["timestamp", "symbol", "recommend_all"], symbols={"SIM:CUSDT", "SIM:AUSDT"}, start="2024-02-01")
    plain, cat = snap.features(**kw), snap.features(**kw, symbol_category=True)
    assert isinstance(cat["symbol"].dtype, pd.CategoricalDtype) and len(cat) == len(plain) > 0
    assert cat["symbol"].to_numpy().tolist() == plain["symbol"].to_numpy().tolist()
    pd.testing.assert_frame_equal(cat.drop(columns="symbol"), plain.drop(columns="symbol"))
    assert not isinstance(snap.features(columns=["timestamp"], symbol_category=True)["timestamp"].dtype, pd.CategoricalDtype)


def test_a_rating_late_on_the_end_day_is_kept_and_the_next_day_is_not(tmp_path):
    path = tmp_path / "features" / FEATURES_FILE
    path.parent.mkdir(parents=True)
    ts = np.array([0, DAY_MS - 1, DAY_MS], dtype="int64")  # 1970-01-01 00:00, 23:59:59.999, 01-02 00:00
    pq.write_table(pa.table({"timestamp": ts, "symbol": ["S"] * 3}), path)
    snap = features_snapshot(tmp_path, 3)
    assert snap.features(end=pd.Timestamp("1970-01-01"))["timestamp"].tolist() == [0, DAY_MS - 1]
    assert snap.features(start="1970-01-02")["timestamp"].tolist() == [DAY_MS]


def test_unknown_column_is_named(snap):
    with pytest.raises(SnapshotError, match=r"no column\(s\) \['recommend_nope'\]"):
        snap.features(columns=["timestamp", "recommend_nope"])


def test_no_feature_table_gives_none(tmp_path):
    assert Snapshot(tmp_path, {}).features(columns=["timestamp"]) is None


def test_a_projected_and_filtered_read_is_verified_first(snap):
    """Even a read of one column of one symbol's days checks every file of the part: a changed
    fragment that holds none of the asked rows is refused all the same."""
    path = snap.path / PARTS["features"]
    changed = path if path.is_file() else path / "2024-01.parquet"  # January: outside the days asked
    table = pd.read_parquet(changed)
    table.loc[0, "rsi"] = 9.0
    rewrite(changed, table)
    with pytest.raises(SnapshotError, match=r"2024-01\.parquet: sha256 differs|tv_technicals_1d\.parquet: sha256 differs"):
        snap.features(columns=["timestamp", "recommend_all"], symbols=["SIM:AUSDT"], start="2024-02-10", end="2024-02-12")
