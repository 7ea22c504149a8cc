"""A lakehouse version is a pure function of (source data, params, code): same inputs, same dvc.lock."""

import pytest
import yaml
from repo_tools import dvc, git, make_project, repo_env

DATA_STAGES = ("discover", "ingest", "repair", "features", "audit", "report")


def data_outs(lock: dict) -> dict:
    """{(stage, path): md5} of every output of the Data Cycle's stages in a dvc.lock."""
    return {(stage, o["path"]): o["md5"] for stage in DATA_STAGES for o in lock["stages"][stage]["outs"]}


@pytest.mark.integration
def test_two_independent_runs_of_the_data_cycle_give_the_same_dvc_lock(tmp_path):
    locks = []
    for name, now in (("a", "2026-11-26T12:00:00Z"), ("b", "2026-11-27T19:31:07Z")):  # different wall clocks
        path, _ = make_project(tmp_path / name, start="2025-06-01", limit=12)
        env = repo_env(path, QUANTLAKE_NOW=now)
        dvc(["repro", "report"], path, env)
        locks.append(yaml.safe_load((path / "dvc.lock").read_text()))
        assert (path / "data/staging/.freshness.json").exists()  # the wall clock lives here, unversioned
        assert "last_checked" not in (path / "data/staging/bars/_ingest_state.json").read_text()
        assert "last_checked" not in (path / "data/lakehouse/catalog.json").read_text()
        assert git(["check-ignore", "data/staging/.freshness.json"], path, env).returncode == 0  # never committed
    a, b = (data_outs(lock) for lock in locks)
    assert len(a) >= 7  # every data output is compared
    assert a == b
