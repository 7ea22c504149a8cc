"""Benchmark (issue 11, item 1): the point-in-time universe on a dates x symbols panel.

Run: ``python benchmarks/bench_universe.py [--symbols 5000] [--days 2500] [--repeats 2]``

Input: a synthetic traded-value panel (log-normal values, each symbol listed and delisted on
random days, 1% scattered missing days), the repository's two scanners (`usdt_liquid`: TRADING,
listed >= 30 days, 30-day median >= 1M, top 100; `usdt_inactive`: halted/delisted).

Contenders (best of N, interleaved):

    rolling median   pandas' 30-day rolling median of the panel alone (the floor: the
                     universe needs at least this)
    universe         `compute_universe`: every rule of both scanners at every date, and the
                     membership intervals
    membership       `membership_matrix` of the intervals back to a dates x symbols mask

Prints the times, the ratio universe / rolling median, the number of intervals and the size
of `universe.parquet`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from common import ROOT, best_of, print_machine, print_table  # noqa: E402
from quantlake.data.discovery import scanner_files, scanner_from_file  # noqa: E402
from quantlake.data.universe import TRADED_VALUE_WINDOW_DAYS, UniverseSpec, compute_universe, membership_matrix, universe_to_parquet_bytes  # noqa: E402


def synthetic_panel(symbols: int, days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    v = rng.lognormal(13.5, 2.0, (days, symbols))
    start = rng.integers(0, days, symbols)
    stop = np.minimum(days, start + rng.integers(60, 3 * days, symbols))
    rows = np.arange(days)[:, None]
    v[(rows < start) | (rows >= stop)] = np.nan
    v[rng.random((days, symbols)) < 0.01] = np.nan
    idx = pd.date_range("2019-01-01", periods=days, freq="D", name="date")
    return pd.DataFrame(v, index=idx, columns=[f"SIM:Q{i:05d}USDT" for i in range(symbols)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=5000)
    ap.add_argument("--days", type=int, default=2500)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print_machine()
    value = synthetic_panel(args.symbols, args.days)
    spec = UniverseSpec(tuple(scanner_from_file(p) for p in scanner_files(ROOT / "configs" / "scanners")))
    universe = compute_universe(value, spec)
    timings = best_of(
        {
            "rolling median": lambda: value.rolling(TRADED_VALUE_WINDOW_DAYS, min_periods=1).median(),
            "universe": lambda: compute_universe(value, spec),
            "membership": lambda: membership_matrix(universe, value.index, list(value.columns)),
        },
        args.repeats,
    )
    floor = timings["rolling median"].best
    print_table(
        ["step", "best (s)", "x rolling median", "load"],
        [[t.name, t.best, t.best / floor, t.load_at_best] for t in timings.values()],
        title=f"{args.symbols:,} symbols x {args.days:,} days, {len(spec.scanners)} scanners, best of {args.repeats}",
    )
    size = len(universe_to_parquet_bytes(universe, spec, value.index[-1].date()))
    print(f"\n{len(universe):,} membership intervals; universe.parquet {size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
