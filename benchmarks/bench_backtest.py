"""Benchmark (issue 7, item 6): a full walk-forward backtest, and the same loop on PyPortfolioOpt.

Run: ``python benchmarks/bench_backtest.py [--symbols 300] [--years 5] [--repeats 1] [--step 7]``

Input: ``--symbols`` USDT pairs of the simulated exchange (`SimExchange(seed=7,
extra_symbols=...)`: BTC, ETH and synthetic Q-pairs, no injected defects on those) over the
``--years`` years ending at params.yaml's `data.as_of`, through `returns_matrix` /
`traded_value_matrix`. The recipe is params.yaml's, with `backtest.step_days = test_days =
--step` (weekly rebalancing), `optimization.method = hrp`, no technical ratings (the
selection's `rating_all` feature is then absent, as for a symbol without ratings), and the
caps lifted to 1 (`max_weight`, `max_cluster_weight`) because PyPortfolioOpt's HRPOpt has none.

Contenders, each `quantlake.alpha.backtest.walk_forward` in a fresh interpreter (wall time of
the call; peak RSS of the process; the panel is read from a Parquet file first):

    quantlake        the recipe as shipped (quantlake's HRP)
    PyPortfolioOpt   the same loop with `optimize_weights` replaced by a wrapper calling
                     `pypfopt.HRPOpt(cov_matrix=CovarianceShrinkage(...).ledoit_wolf()).optimize("single")`
                     (the same definition: Ledoit-Wolf covariance of the same window, single linkage)

Prints wall time, peak memory, time inside the optimizer, the ratio, and the largest weight
difference between the two runs over every rebalance (the loops must agree).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from common import ROOT, SRC, load1, print_machine, print_table  # noqa: E402

CONTENDERS = ("quantlake", "PyPortfolioOpt")


# --------------------------------------------------------------------------- input


def recipe_params(step: int) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["backtest"].update(step_days=step, test_days=step, workers=1)  # one process: the optimizer is timed in it
    params["optimization"].update(method="hrp", covariance="ledoit_wolf", linkage="single", max_weight=1.0, max_cluster_weight=1.0)
    return params


def build_panel(folder: Path, symbols: int, years: int, seed: int = 7) -> tuple[int, int]:
    """returns.parquet and traded_value.parquet of `symbols` sim pairs over `years` years."""
    import datetime as dt

    from quantlake.alpha.returns import returns_matrix, traded_value_matrix
    from quantlake.contracts import SymbolId, parse_date
    from quantlake.sources.sim import SimExchange

    as_of = parse_date(yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["as_of"])
    start = as_of - dt.timedelta(days=round(365.25 * years) - 1)
    names = ["BTCUSDT", "ETHUSDT"] + [f"Q{i:05d}USDT" for i in range(symbols - 2)]
    sim = SimExchange(seed, extra_symbols=symbols - 2)
    bars = {}
    for name in names:
        sid = SymbolId.of("SIM", name)
        frame = sim.fetch_bars(sid, start, as_of)
        if len(frame):
            bars[str(sid)] = frame
    folder.mkdir(parents=True, exist_ok=True)
    returns_matrix(bars).to_parquet(folder / "returns.parquet")
    traded_value_matrix(bars).to_parquet(folder / "traded_value.parquet")
    return len(bars), len(returns_matrix(bars))


# --------------------------------------------------------------------------- one run (child)


def pypfopt_hrp(returns: pd.DataFrame, method: str, *, clusters=None, max_weight=1.0, max_cluster_weight=1.0,
                covariance="ledoit_wolf", risk_free=0.0, linkage="single") -> pd.Series:
    """`optimize_weights`' signature, computed by PyPortfolioOpt (HRP with Ledoit-Wolf only)."""
    from pypfopt import HRPOpt
    from pypfopt.risk_models import CovarianceShrinkage

    if method != "hrp" or covariance != "ledoit_wolf" or max_weight < 1.0 or max_cluster_weight < 1.0:
        raise ValueError(f"the PyPortfolioOpt loop supports uncapped hrp with ledoit_wolf only, got {method}/{covariance}")
    if returns.shape[1] == 1:
        return pd.Series([1.0], index=returns.columns)
    cov = CovarianceShrinkage(returns, returns_data=True, frequency=1).ledoit_wolf()
    weights = HRPOpt(cov_matrix=cov).optimize(linkage)
    return pd.Series(dict(weights), dtype="float64").reindex(returns.columns)


