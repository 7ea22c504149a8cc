"""The Alpha Cycle's stage commands on a small sim lakehouse: snapshot, guard, outputs, determinism."""

import dataclasses
import datetime as dt
import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from quantlake.alpha import stages
from quantlake.alpha.backtest import todays_portfolio
from quantlake.alpha.metrics import performance_metrics, returns_from_equity
from quantlake.alpha.netguard import NetworkBlocked, block_network, unblock_network
from quantlake.alpha.snapshot import SnapshotError, load_snapshot, take_snapshot
from quantlake.cli import main
from quantlake.layer import table_hashes
from quantlake.params import load_params, parse_params
from quantlake.storage import atomic_write_json, read_json, sha256_file

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 20)
PARAMS = load_params(ROOT / "params.yaml")
RAW_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def lake(sim_lakehouse, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(sim_lakehouse, dst)
    return dst / "lakehouse"


def test_snapshot_is_content_hashed_and_the_same_for_the_same_lakehouse(lake, tmp_path):
    a = take_snapshot(lake, tmp_path / "a", AS_OF)
    b = take_snapshot(lake, tmp_path / "b", AS_OF)
    assert a.snapshot_id == b.snapshot_id and _tree(tmp_path / "a") == _tree(tmp_path / "b")
    cert = read_json(lake / "certified.json")["symbols"]
    assert set(a.symbols) == set(cert) and "SIM:XVGUSDT" in a.symbols  # its clean past (toxic tail cut)
    entry = a.manifest["files"]["SIM_BTCUSDT_1d.parquet"]
    assert entry == {"symbol": "SIM:BTCUSDT", "sha256": cert["SIM:BTCUSDT"]["sha256"], "fragments": cert["SIM:BTCUSDT"]["fragments"],
                     "rows": cert["SIM:BTCUSDT"]["rows"], "start": "2022-01-01", "end": "2026-11-20"}
    assert sorted(entry["fragments"]) == ["2022-2025", "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    # fragments are linked from the lakehouse (one inode, one DVC cache object) and read-only
    frag = tmp_path / "a/bars/SIM_BTCUSDT_1d.parquet/2022-2025.parquet"
    assert frag.stat().st_ino == (lake / "SIM_BTCUSDT_1d.parquet/2022-2025.parquet").stat().st_ino
    assert not frag.stat().st_mode & 0o222 and not (tmp_path / "a/manifest.json").stat().st_mode & 0o222
    assert a.manifest["features"]["fragments"] == table_hashes(tmp_path / "a/features/tv_technicals_1d.parquet")
    feats = a.features()
    assert set(feats["symbol"]) == set(cert) and "recommend_all" in feats
    # a different lakehouse version gives a different id
    shutil.copytree(lake, tmp_path / "lake2")
    certified = read_json(tmp_path / "lake2/certified.json")
    del certified["symbols"]["SIM:BTCUSDT"]
    atomic_write_json(tmp_path / "lake2/certified.json", certified)
    assert take_snapshot(tmp_path / "lake2", tmp_path / "c", AS_OF).snapshot_id != a.snapshot_id


def test_snapshot_aborts_naming_every_missing_stale_or_toxic_symbol(lake, tmp_path):
    certified = read_json(lake / "certified.json")
    shutil.rmtree(lake / "SIM_ETHUSDT_1d.parquet")
    (lake / "SIM_SOLUSDT_1d.parquet/2026-Q3.parquet").unlink()
    shutil.copy2(lake / "SIM_BNBUSDT_1d.parquet/2026-Q3.parquet", lake / "SIM_SOLUSDT_1d.parquet/2026-Q3.parquet")  # stale bytes
    certified["symbols"]["SIM:DOGEUSDT"]["status"] = "toxic"
    atomic_write_json(lake / "certified.json", certified)
    with pytest.raises(SnapshotError) as err:
        take_snapshot(lake, tmp_path / "snap", AS_OF)
    text = str(err.value)
    assert "SIM:ETHUSDT: missing" in text and "SIM:SOLUSDT: stale" in text and "SIM:DOGEUSDT: toxic" in text
    assert not (tmp_path / "snap").exists()
    with pytest.raises(SnapshotError, match="not 2026-11-21"):
        take_snapshot(lake, tmp_path / "snap", dt.date(2026, 11, 21))


def test_a_tampered_snapshot_is_refused(lake, tmp_path):
    take_snapshot(lake, tmp_path / "s", AS_OF)
    target = tmp_path / "s/bars/SIM_BTCUSDT_1d.parquet/2022-2025.parquet"  # the closed years
    data = target.read_bytes()
    assert not target.stat().st_mode & 0o222  # read-only: an in-place edit is refused (for non-root users)
    target.unlink()
    target.write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(SnapshotError, match="SIM_BTCUSDT_1d.parquet"):
        load_snapshot(tmp_path / "s")


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, *a):
        pass


def test_network_guard_blocks_outbound_connections_naming_the_stage():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    try:
        assert requests.get(url, timeout=5).text == "hi"
        block_network("select")
        with pytest.raises(NetworkBlocked, match="quantlake select: network access is blocked"):
            socket.create_connection(("127.0.0.1", server.server_port), timeout=1)
        with pytest.raises(requests.exceptions.ConnectionError, match="quantlake select"):
            requests.get(url, timeout=5)
        a, b = socket.socketpair()  # local IPC stays allowed
        a.close(), b.close()
        unblock_network()
        assert requests.get(url, timeout=5).text == "hi"
    finally:
        unblock_network()
        server.shutdown()


def test_every_alpha_command_installs_the_guard_first(monkeypatch, capsys, tmp_path):
    def sneaky(*a, **k):
        requests.get("http://127.0.0.1:9/", timeout=1)

    monkeypatch.setattr(stages, "run_returns", sneaky)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    try:
        assert main(["returns"]) == 2
    except requests.exceptions.ConnectionError as exc:  # requests wraps the guard's error
        assert "quantlake returns: network access is blocked" in str(exc)
    else:
        assert "quantlake returns: network access is blocked" in capsys.readouterr().err
    finally:
        unblock_network()


def run_alpha_stages(snapshot: Path, alpha: Path, backtest: Path) -> None:
    """Every alpha stage after the snapshot, in dvc.yaml's order."""
    stages.run_returns(snapshot, alpha, PARAMS)
    stages.run_select(alpha, snapshot, PARAMS)
    stages.run_synthesize(alpha, snapshot, PARAMS)
    stages.run_optimize(alpha, snapshot, PARAMS)
    stages.run_backtest(alpha, snapshot, backtest, PARAMS)


@pytest.fixture(scope="module")
def alpha_run(sim_lakehouse, tmp_path_factory):
    root = tmp_path_factory.mktemp("alpha")
    snap = take_snapshot(sim_lakehouse / "lakehouse", root / "snapshot", AS_OF)
    alpha = root / "alpha"
    run_alpha_stages(root / "snapshot", alpha, root / "backtest")
    return root, snap


def test_stage_outputs_are_todays_portfolio_from_the_same_functions(alpha_run):
    root, snap = alpha_run
    returns = stages.read_wide(root / "alpha" / stages.RETURNS)
    value = stages.read_wide(root / "alpha" / stages.TRADED_VALUE)
    eligible = stages.universe_mask(snap, returns)
    assert eligible is not None and eligible.loc[pd.Timestamp(AS_OF)].sum() >= 10
    expected = todays_portfolio(returns, value, pd.Timestamp(AS_OF), PARAMS.backtest, snap.features(), eligible=eligible)
    doc = read_json(root / "alpha" / stages.PORTFOLIO)
    assert doc["weights"] == {s: float(w) for s, w in expected.weights.items()}
    assert doc["atom_weights"] == {a: float(w) for a, w in expected.atom_weights.items()}
    assert read_json(root / "alpha" / stages.SELECTION)["selected"] == list(expected.selection.selected)
    assert abs(sum(doc["weights"].values()) - 1) < 1e-9 and all(w >= 0 for w in doc["weights"].values())


def test_returns_matrix_matches_the_snapshot_bars(alpha_run):
    root, snap = alpha_run
    returns = stages.read_wide(root / "alpha" / stages.RETURNS)
    btc = snap.bars()["SIM:BTCUSDT"]
    close = pd.Series(btc["close"].to_numpy(), index=pd.to_datetime(btc["timestamp"], unit="ms"))
    day = pd.Timestamp("2025-06-02")
    assert returns.loc[day, "SIM:BTCUSDT"] == pytest.approx(close[day] / close[day - pd.Timedelta(days=1)] - 1, rel=1e-12)
    # the exchange-wide missing day 2024-11-11: its two-day move is booked on the day trading resumes
    assert pd.Timestamp("2024-11-11") not in close.index
    resumed = close[pd.Timestamp("2024-11-12")] / close[pd.Timestamp("2024-11-10")] - 1
    assert returns.loc[pd.Timestamp("2024-11-12"), "SIM:BTCUSDT"] == pytest.approx(resumed, rel=1e-12)
    assert pd.Timestamp("2024-11-11") not in returns.index or returns.loc[pd.Timestamp("2024-11-11")].isna().all()


def test_the_backtest_holds_no_symbol_without_a_bar_and_its_benchmark_is_the_price_ratio(alpha_run):
    root, snap = alpha_run
    bar_days = {s: set(pd.to_datetime(b["timestamp"], unit="ms")) for s, b in snap.bars().items()}
    weights = pd.read_csv(root / "backtest/weights.csv", parse_dates=["date"])
    live = weights[weights["weight"] != 0]
    assert len(live) > 100
    ghosts = live[[d not in bar_days[s] for d, s in zip(live["date"], live["symbol"])]]
    assert ghosts.empty, ghosts
    waves = snap.bars()["SIM:WAVESUSDT"]  # the sim halts it: the universe has a symbol that stops trading
    assert pd.to_datetime(waves["timestamp"].iloc[-1], unit="ms") < pd.Timestamp(AS_OF)
    equity = pd.read_csv(root / "backtest/equity.csv", index_col="date", parse_dates=True)
    btc = snap.bars()["SIM:BTCUSDT"]
    close = pd.Series(btc["close"].to_numpy(), index=pd.to_datetime(btc["timestamp"], unit="ms"))
    assert equity["benchmark"].iloc[-1] == pytest.approx(close.iloc[-1] / close[equity.index[0]], rel=1e-9)


def test_every_output_carries_snapshot_and_run_ids_and_metrics_recompute_from_equity(alpha_run):
    root, snap = alpha_run
    metrics = read_json(root / "backtest/performance.json")
    run = read_json(root / "backtest/provenance.json")
    for doc in (run, read_json(root / "alpha/selection.json"), read_json(root / "alpha/portfolio.json"), read_json(root / "alpha/atoms/atoms.json")):
        assert doc["snapshot_id"] == snap.snapshot_id and len(doc["run_id"]) == 64
    assert stages.read_provenance(root / "alpha" / stages.RETURNS)["snapshot_id"] == snap.snapshot_id
    assert run["run_id"] == read_json(root / "alpha/portfolio.json")["run_id"]  # same params, same run
    equity = pd.read_csv(root / "backtest/equity.csv", index_col="date", parse_dates=True)
    assert list(equity.columns) == ["strategy", "equal_weight", "benchmark"] and (equity.iloc[0] == 1.0).all()
    for curve in equity.columns:
        again = performance_metrics(returns_from_equity(equity[curve]))
        for key in ("cagr", "volatility", "sharpe", "sortino", "max_drawdown"):
            assert again[key] == pytest.approx(metrics[curve][key], rel=1e-7, abs=1e-12), (curve, key)
    png = (root / "backtest/tearsheet.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_metrics_json_is_the_headline_set_without_ids_and_provenance_has_the_ids(alpha_run):
    from quantlake.alpha.tearsheet_figures import HEADLINE

    root, snap = alpha_run
    text = (root / "backtest/metrics.json").read_text()
    metrics = json.loads(text)
    assert list(metrics) == [key for key, _, _ in HEADLINE]  # in this order: `dvc exp show` keeps it
    assert all(isinstance(v, float) for v in metrics.values())  # figures only: no id, date or method string
    assert snap.snapshot_id not in text and not any(isinstance(v, str) for v in metrics.values())
    full = read_json(root / "backtest/performance.json")
    assert metrics["sharpe"] == full["strategy"]["sharpe"] and metrics["ew_max_dd"] == full["equal_weight"]["max_drawdown"]
    run = read_json(root / "backtest/provenance.json")
    assert set(run) >= {"snapshot_id", "run_id", "params_sha256", "code_version", "as_of", "method"}
    assert len(run["params_sha256"]) == 64 and run["method"] == PARAMS.optimization.method
    html = (root / "backtest/tearsheet.html").read_text()
    assert run["run_id"] in html and "<script" not in html
    holdings = pd.read_csv(root / "backtest/holdings.csv")
    assert list(holdings.columns) == ["date", "rank", "symbol", "weight"] and holdings["date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()


def test_same_snapshot_and_params_give_byte_identical_outputs(alpha_run, tmp_path):
    root, _ = alpha_run
    alpha = tmp_path / "alpha"
    run_alpha_stages(root / "snapshot", alpha, tmp_path / "backtest")
    assert _tree(alpha) == _tree(root / "alpha")
    assert _tree(tmp_path / "backtest") == _tree(root / "backtest")
    other = parse_params({**RAW_PARAMS, "optimization": {**RAW_PARAMS["optimization"], "method": "min_variance"}})
    stages.run_optimize(alpha, root / "snapshot", other)
    assert read_json(alpha / "portfolio.json")["run_id"] != read_json(root / "alpha/portfolio.json")["run_id"]


def test_every_pool_is_drawn_from_the_point_in_time_universe(alpha_run):
    """The backtest's weights at every rebalance date sit on members of the universe at that date."""
    root, snap = alpha_run
    returns = stages.read_wide(root / "alpha" / stages.RETURNS)
    eligible = stages.universe_mask(snap, returns)
    weights = pd.read_csv(root / "backtest/weights.csv", parse_dates=["date"])
    assert len(weights) and weights["date"].nunique() > 10
    held = weights[weights["weight"] > 0]
    assert all(eligible.at[d, s] for d, s in zip(held["date"], held["symbol"]))
    today = read_json(root / "alpha" / stages.PORTFOLIO)["weights"]
    assert all(eligible.at[pd.Timestamp(AS_OF), s] for s, w in today.items() if w > 0)


def test_a_narrower_universe_binds_the_strategy_and_the_baseline(alpha_run):
    """Symbols outside the universe are never bought, by the strategy or the equal-weight baseline."""
    from quantlake.alpha.backtest import walk_forward

    root, snap = alpha_run
    returns = stages.read_wide(root / "alpha" / stages.RETURNS)
    value = stages.read_wide(root / "alpha" / stages.TRADED_VALUE)
    recipe = dataclasses.replace(PARAMS.backtest, step_days=90, test_days=90)
    free = walk_forward(returns, value, recipe, snap.features(), eligible=stages.universe_mask(snap, returns))
    favourites = free.weights.groupby("symbol")["weight"].sum().nlargest(3).index
    eligible = stages.universe_mask(snap, returns)
    eligible.loc[:, favourites] = False
    bound = walk_forward(returns, value, recipe, snap.features(), eligible=eligible)
    assert not bound.weights["symbol"].isin(favourites).any() and free.weights["symbol"].isin(favourites).any()
    assert not bound.equity["equal_weight"].equals(free.equity["equal_weight"])
    assert (bound.trading["equal_weight_trade"] > 0).any()


def test_the_select_stage_draws_from_the_snapshot_universe(lake, tmp_path):
    """A lakehouse whose universe drops today's selection gives another selection, from members only."""
    from quantlake.data.discovery import ScannerConfig
    from quantlake.data.universe import UniverseSpec, read_universe, universe_to_parquet_bytes

    take_snapshot(lake, tmp_path / "a", AS_OF)
    stages.run_returns(tmp_path / "a", tmp_path / "alpha_a", PARAMS)
    honest = stages.run_select(tmp_path / "alpha_a", tmp_path / "a", PARAMS)["selected"]
    universe = read_universe(lake / "universe.parquet")
    spec = UniverseSpec(tuple(ScannerConfig(**c) for c in universe.attrs["scanners"]))
    (lake / "universe.parquet").unlink()
    (lake / "universe.parquet").write_bytes(universe_to_parquet_bytes(universe[~universe["symbol"].isin(honest)], spec, AS_OF))
    take_snapshot(lake, tmp_path / "b", AS_OF)
    stages.run_returns(tmp_path / "b", tmp_path / "alpha_b", PARAMS)
    narrowed = stages.run_select(tmp_path / "alpha_b", tmp_path / "b", PARAMS)["selected"]
    assert narrowed and not set(narrowed) & set(honest)
