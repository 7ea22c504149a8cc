"""The sweep stage: grid expansion, serial vs a real Dask LocalCluster vs a separately started
scheduler and worker, a killed worker, a failing point, the network guard inside workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from conftest import AS_OF
from quantlake.alpha import stages
from quantlake.alpha.netguard import unblock_network
from quantlake.alpha.snapshot import take_snapshot
from quantlake.alpha.sections import SweepParams
from quantlake.alpha.sweep import apply_overrides, default_point, expand_grid, point_id
from quantlake.params import ParamsError, parse_params
from quantlake.storage import read_json

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
BASE = parse_params(RAW)
# a lighter recipe than the default so that the cluster tests stay quick
LIGHT = apply_overrides(RAW, {"backtest.step_days": 90, "backtest.test_days": 90})
PARAMS = parse_params(LIGHT)
GRID = {"optimization.method": ["hrp", "inverse_vol"], "selection.top_n": [2]}


def sweep_params(grid=None, **kw):
    return parse_params({**LIGHT, "sweep": {"grid": grid or GRID, "scheduler": "serial", **kw}})


# --------------------------------------------------------------------------- the grid


def test_grid_points_are_sorted_by_a_stable_content_id():
    sweep = SweepParams.from_params({"grid": {"selection.top_n": [1, 2, 3], "optimization.method": ["hrp", "min_variance"]}})
    points = expand_grid(BASE, sweep)
    assert len(points) == 6 and [p.id for p in points] == sorted(p.id for p in points)
    again = expand_grid(BASE, SweepParams.from_params({"grid": {"optimization.method": ["min_variance", "hrp"], "selection.top_n": [3, 2, 1]}}))
    assert [p.id for p in again] == [p.id for p in points]  # the order of the grid's values does not matter
    p = next(p for p in points if p.overrides == {"optimization.method": "min_variance", "selection.top_n": 3})
    assert p.params.optimization.method == "min_variance" and p.params.selection.top_n == 3
    assert p.params.backtest.optimize.method == "min_variance" and p.params.backtest.selection.top_n == 3  # the recipe too
    assert p.params.plain("backtest") == BASE.plain("backtest") and BASE.selection.top_n == 2  # base untouched
    assert p.id == point_id({"selection.top_n": 3, "optimization.method": "min_variance"})


def test_a_seeded_sample_is_a_reproducible_subset():
    grid = {"selection.top_n": [1, 2, 3, 4], "optimization.method": ["hrp", "min_variance", "inverse_vol"]}
    full = {p.id for p in expand_grid(BASE, SweepParams.from_params({"grid": grid}))}
    a = expand_grid(BASE, SweepParams.from_params({"grid": grid, "sample": 5, "seed": 1}))
    b = expand_grid(BASE, SweepParams.from_params({"grid": grid, "sample": 5, "seed": 1}))
    c = expand_grid(BASE, SweepParams.from_params({"grid": grid, "sample": 5, "seed": 2}))
    assert [p.id for p in a] == [p.id for p in b] and len(a) == 5 and {p.id for p in a} <= full
    assert {p.id for p in a} != {p.id for p in c}


def test_the_default_point_is_found_when_the_grid_holds_params_yaml():
    points = expand_grid(BASE, SweepParams.from_params({"grid": {"optimization.method": ["hrp", "min_variance"]}}))
    assert BASE.optimization.method == "hrp"
    assert default_point(BASE, points) == next(p.id for p in points if p.overrides["optimization.method"] == "hrp")
    assert default_point(BASE, expand_grid(BASE, SweepParams.from_params({"grid": {"selection.top_n": [7]}}))) is None


@pytest.mark.parametrize(
    "block, message",
    [
        ({"grid": {"data.as_of": ["2025-01-01"]}}, "sweep.grid.data.as_of"),
        ({"grid": {"optimization.methd": ["hrp"]}}, "methd"),
        ({"grid": {"optimization.method": []}}, "non-empty list"),
        ({"grid": {"optimization.method": "hrp"}}, "non-empty list"),
        ({"grid": {}, "pbo_blocks": 7}, "pbo_blocks"),
        ({"grid": {}, "scheduler": "http://x"}, "sweep.scheduler"),
        ({"grid": {}, "workerz": 2}, "workerz"),
        ({"grid": {}, "workers": "two"}, "sweep.workers"),
    ],
)
def test_bad_sweep_params_are_errors_naming_the_key(block, message):
    with pytest.raises(ParamsError, match=message):
        expand_grid(BASE, SweepParams.from_params(block))


# --------------------------------------------------------------------------- running it


@pytest.fixture(scope="module")
def inputs(sim_lakehouse, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    take_snapshot(sim_lakehouse / "lakehouse", root / "snapshot", AS_OF)
    stages.run_returns(root / "snapshot", root / "alpha", PARAMS)
    return root


@pytest.fixture(scope="module")
def serial(inputs):
    out = inputs / "serial"
    doc = stages.run_sweep(inputs / "alpha", inputs / "snapshot", out, sweep_params(), say=lambda m: None)
    return out, doc


def test_the_default_point_reproduces_the_backtest_stages_metrics(inputs, serial, tmp_path):
    out, doc = serial
    backtest = stages.run_backtest(inputs / "alpha", inputs / "snapshot", tmp_path, PARAMS)
    results = pd.read_parquet(out / "results.parquet")
    assert doc["trials"] == 2 and doc["failed"] == 0 and len(results) == 2
    row = results[results["point_id"] == doc["default"]["point_id"]].iloc[0]
    for key in ("cagr", "sharpe", "max_drawdown", "volatility"):
        assert row[key] == backtest["strategy"][key]  # exactly, not approximately
    daily = pd.read_csv(tmp_path / "equity.csv", index_col="date", parse_dates=True)["strategy"].pct_change().dropna()
    assert len(row["returns"]) == len(daily) and row["returns_start"] == daily.index[0].date().isoformat()
    assert max(abs(a - b) for a, b in zip(row["returns"], daily)) < 1e-8  # equity.csv keeps 10 significant digits


def test_the_sweep_metrics_name_the_best_point_with_dsr_and_pbo(serial):
    out, doc = serial
    results = pd.read_parquet(out / "results.parquet")
    assert read_json(out / "summary.json") == doc
    assert read_json(out / "metrics.json") == {"sweep_trials": 2, "sweep_failed": 0, "sweep_best_sharpe": doc["best"]["sharpe"],
                                               "sweep_dsr": doc["dsr"]["dsr"], "sweep_pbo": doc["pbo"]["pbo"]}
    best = results.loc[results["sharpe"].idxmax()]
    assert doc["best"]["point_id"] == best["point_id"] and doc["best"]["sharpe"] == best["sharpe"]
    assert 0.0 <= doc["dsr"]["dsr"] <= 1.0 and doc["dsr"]["n_trials"] == 2
    assert 0.0 <= doc["pbo"]["pbo"] <= 1.0 and doc["pbo"]["n_splits"] == 12870
    points = pd.read_csv(out / "points.csv")
    assert list(points["point_id"]) == list(results["point_id"]) and "sharpe" in points


def test_a_point_that_raises_is_recorded_and_the_others_go_on(inputs, tmp_path):
    params = sweep_params({"backtest.benchmark": ["BTC", "NOSUCHCOIN"]})
    doc = stages.run_sweep(inputs / "alpha", inputs / "snapshot", tmp_path, params, say=lambda m: None)
    results = pd.read_parquet(tmp_path / "results.parquet").set_index("point_id")
    assert doc["trials"] == 2 and doc["failed"] == 1
    bad = results[results["param.backtest.benchmark"] == '"NOSUCHCOIN"'].iloc[0]
    assert "NOSUCHCOIN" in bad["error"] and pd.isna(bad["sharpe"])
    assert results[results["param.backtest.benchmark"] == '"BTC"']["error"].isna().all()


def test_a_grid_value_the_recipe_rejects_fails_before_anything_runs(inputs, tmp_path):
    params = sweep_params({"optimization.method": ["hrp", "magic"]})
    with pytest.raises(ParamsError, match="sweep.grid: point .*magic"):
        stages.run_sweep(inputs / "alpha", inputs / "snapshot", tmp_path, params, say=lambda m: None)
    assert not (tmp_path / "results.parquet").exists()


@pytest.mark.integration
def test_a_local_cluster_with_two_workers_gives_the_serial_bytes(inputs, serial, tmp_path):
    said = []
    try:
        stages.run_sweep(inputs / "alpha", inputs / "snapshot", tmp_path, sweep_params(scheduler="local", workers=2), say=said.append)
    finally:
        unblock_network()
    assert (tmp_path / "results.parquet").read_bytes() == (serial[0] / "results.parquet").read_bytes()
    assert (tmp_path / "summary.json").read_bytes() == (serial[0] / "summary.json").read_bytes()
    assert any("on 2 Dask workers" in m for m in said) and any("2/2 points done" in m for m in said)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and `dask worker` started as separate processes on 127.0.0.1."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))}
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    log = open(tmp_path / "cluster.log", "w")
    scheduler = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0", "--no-dashboard"],
                                 env=env, stdout=log, stderr=log)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                               "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"], env=env, stdout=log, stderr=log)
    from distributed import Client

    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for p in (worker, scheduler):
            p.terminate()
        for p in (worker, scheduler):
            p.wait(30)
        log.close()


def _try_connect(address):
    import socket as s

    with s.create_connection(address, timeout=2):
        return "connected"


@pytest.mark.integration
def test_a_separately_started_scheduler_and_worker_give_the_same_results_and_block_the_network(inputs, serial, tmp_path, dask_cluster):
    try:
        stages.run_sweep(inputs / "alpha", inputs / "snapshot", tmp_path, sweep_params(scheduler=dask_cluster), say=lambda m: None)
    finally:
        unblock_network()
    assert (tmp_path / "results.parquet").read_bytes() == (serial[0] / "results.parquet").read_bytes()
    # inside the sweep's worker, a connection to anything but the cluster fails with the stage's message
    from distributed import Client

    with Client(dask_cluster) as client:
        future = client.submit(_try_connect, ("127.0.0.2", 9), pure=False)
        with pytest.raises(ConnectionRefusedError, match="quantlake sweep: network access is blocked"):
            future.result(timeout=60)


@pytest.mark.integration
def test_a_worker_killed_mid_sweep_loses_and_duplicates_no_point(inputs, serial, tmp_path):
    grid = {"optimization.method": ["hrp", "inverse_vol", "min_variance", "equal_weight"], "selection.top_n": [2]}
    params = sweep_params(grid, scheduler="local", workers=2)
    killed = []

    def kill_a_worker(message):
        if "points done" in message and not killed:
            # the LocalCluster's nannies live in this process and spawn one worker process each
            workers = [p for p in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
            if workers:
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)

    try:
        doc = stages.run_sweep(inputs / "alpha", inputs / "snapshot", tmp_path, params, say=kill_a_worker)
    finally:
        unblock_network()
    assert killed, "no worker process was found to kill"
    results = pd.read_parquet(tmp_path / "results.parquet")
    assert doc["trials"] == 4 and doc["failed"] == 0 and results["point_id"].is_unique
    stages.run_sweep(inputs / "alpha", inputs / "snapshot", tmp_path / "serial", sweep_params(grid), say=lambda m: None)
    assert (tmp_path / "results.parquet").read_bytes() == (tmp_path / "serial" / "results.parquet").read_bytes()