def current_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(contender: str, data: Path, step: int) -> None:
    import resource

    from quantlake.alpha import backtest
    from quantlake.params import parse_params

    returns = pd.read_parquet(data / "returns.parquet")
    value = pd.read_parquet(data / "traded_value.parquet")
    params = parse_params(recipe_params(step)).backtest
    rss_before = current_rss_kib()
    optimizer = backtest.optimize_weights if contender == "quantlake" else pypfopt_hrp
    if contender == "PyPortfolioOpt":
        for module in ("pypfopt.hierarchical_portfolio", "pypfopt.risk_models"):
            importlib.import_module(module)  # importing the library is not the loop's cost
    spent = [0.0, 0]

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return optimizer(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start
            spent[1] += 1

    backtest.optimize_weights = timed  # the loop looks the name up in its module at each call
    start = time.perf_counter()
    result = backtest.walk_forward(returns, value, params)
    wall = time.perf_counter() - start
    result.weights.to_parquet(data / f"weights_{contender}.parquet")
    print(json.dumps({
        "wall": wall, "optimizer": spent[0], "optimizer_calls": spent[1],
        "rebalances": int(len(result.windows)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mib": rss_before / 1024,
        "sharpe": result.metrics["strategy"]["sharpe"],
    }))


# --------------------------------------------------------------------------- parent


def run_child(contender: str, data: Path, step: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", contender, "--data", str(data), "--step", str(step)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{contender} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["load1"] = load1()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--years", type=int, default=5)
    ap.add_argument("--step", type=int, default=7, help="rebalance every this many days (= test_days)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.data, args.step)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="ql-bench-backtest-"))
    try:
        start = time.perf_counter()
        n_symbols, n_days = build_panel(tmp, args.symbols, args.years)
        print_machine()
        print(f"panel: {n_days} days x {n_symbols} symbols (sim, built in {time.perf_counter() - start:.1f}s); "
              f"weekly walk-forward: step_days = test_days = {args.step}, hrp, 1 BLAS thread")
        runs = {c: [] for c in CONTENDERS}
        for _ in range(args.repeats):
            for contender in CONTENDERS:  # interleaved
                runs[contender].append(run_child(contender, tmp, args.step))
        best = {c: min(r, key=lambda x: x["wall"]) for c, r in runs.items()}
        ref = best["PyPortfolioOpt"]["wall"]
        rows = [
            [c, b["wall"], b["wall"] / ref, b["optimizer"], b["optimizer"] / best["PyPortfolioOpt"]["optimizer"],
             b["rebalances"], b["peak_rss_mib"], b["rss_before_mib"], f"{b['load1']:.2f}"]
            for c, b in best.items()
        ]
        print_table(
            ["loop", "walk_forward wall (s)", "ratio to PyPortfolioOpt loop", "in optimizer (s)",
             "optimizer ratio", "rebalances", "peak RSS (MiB)", "RSS before the loop (MiB)", "load1"],
            rows,
            title=f"Walk-forward backtest, {n_symbols} symbols x {args.years} years, weekly HRP (best of {args.repeats})",
        )
        a = pd.read_parquet(tmp / "weights_quantlake.parquet")
        b = pd.read_parquet(tmp / "weights_PyPortfolioOpt.parquet")
        merged = a.merge(b, on=["date", "symbol"], how="outer", suffixes=("_ql", "_pp")).fillna(0.0)
        diff = float(np.abs(merged["weight_ql"] - merged["weight_pp"]).max()) if len(merged) else 0.0
        print(f"\nlargest weight difference between the two loops over {a['date'].nunique()} rebalances: {diff:.2e}; "
              f"strategy Sharpe {best['quantlake']['sharpe']:.6f} vs {best['PyPortfolioOpt']['sharpe']:.6f}")
        ratio = best["quantlake"]["wall"] / ref
        print(f"quantlake loop / PyPortfolioOpt loop = {ratio:.2f} (optimizer alone: "
              f"{best['quantlake']['optimizer'] / best['PyPortfolioOpt']['optimizer']:.3f}); load1 now {load1():.2f}")
        return 0 if diff < 1e-9 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
