"""Benchmark (issue 14): a weekly walk-forward against the bare HRP loop and skfolio's WalkForward.

Run: ``python benchmarks/bench_walkforward.py [--symbols 300] [--days 1825] [--step 7] [--train 365]
[--repeats 1] [--skip-skfolio] [--baseline-rev REV]``

Input: one synthetic panel of daily returns without gaps (``--symbols`` x ``--days``, seeded: a
few factors with fat-tailed noise, so that the selection finds clusters) and a traded-value
panel. Every contender runs in a fresh interpreter with one BLAS thread and reads the panel
from Parquet first (not timed); the time is the wall time of the loop only.

    floor       the bare loop: at each rebalance, the sample covariance of the last ``--train``
                days (numpy) and HRP on it (scipy single linkage on sqrt(0.5 (1 - rho)),
                quasi-diagonal order, recursive bisection by inverse-variance): the least work
                a weekly HRP walk-forward can do
    skfolio     ``cross_val_predict(HierarchicalRiskParity(), X, cv=WalkForward(test_size=step,
                train_size=train))``: skfolio's own complete path
    quantlake   ``walk_forward`` with params.yaml's recipe (selection, synthesis, HRP with its
                caps, costs, baselines), ``backtest.step_days = test_days = --step``
                (``backtest.workers: 0``, the default: the rebalance portfolios on every core)
    quantlake-1 the same with ``backtest.workers: 1``: one core, like the two contenders above
    quantlake @REV  (with ``--baseline-rev``) the same call on the source tree of git revision
                REV (``git archive``): the figure before a change, and the check that the weights
                at every rebalance are identical

Prints the machine, the table (seconds, ratio to the floor, rebalances, peak RSS) and the
largest weight difference between quantlake and quantlake @REV.
"""

from __future__ import annotations

import argparse
import json
import os
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

CONTENDERS = ("floor", "skfolio", "quantlake", "quantlake-1")  # quantlake-1: backtest.workers = 1


# --------------------------------------------------------------------------- input


def build_panel(folder: Path, symbols: int, days: int, seed: int = 14) -> None:
    """returns.parquet / traded_value.parquet: `symbols` columns, `days` days, no gap."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(end="2026-11-20", periods=days, freq="D", name="date")
    n_factors = 8
    factors = rng.standard_t(4, size=(days, n_factors)) * 0.02
    group = rng.integers(0, n_factors, symbols)
    beta = rng.uniform(0.5, 1.5, symbols)
    noise = rng.standard_t(3, size=(days, symbols)) * rng.uniform(0.01, 0.04, symbols)
    market = rng.standard_t(4, size=(days, 1)) * 0.025
    returns = (0.8 * market + beta * factors[:, group] + noise + rng.normal(0.0003, 0.0005, symbols)).clip(-0.8, 2.0)
    names = ["SIM:BTCUSDT", "SIM:ETHUSDT"] + [f"SIM:Q{i:05d}USDT" for i in range(symbols - 2)]
    value = np.exp(rng.normal(15, 1.5, symbols) + rng.normal(0, 0.3, (days, symbols)))
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(returns, index=index, columns=names).to_parquet(folder / "returns.parquet")
    pd.DataFrame(value, index=index, columns=names).to_parquet(folder / "traded_value.parquet")


def recipe_params(step: int, train: int, root: Path = ROOT) -> dict:
    """`root`'s params.yaml with the benchmark's walk-forward timing (a baseline revision has its own keys)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["backtest"].update(step_days=step, test_days=step, train_days=train)
    return params


# --------------------------------------------------------------------------- contenders (children)


