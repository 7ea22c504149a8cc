"""Benchmark (issue 15): a parameter sweep serially, on 1 and 2 local Dask workers, and as
the same grid of DVC experiments (`dvc exp run --queue` + `dvc queue start -j 2`).

Run: ``python benchmarks/bench_sweep.py [--symbols 150] [--years 4] [--points 32] [--skip-queue]``

Input: a fresh repository made from this project's files (`common.make_repo`) with ~`--symbols`
sim pairs over `--years` years ending at params.yaml's `data.as_of`, weekly rebalancing
(`backtest.step_days = test_days = 7`), run up to the `returns` stage once. The grid is the
first `--points` points of optimization.method x selection.top_n x optimization.max_weight.

Contenders (wall time of the whole command, in the repository):

    serial      `quantlake sweep` with sweep.scheduler: serial (one process)
    dask x1     sweep.scheduler: local, sweep.workers: 1 (a LocalCluster of one worker process)
    dask x2     sweep.scheduler: local, sweep.workers: 2
    dvc queue   one `dvc exp run --queue -S ...` per point, then `dvc queue start -j 2`, until
                every experiment has finished (each runs in its own workspace copy)

The floor is the serial time divided by the cores: the least wall time the same work can take.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402

from common import dvc, make_repo, print_machine, print_table, run, run_measured  # noqa: E402

GRID = {
    "optimization.method": ["hrp", "inverse_vol", "min_variance", "equal_weight"],
    "selection.top_n": [1, 2, 3, 4],
    "optimization.max_weight": [0.25, 0.5],
}


def grid(points: int) -> dict:
    """The first `points` combinations, as a grid DVC and the sweep both accept."""
    combos = list(itertools.product(*GRID.values()))[:points]
    return {k: sorted({c[i] for c in combos}, key=str) for i, k in enumerate(GRID)}


def set_params(repo: Path, **sections) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in sections.items():
        section, key = dotted.split("__")
        params.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=150)
    ap.add_argument("--years", type=int, default=4)
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--skip-queue", action="store_true", help="leave out the DVC queue contender")
    args = ap.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory() as tmp:
        as_of = dt.date.fromisoformat(yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["data"]["as_of"])
        start = as_of.replace(year=as_of.year - args.years) + dt.timedelta(days=1)
        repo, env = make_repo(Path(tmp) / "repo", symbols=args.symbols, start=start.isoformat())
        g = grid(args.points)
        n_points = len(list(itertools.product(*g.values())))
        set_params(repo, backtest__step_days=7, backtest__test_days=7, sweep__grid=g)
        run(["git", "commit", "-qam", "weekly sweep grid"], repo, env)
        t0 = time.perf_counter()
        dvc(["repro", "returns"], repo, env)
        print(f"data cycle + snapshot + returns: {time.perf_counter() - t0:.0f} s; grid of {n_points} points")

        rows, seconds = [], {}
        for name, scheduler, workers in (("serial", "serial", 0), ("dask x1", "local", 1), ("dask x2", "local", 2)):
            set_params(repo, sweep__scheduler=scheduler, sweep__workers=workers)
            wall, rss, _ = run_measured([Path(sys.executable).parent / "quantlake", "sweep"], repo, env)
            seconds[name] = wall
            rows.append((name, f"{wall:.1f}", f"{rss:.0f}"))
            results = json.loads((repo / "artifacts/sweep/summary.json").read_text())
            print(f"{name}: {wall:.1f} s", flush=True)
            assert results["trials"] == n_points and results["failed"] == 0, results
        if not args.skip_queue:
            run(["git", "add", "-A"], repo, env)
            run(["git", "commit", "-qm", "baseline", "--allow-empty"], repo, env)
            dvc(["repro", "backtest"], repo, env)
            run(["git", "add", "-A"], repo, env)
            run(["git", "commit", "-qm", "baseline run", "--allow-empty"], repo, env)
            t0 = time.perf_counter()
            for combo in itertools.product(*g.values()):
                sets = [f"{k}={v}" for k, v in zip(g, combo)]
                dvc(["exp", "run", "--queue", *itertools.chain.from_iterable(("-S", s) for s in sets)], repo, env)
            dvc(["queue", "start", "-j", "2"], repo, env)
            while True:
                status = dvc(["queue", "status"], repo, env, check=False).stdout
                if "Queued" not in status and "Running" not in status:
                    break
                time.sleep(5)
            seconds["dvc queue -j 2"] = time.perf_counter() - t0
            rows.append(("dvc queue -j 2", f"{seconds['dvc queue -j 2']:.1f}", "-"))
            failed = status.count("Failed")
            if failed:
                print(f"warning: {failed} queued experiments failed")
        floor = seconds["serial"] / 2
        rows.append(("floor (serial / 2 cores)", f"{floor:.1f}", "-"))
        print_table(["contender", "wall s", "peak RSS MiB"], rows,
                    title=f"sweep of {n_points} points, {args.symbols} symbols x {args.years} years, weekly")
        print(f"2 local workers vs serial: {seconds['serial'] / seconds['dask x2']:.2f}x (goal >= 1.8x)")
        if "dvc queue -j 2" in seconds:
            print(f"dask x2 vs dvc queue -j 2: {seconds['dvc queue -j 2'] / seconds['dask x2']:.2f}x faster (goal >= 5x)")


if __name__ == "__main__":
    main()
