"""Benchmark: `open_lakehouse(...).closes()` in both layouts vs a bare Parquet read.

Run: ``python benchmarks/bench_api.py [--files 1000] [--days 2000] [--repeats 3]``

Writes ``--files`` bar files (as `bench_returns_matrix.py` does) with a catalog and a
certified list, once as one file per symbol and once as a directory of one fragment per year
under the same name, then times, best of ``--repeats`` (interleaved, page cache warm):

    pq.read_table(path, columns=["timestamp", "close"]) per file    the reference (1.0)
    close_matrix of read_bar_columns (the returns stage's reader)   one file per symbol only
    Lakehouse.closes(), file layout
    Lakehouse.closes(), directory layout
    Lakehouse.closes(start=<last 90 days>), directory layout        row groups pruned

Every `closes()` is checked identical to the reference frame. Target: closes() / read_table
<= 1.5 in the file layout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_returns_matrix import write_lakehouse  # noqa: E402
from common import best_of, load1, mib, print_machine, print_table, tree_bytes, verdict  # noqa: E402

from quantlake.alpha.returns import close_matrix, read_bar_columns  # noqa: E402
from quantlake.api import open_lakehouse  # noqa: E402

GOAL = 1.5


def to_fragments(src: Path, dst: Path) -> None:
    """The same bars as one fragment per calendar year under the file's name."""
    frame = pq.read_table(src).to_pandas()
    dst.mkdir(parents=True)
    years = pd.to_datetime(frame["timestamp"], unit="ms").dt.year
    for year in sorted(years.unique()):
        pq.write_table(pq.read_table(src).take(list((years == year).to_numpy().nonzero()[0])), dst / f"{year}.parquet")


def write_documents(lake: Path, files: dict[str, Path]) -> None:
    symbols = {s: {"file": p.name, "status": "ok"} for s, p in files.items()}
    for name in ("catalog.json", "certified.json"):
        (lake / name).write_text(json.dumps({"schema_version": 1, "as_of": "2099-01-01", "symbols": symbols}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--days", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="ql-bench-api-"))
    try:
        start = time.perf_counter()
        flat, frag = tmp / "flat" / "data" / "lakehouse", tmp / "frag" / "data" / "lakehouse"
        files = write_lakehouse(flat, args.files, args.days)
        write_documents(flat, files)
        for path in files.values():
            to_fragments(path, frag / path.name)
        write_documents(frag, files)
        print_machine(tmp)
        print(
            f"{len(files)} symbols x {args.days} days: file layout {mib(tree_bytes(flat)):.0f} MiB, directory layout "
            f"{mib(tree_bytes(frag)):.0f} MiB in {sum(1 for _ in frag.rglob('*.parquet'))} fragments (ready in {time.perf_counter() - start:.1f}s)"
        )
        lh_flat, lh_frag = open_lakehouse(tmp / "flat"), open_lakehouse(tmp / "frag")
        reference = close_matrix({s: read_bar_columns(p, ("timestamp", "close")) for s, p in files.items()})
        pd.testing.assert_frame_equal(lh_flat.closes(), reference, check_exact=True)
        pd.testing.assert_frame_equal(lh_frag.closes(), reference, check_exact=True)
        recent = reference.index[-90]
        pd.testing.assert_frame_equal(lh_frag.closes(start=recent), reference.loc[recent:].dropna(axis=0, how="all"), check_exact=True)
        print(f"closes: {reference.shape[0]} days x {reference.shape[1]} symbols; identical in both layouts")

        paths = list(files.values())
        contenders = {
            "pq.read_table, 2 columns (reference)": lambda: [pq.read_table(p, columns=["timestamp", "close"]) for p in paths],
            "close_matrix(read_bar_columns)": lambda: close_matrix({s: read_bar_columns(p, ("timestamp", "close")) for s, p in files.items()}),
            "closes(), file layout": lh_flat.closes,
            "closes(), directory layout": lh_frag.closes,
            "closes(start=last 90 days), directory": lambda: lh_frag.closes(start=recent),
        }
        timings = best_of(contenders, args.repeats)
        ref = timings["pq.read_table, 2 columns (reference)"].best
        rows = [[name, t.best, t.best / ref, f"{t.load_at_best:.2f}"] for name, t in timings.items()]
        print_table(["contender", "best (s)", "ratio to read_table", "load1 at best"], rows, title=f"closes() of {len(files)} symbols (best of {args.repeats})")
        ratio = timings["closes(), file layout"].best / ref
        print(f"\ncloses(), file layout / read_table = {ratio:.2f} (goal <= {GOAL}): {verdict(ratio, GOAL)}; load1 now {load1():.2f}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