def hrp_weights(cov: np.ndarray) -> np.ndarray:
    """HRP: single linkage on the correlation distance, quasi-diagonal order, recursive bisection."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    sd = np.sqrt(np.diag(cov))
    corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
    dist = np.sqrt(0.5 * (1.0 - corr))
    np.fill_diagonal(dist, 0.0)
    order = leaves_list(linkage(squareform(dist, checks=False), method="single"))
    w = np.ones(len(order))
    ivp = 1.0 / np.diag(cov)
    stack = [order]
    while stack:
        items = stack.pop()
        if len(items) < 2:
            continue
        half = len(items) // 2
        left, right = items[:half], items[half:]
        var = []
        for part in (left, right):
            p = ivp[part] / ivp[part].sum()
            var.append(p @ cov[np.ix_(part, part)] @ p)
        alpha = 1.0 - var[0] / (var[0] + var[1])
        w[left] *= alpha
        w[right] *= 1.0 - alpha
        stack += [left, right]
    return w


def floor_loop(returns: pd.DataFrame, step: int, train: int) -> pd.DataFrame:
    x = returns.to_numpy("float64")
    rows = []
    for end in range(train, x.shape[0], step):  # rebalance on row end-1, hold from row end
        cov = np.cov(x[end - train : end], rowvar=False)
        rows.append(hrp_weights(cov))
    return pd.DataFrame(rows, columns=returns.columns)


def skfolio_loop(returns: pd.DataFrame, step: int, train: int) -> pd.DataFrame:
    from skfolio.model_selection import WalkForward, cross_val_predict
    from skfolio.optimization import HierarchicalRiskParity

    pred = cross_val_predict(HierarchicalRiskParity(), returns, cv=WalkForward(test_size=step, train_size=train))
    return pd.DataFrame([p.weights for p in pred], columns=returns.columns)


def quantlake_loop(returns: pd.DataFrame, value: pd.DataFrame, step: int, train: int, workers: int | None = None,
                   root: Path = ROOT) -> pd.DataFrame:
    from quantlake.alpha.backtest import walk_forward

    try:  # the one params model (params.backtest is the recipe)
        from quantlake.params import parse_params
    except ImportError:  # a baseline revision from before it
        from quantlake.alpha.provenance import backtest_params

        return walk_forward(returns, value, backtest_params(recipe_params(step, train, root))).weights
    params = recipe_params(step, train, root)
    if workers is not None:
        params["backtest"]["workers"] = workers
    return walk_forward(returns, value, parse_params(params).backtest).weights


def child(contender: str, data: Path, step: int, train: int, out: Path, src: Path) -> None:
    import resource

    # common.py put this checkout's src/ first on sys.path: the run must import `src` instead
    sys.path[:] = [str(src)] + [p for p in sys.path if p not in (str(SRC), str(src))]
    returns = pd.read_parquet(data / "returns.parquet")
    value = pd.read_parquet(data / "traded_value.parquet")
    import scipy.cluster.hierarchy  # noqa: F401  (importing a library is not the loop's cost)
    import scipy.spatial.distance  # noqa: F401

    if contender == "skfolio":
        import skfolio.model_selection  # noqa: F401
        import skfolio.optimization  # noqa: F401
    elif contender.startswith("quantlake"):
        import quantlake.alpha.backtest
        import quantlake.alpha.optimize  # noqa: F401  (its scipy/scikit-learn imports, as skfolio's above)

        loaded = Path(quantlake.alpha.backtest.__file__).resolve()
        if not loaded.is_relative_to(src.resolve()):
            raise RuntimeError(f"quantlake was imported from {loaded}, not from {src}")
    start = time.perf_counter()
    if contender == "floor":
        weights = floor_loop(returns, step, train)
    elif contender == "skfolio":
        weights = skfolio_loop(returns, step, train)
    else:
        weights = quantlake_loop(returns, value, step, train, 1 if contender == "quantlake-1" else None, src.parent)
    wall = time.perf_counter() - start
    weights.to_parquet(out)
    rebalances = int(weights["date"].nunique()) if "date" in weights else len(weights)
    print(json.dumps({"wall": wall, "rebalances": rebalances,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


# --------------------------------------------------------------------------- parent


def run_child(contender: str, src: Path, data: Path, args: argparse.Namespace, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--child", contender, "--data", str(data), "--step", str(args.step),
           "--train", str(args.train), "--out", str(out), "--src", str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{contender} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load1"] = load1()
    return result


def baseline_src(rev: str, tmp: Path) -> Path:
    dst = tmp / f"src-{rev}"
    dst.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src", "params.yaml"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    return dst / "src"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--days", type=int, default=1825)
    ap.add_argument("--step", type=int, default=7, help="rebalance every this many days (= test_days)")
    ap.add_argument("--train", type=int, default=365, help="train window in days (backtest.train_days)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-skfolio", action="store_true", help="skfolio takes ~150 s at the default size")
    ap.add_argument("--baseline-rev", help="also run quantlake from this git revision's src/ and compare weights")
    ap.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.data, args.step, args.train, args.out, args.src)
        return 0

    with tempfile.TemporaryDirectory(prefix="ql-bench-wf-") as name:
        tmp = Path(name)
        build_panel(tmp, args.symbols, args.days)
        print_machine()
        print(f"  skfolio: {__import__('skfolio').__version__}")
        print(f"panel: {args.days} days x {args.symbols} symbols (synthetic, no gaps); walk-forward every "
              f"{args.step} days, {args.train}-day train window; 1 BLAS thread, each run in a fresh interpreter")
        runs = {c: (c, SRC) for c in CONTENDERS if not (c == "skfolio" and args.skip_skfolio)}
        if args.baseline_rev:
            runs[f"quantlake @{args.baseline_rev}"] = ("quantlake", baseline_src(args.baseline_rev, tmp))
        results: dict[str, list[dict]] = {label: [] for label in runs}
        for _ in range(args.repeats):
            for label, (contender, src) in runs.items():  # interleaved
                results[label].append(run_child(contender, src, tmp, args, tmp / f"weights {label}.parquet"))
        best = {label: min(r, key=lambda x: x["wall"]) for label, r in results.items()}
        floor = best["floor"]["wall"]
        rows = [[label, b["wall"], b["wall"] / floor, b["rebalances"], b["peak_rss_mib"], f"{b['load1']:.2f}"]
                for label, b in best.items()]
        print_table(["contender", "seconds", "x floor", "rebalances", "peak RSS (MiB)", "load1"], rows,
                    title=f"Walk-forward, {args.symbols} symbols x {args.days} days, every {args.step} days (best of {args.repeats})")
        for label in ("quantlake", "quantlake-1"):
            faster = f"{best['skfolio']['wall'] / best[label]['wall']:.1f}x faster than skfolio (goal >= 10), " if "skfolio" in best else ""
            print(f"{label}: {faster}{best[label]['wall'] / floor:.2f}x the floor (goal <= 3)")
        if args.baseline_rev:
            new = pd.read_parquet(tmp / "weights quantlake.parquet")
            old = pd.read_parquet(tmp / f"weights quantlake @{args.baseline_rev}.parquet")
            same = new.equals(old)
            merged = new.merge(old, on=["date", "symbol"], how="outer", suffixes=("_new", "_old")).fillna(0.0)
            diff = float(np.abs(merged["weight_new"] - merged["weight_old"]).max()) if len(merged) else 0.0
            print(f"weights of quantlake vs quantlake @{args.baseline_rev}: {'identical' if same else 'DIFFERENT'} "
                  f"({len(new)} rows over {new['date'].nunique()} rebalances; largest difference {diff:.3g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
