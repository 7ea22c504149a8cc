"""Benchmark (issue 7, item 3): the returns matrix from lakehouse files vs a bare Parquet read.

Run: ``python benchmarks/bench_returns_matrix.py [--files 1000] [--days 3000] [--repeats 5] [--dir DIR] [--layout fragments|file]``

Writes ``--files`` bar tables of ``--days`` days each the way the lakehouse stores them
(``--layout fragments``, the default: a directory of yearly fragments per table, see
`quantlake.layer`; ``file``: the first layout, one file per table) (contract schema, deterministic Snappy Parquet; seeded random walks, listing dates staggered
over 60 days and 3 missing days per file, so the panel has real alignment work), then times,
best of ``--repeats`` (interleaved, files in the page cache after the first round):

    pq.read_table(path, columns=["timestamp", "close"])   per file: the reference (1.0)
    read the files' bytes                                   the physical floor (page cache)
    pq.ParquetFile(path).read(columns=[...])                pyarrow without its dataset layer
    returns_matrix(read_bars(...))                          quantlake in memory: whole DataFrames
                                                            read as `Snapshot.bars()` does
    returns_from_files(files)                               quantlake's file path (2 columns)
    panels_from_files(files)                                what the `returns` stage needs: returns
                                                            and traded value (3 columns), one read

Every quantlake result is checked to be identical (exact floats, index, columns) to
`returns_matrix` on the DataFrames. Target: returns_from_files / read_table <= 1.5.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from common import best_of, load1, mib, print_machine, print_table, tree_bytes, verdict  # noqa: E402
from quantlake.alpha import returns as returns_module  # noqa: E402
from quantlake.contracts import DAY_MS, SymbolId, date_to_ms  # noqa: E402
from quantlake.data.staging import bars_layer  # noqa: E402
from quantlake.layer import fragment_files  # noqa: E402
from quantlake.storage import atomic_write_bars, read_ohlcv as read_bars  # noqa: E402

GOAL = 1.5
FIRST_DAY = dt.date(2017, 1, 1)


def synthetic_bars(rng: np.random.Generator, days: int, offset: int) -> pd.DataFrame:
    """Contract-valid daily bars: a fat-tailed random walk, 3 missing days."""
    day0 = date_to_ms(FIRST_DAY) + offset * DAY_MS
    ts = day0 + np.arange(days, dtype="int64") * DAY_MS
    logret = rng.standard_t(4, days) * 0.03
    close = 10.0 ** rng.uniform(-3, 3) * np.exp(np.cumsum(logret))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, days)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, days)))
    volume = np.exp(rng.normal(12, 1, days))
    keep = np.ones(days, dtype=bool)
    keep[rng.choice(np.arange(1, days - 1), 3, replace=False)] = False
    frame = pd.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume})
    return frame[keep].reset_index(drop=True)


def write_lakehouse(folder: Path, n_files: int, days: int, seed: int = 7, layout: str = "fragments") -> dict[str, Path]:
    """{symbol id: path} of `n_files` bar tables written the way the lakehouse writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(n_files):
        rng = np.random.default_rng([seed, i])
        sid = SymbolId.of("SIM", f"Q{i:05d}USDT")
        path = folder / sid.filename
        if not path.exists():
            bars = synthetic_bars(rng, days, int(rng.integers(0, 60)))
            if layout == "fragments":
                bars_layer(folder).write(sid.filename, bars)
            else:
                atomic_write_bars(path, bars)
        files[str(sid)] = path
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--days", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", type=Path, help="keep the bar files here (reused by later runs) instead of a temp folder")
    ap.add_argument("--layout", choices=("fragments", "file"), default="fragments", help="yearly fragments (today's lakehouse) or one file per table (the first layout)")
    args = ap.parse_args(argv)

    tmp = None if args.dir else Path(tempfile.mkdtemp(prefix="ql-bench-returns-"))
    folder = args.dir or tmp / "lakehouse"
    try:
        start = time.perf_counter()
        files = write_lakehouse(folder, args.files, args.days, layout=args.layout)
        written = time.perf_counter() - start
        paths = list(files.values())
        print_machine(folder)
        print(f"{len(files)} tables ({args.layout}) x {args.days} days in {folder} ({mib(tree_bytes(folder)):.0f} MiB; ready in {written:.1f}s)")

        columns = ["timestamp", "close"]
        contenders = {
            "pq.read_table, 2 columns (reference)": lambda: [pq.read_table(p, columns=columns) for p in paths],
            "read the files' bytes (floor)": lambda: [f.read_bytes() for p in paths for f in fragment_files(p)],
            "pq.ParquetFile.read, 2 columns": lambda: [pq.ParquetFile(f).read(columns=columns) for p in paths for f in fragment_files(p)],
            "quantlake returns_matrix(read_bars ...)": lambda: returns_module.returns_matrix({s: read_bars(p) for s, p in files.items()}),
        }
        if hasattr(returns_module, "returns_from_files"):  # absent before the speed-up (kept runnable on old code)
            contenders["quantlake returns_from_files (2 columns)"] = lambda: returns_module.returns_from_files(files)
            contenders["quantlake panels_from_files (3 columns, 2 panels)"] = lambda: returns_module.panels_from_files(files)
        # warm the page cache and check the results before timing
        expected = returns_module.returns_matrix({s: read_bars(p) for s, p in files.items()})
        if hasattr(returns_module, "returns_from_files"):
            pd.testing.assert_frame_equal(returns_module.returns_from_files(files), expected, check_exact=True)
            returns, value = returns_module.panels_from_files(files)
            pd.testing.assert_frame_equal(returns, expected, check_exact=True)
            pd.testing.assert_frame_equal(value, returns_module.traded_value_matrix({s: read_bars(p) for s, p in files.items()}), check_exact=True)
        print(f"panel: {expected.shape[0]} days x {expected.shape[1]} symbols; every quantlake path gives identical frames")

        timings = best_of(contenders, args.repeats)
        ref = timings["pq.read_table, 2 columns (reference)"].best
        rows = [
            [name, t.best, t.best / ref, f"{t.load_at_best:.2f}", ", ".join(f"{x:.2f}" for x in t.times)]
            for name, t in timings.items()
        ]
        print_table(
            ["contender", "best (s)", "ratio to read_table", "load1 at best", "all runs (s)"],
            rows,
            title=f"Returns matrix from {len(files)} files x {args.days} days (best of {args.repeats}, interleaved)",
        )
        main_path = "quantlake returns_from_files (2 columns)" if "quantlake returns_from_files (2 columns)" in timings else "quantlake returns_matrix(read_bars ...)"
        ratio = timings[main_path].best / ref
        print(f"\n{main_path} / read_table = {ratio:.2f} (goal <= {GOAL}): {verdict(ratio, GOAL)}; load1 now {load1():.2f}")
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
