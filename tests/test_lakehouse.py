"""Crash leftovers and permissions of the published lakehouse (issue 12, item 8)."""

import datetime as dt
import os
import shutil
import stat

import pytest

import quantlake.lakehouse as lakehouse_mod
from quantlake.data.audit import AuditConfig, run_audit
from quantlake.lakehouse import Layers, recover_swap, remove_stale_temp_dirs, swap_dir_into_place

AS_OF = dt.date(2026, 11, 20)


@pytest.fixture
def layers(sim_lakehouse, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sim_lakehouse / "staging", root / "staging")
    return Layers(root)


def test_build_folders_a_killed_audit_left_are_removed_by_the_next_run(layers):
    leftover = layers.root / ".lakehouse.tmp-abc123"
    (leftover / "SIM_BTCUSDT_1d.parquet").mkdir(parents=True)
    (leftover / "SIM_BTCUSDT_1d.parquet" / "2025.parquet").write_bytes(b"x" * 1000)
    other = layers.root / ".other.tmp-keep"  # not the lakehouse's: left alone
    other.mkdir()
    run_audit(layers, AuditConfig(as_of=AS_OF))
    assert not leftover.exists() and other.exists()
    assert sorted(p.name for p in layers.root.iterdir() if p.name.startswith(".lakehouse")) == []


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_the_published_lakehouse_follows_the_umask(layers, umask):
    old = os.umask(umask)
    try:
        run_audit(layers, AuditConfig(as_of=AS_OF))
    finally:
        os.umask(old)
    mode = stat.S_IMODE(layers.lakehouse.stat().st_mode)
    assert mode == 0o777 & ~umask, oct(mode)
    table = layers.lakehouse / "SIM_BTCUSDT_1d.parquet"
    assert stat.S_IMODE(table.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((layers.lakehouse / "catalog.json").stat().st_mode) == 0o444 & ~umask  # read-only


def test_an_old_lakehouse_that_cannot_be_removed_does_not_block_later_audits(layers, monkeypatch):
    run_audit(layers, AuditConfig(as_of=AS_OF))
    stuck = layers.root / ".lakehouse.old"
    shutil.copytree(layers.lakehouse, stuck)  # a leftover of a half-finished swap

    def refuse(path, *a, **kw):  # e.g. a folder the user cannot write: every unlink fails, nothing goes
        if ".lakehouse.old" in str(path):
            onerror = kw.get("onerror")
            if onerror is None:
                raise PermissionError(13, "Permission denied", str(path))
            return None  # rmtree reported each failure to onerror, which could not help either
        return real(path, *a, **kw)

    real = shutil.rmtree
    monkeypatch.setattr(lakehouse_mod.shutil, "rmtree", refuse)
    run_audit(layers, AuditConfig(as_of=AS_OF))  # not blocked
    assert (layers.lakehouse / "certified.json").exists()
    assert (layers.root / ".lakehouse.old-1").exists() and not stuck.exists()  # moved out of the way
    monkeypatch.setattr(lakehouse_mod.shutil, "rmtree", real)
    run_audit(layers, AuditConfig(as_of=AS_OF))  # and cleaned once it can be
    assert not [p for p in layers.root.iterdir() if p.name.startswith(".lakehouse.old")]


def test_a_crash_after_the_new_folder_is_in_place_drops_the_old_one(tmp_path):
    target, old = tmp_path / "lakehouse", tmp_path / ".lakehouse.old"
    target.mkdir()
    (target / "catalog.json").write_text("new")
    old.mkdir()
    (old / "catalog.json").write_text("old")
    os.chmod(old / "catalog.json", 0o444)
    assert recover_swap(target) is False
    assert not old.exists() and (target / "catalog.json").read_text() == "new"


def test_a_crash_between_the_renames_restores_the_old_one_and_a_swap_replaces_it(tmp_path):
    target, old = tmp_path / "lakehouse", tmp_path / ".lakehouse.old"
    old.mkdir()
    (old / "catalog.json").write_text("old")
    assert recover_swap(target) is True and (target / "catalog.json").read_text() == "old"
    new = tmp_path / ".lakehouse.tmp-1"
    new.mkdir()
    (new / "catalog.json").write_text("new")
    swap_dir_into_place(new, target)
    assert (target / "catalog.json").read_text() == "new" and not old.exists() and not new.exists()
    assert remove_stale_temp_dirs(target) == []


def test_read_bars_is_the_staged_bars_merged_with_the_repairs_as_pandas_would(tmp_path):
    import numpy as np
    import pandas as pd

    from quantlake.contracts import SymbolId
    from quantlake.data.staging import bars_layer
    from quantlake.lakehouse import merged_bars, read_bars

    layers = Layers(tmp_path / "data")
    day, rng = 86_400_000, np.random.default_rng(5)
    ts = 1_700_000_006 * 1000 // day * day + day * np.arange(400, dtype="int64")
    frame = pd.DataFrame({"timestamp": ts, **{c: rng.uniform(1, 2, ts.size) for c in ("open", "high", "low", "close", "volume")}})
    plain, repaired = SymbolId.parse("SIM:AUSDT"), SymbolId.parse("SIM:BUSDT")
    bars_layer(layers.staging_bars).write(plain.filename, frame)
    bars_layer(layers.staging_bars).write(repaired.filename, frame.drop(index=[10, 11]))
    bars_layer(layers.repairs).write(repaired.filename, frame.loc[[10, 11]])
    for sid in (plain, repaired):
        staged = bars_layer(layers.staging_bars).read(sid.filename)
        want = merged_bars(staged, bars_layer(layers.repairs).read(sid.filename))  # the pandas path
        got = read_bars(layers, sid)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        pd.testing.assert_frame_equal(got, frame, check_exact=True)
    # rows out of order (a table written by hand) come back sorted, as merged_bars sorts them
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    table = tmp_path / "data" / "staging" / "bars" / "SIM_CUSDT_1d.parquet"
    table.mkdir()
    shuffled.to_parquet(table / "2023.parquet", index=False)
    pd.testing.assert_frame_equal(read_bars(layers, SymbolId.parse("SIM:CUSDT")), frame, check_exact=True)
