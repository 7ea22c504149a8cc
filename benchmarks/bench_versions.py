"""Benchmark (issue 10): what one daily version adds to the DVC cache.

Run: ``python benchmarks/bench_versions.py [--symbols 77] [--versions 3] [--start 2020-01-01] [--root TREE] [--keep]``

From a fresh git + DVC repository made from this project's files (``--root`` another checkout
of the project, e.g. the old layout's, to measure it the same way), runs the whole pipeline
once and commits it, then makes ``--versions`` consecutive daily versions: ``data.as_of`` + 1
day, ``dvc repro report`` (the Data Cycle), ``dvc repro`` (the Alpha Cycle on top), ``git
commit``. For each version it prints the bytes added to the DVC cache (new objects under
``.dvc/cache``) by (a) the Data Cycle and (b) the whole pipeline, as a share of the lakehouse's
bytes (``data/lakehouse``, each inode once), and the repository's file counts.

Goal (issue 10): (a) <= 3% and (b) <= 10% of the lakehouse per daily version. The first layout
(one file per symbol, one feature file) measured about 190% (issue 10).
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

from common import ROOT, dvc, make_repo, mib, print_machine, print_table, run, verdict  # noqa: E402

DATA_GOAL, WHOLE_GOAL = 0.03, 0.10


def cache_bytes(repo: Path) -> int:
    """Apparent bytes of every object in the DVC cache (what a remote stores and transfers)."""
    cache = repo / ".dvc" / "cache"
    return sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) if cache.exists() else 0


def lakehouse_bytes(repo: Path) -> int:
    lake = repo / "data" / "lakehouse"
    seen, total = set(), 0
    for p in lake.rglob("*"):
        st = p.stat()
        if p.is_file() and st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_size
    return total


def file_count(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def as_of_of(repo: Path) -> dt.date:
    for line in (repo / "params.yaml").read_text().splitlines():
        if line.startswith("  as_of:"):
            return dt.date.fromisoformat(line.split("'")[1])
    raise SystemExit("params.yaml has no data.as_of")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=77)
    ap.add_argument("--versions", type=int, default=3)
    ap.add_argument("--start", default="2020-01-01", help="data.start (the history held)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the project tree to measure (default: this one)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="ql-bench-versions-"))
    try:
        repo, env = make_repo(tmp / "repo", symbols=args.symbols, start=args.start, root=args.root)
        print_machine(repo)
        t0 = time.perf_counter()
        dvc(["repro"], repo, env)
        run(["git", "add", "-A"], repo, env)
        run(["git", "commit", "-qm", "version 0"], repo, env)
        print(f"repository {repo} from {args.root}: first `dvc repro` in {time.perf_counter() - t0:.0f}s; "
              f"lakehouse {mib(lakehouse_bytes(repo)):.1f} MiB, cache {mib(cache_bytes(repo)):.1f} MiB")
        rows, shares = [], []
        day = as_of_of(repo)
        for i in range(1, args.versions + 1):
            day += dt.timedelta(days=1)
            env = {**env, "QUANTLAKE_NOW": f"{(day + dt.timedelta(days=1)).isoformat()}T12:00:00Z"}
            run([sys.executable, "-m", "quantlake.cli", "advance", "--no-repro", "--as-of", day.isoformat()], repo, env)
            c0 = cache_bytes(repo)
            t = time.perf_counter()
            dvc(["repro", "report"], repo, env)
            c1 = cache_bytes(repo)
            dvc(["repro"], repo, env)
            c2 = cache_bytes(repo)
            run(["git", "add", "-A"], repo, env)
            run(["git", "commit", "-qm", f"version {i}: as_of {day}"], repo, env)
            lake = lakehouse_bytes(repo)
            data_share, whole_share = (c1 - c0) / lake, (c2 - c0) / lake
            shares.append((data_share, whole_share))
            rows.append([i, day.isoformat(), f"{mib(lake):.2f}", f"{mib(c1 - c0):.3f}", f"{data_share:.2%}", f"{mib(c2 - c0):.3f}",
                         f"{whole_share:.2%}", f"{time.perf_counter() - t:.0f}"])
        print_table(["version", "as_of", "lakehouse MiB", "Data Cycle +MiB", "share", "whole pipeline +MiB", "share", "seconds"], rows,
                    title=f"Bytes one daily version adds to the DVC cache, {args.symbols} symbols (goal: <= {DATA_GOAL:.0%} / <= {WHOLE_GOAL:.0%})")
        counts = {
            "data/lakehouse": file_count(repo / "data" / "lakehouse"),
            "data/staging": file_count(repo / "data" / "staging"),
            "artifacts/snapshot": file_count(repo / "artifacts" / "snapshot"),
            ".dvc/cache objects": file_count(repo / ".dvc" / "cache"),
        }
        print("file counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        worst = (max(s[0] for s in shares), max(s[1] for s in shares))
        print(f"worst version: Data Cycle {worst[0]:.2%} (goal <= {DATA_GOAL:.0%}: {verdict(worst[0], DATA_GOAL)}), "
              f"whole pipeline {worst[1]:.2%} (goal <= {WHOLE_GOAL:.0%}: {verdict(worst[1], WHOLE_GOAL)})")
        print(f"a year of daily versions at this size: about {mib(365 * sum(s[1] for s in shares) / len(shares) * lakehouse_bytes(repo)) / 1024:.2f} GiB of cache")
        if args.keep:
            print(f"kept: {repo}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
