"""Benchmark (issue 7, item 2): a no-op Data Cycle `dvc repro` against a bare `dvc status`.

Run: ``python benchmarks/bench_noop_repro.py [--symbols 1000] [--repeats 5] [--repo DIR] [--keep]``

Builds a fresh git + DVC repository from this project's files, sized by the sim's extra
symbols to ~``--symbols`` symbols (scanner limit raised to match), runs the Data Cycle once
(`dvc repro report`: discover -> ingest -> repair -> features -> audit -> report; a few minutes
at 1,000 symbols), then, with everything up to date, times best-of-``--repeats`` (interleaved):

    dvc status                  bare status of the whole repository (the reference)
    dvc status --with-deps report   status of the Data Cycle's stages only (the checks a
                                    no-op repro of them makes)
    dvc repro report            the no-op Data Cycle (every stage "didn't change, skipping")
    dvc repro                   the whole pipeline (first repro of the Alpha Cycle excluded:
                                only with --alpha, which runs it once before timing)
    python -c 'import dvc...'   the interpreter + DVC import floor every dvc command pays

Target: ``dvc repro report`` / ``dvc status`` <= 1.3. ``--repo DIR`` reuses a repository a
previous run kept (``--keep``) instead of building one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_of, dvc, load1, make_repo, print_machine, print_table, repo_env, run, verdict  # noqa: E402

GOAL = 1.3


def build(root: Path, symbols: int, alpha: bool) -> tuple[Path, dict, float]:
    repo, env = make_repo(root / "repo", symbols=symbols)
    start = time.perf_counter()
    dvc(["repro", "report"], repo, env)
    if alpha:
        dvc(["repro"], repo, env)
    return repo, env, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--repo", type=Path, help="reuse a repository kept by an earlier run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary repository (its path is printed)")
    ap.add_argument("--alpha", action="store_true", help="also run the Alpha Cycle once, then time a whole-pipeline no-op repro")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="ql-bench-noop-"))
    try:
        if args.repo:
            repo, env, built = args.repo.resolve(), repo_env(args.repo.resolve()), float("nan")
        else:
            repo, env, built = build(tmp, args.symbols, args.alpha)
        print_machine(repo)
        lake = repo / "data" / "lakehouse"
        n_files = len(list(lake.glob("*_1d.parquet")))  # tables (directories of fragments)
        n_staged = sum(1 for p in (repo / "data" / "staging").rglob("*.parquet") if p.is_file())
        n_lake_files = sum(1 for p in lake.rglob("*") if p.is_file())
        status = dvc(["status"], repo, env).stdout
        print(f"repository: {repo} ({n_files} lakehouse tables in {n_lake_files} files, {n_staged} staged parquet files; Data Cycle built in {built:.0f}s)")
        print("dvc status says:", status.strip().splitlines()[0] if status.strip() else "(nothing)")
        check = dvc(["repro", "report"], repo, env)
        text = check.stdout + check.stderr
        if "Running stage" in text:
            raise SystemExit(f"the Data Cycle is not up to date, `dvc repro report` ran a stage:\n{text[-3000:]}")

        contenders = {
            "dvc status": lambda: dvc(["status"], repo, env),
            "dvc status --with-deps report": lambda: dvc(["status", "--with-deps", "report"], repo, env),
            "dvc repro report (no-op)": lambda: dvc(["repro", "report"], repo, env),
            "python -c 'import dvc.cli'": lambda: run([sys.executable, "-c", "import dvc.cli, dvc.repo"], repo, env),
        }
        if args.alpha or (repo / "artifacts" / "backtest" / "metrics.json").exists():
            contenders["dvc repro (whole pipeline, no-op)"] = lambda: dvc(["repro"], repo, env)
        timings = best_of(contenders, args.repeats)
        ref = timings["dvc status"].best
        rows = [
            [name, t.best, t.best / ref, f"{t.load_at_best:.2f}", ", ".join(f"{x:.2f}" for x in t.times)]
            for name, t in timings.items()
        ]
        print_table(
            ["command", "best (s)", "ratio to dvc status", "load1 at best", "all runs (s)"],
            rows,
            title=f"No-op Data Cycle, {n_files} lakehouse files (best of {args.repeats}, interleaved)",
        )
        ratio = timings["dvc repro report (no-op)"].best / ref
        print(f"\nno-op `dvc repro report` / `dvc status` = {ratio:.2f} (goal <= {GOAL}): {verdict(ratio, GOAL)}; load1 now {load1():.2f}")
        if args.keep:
            print(f"kept: {repo}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
