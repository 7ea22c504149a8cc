"""Benchmark (issue 7, item 7): the whole pipeline as the universe grows (sim), stage by stage.

Run: ``python benchmarks/bench_scale.py [--symbols 250,1000,5000] [--skip sweep] [--exp] [--push] [--keep]``
(with ``--skip sweep``: about 2.5 min at 1,000 symbols and 9 min at 5,000 on 2 shared cores,
plus about 2 min per size for the no-op figures; the sweep stage, a grid of full backtests,
took 14 min alone at 1,000 on older code).

For each universe size N: a fresh git + DVC repository from this project's files, sized by
`data.sim.extra_symbols` (scanner limit N), then every stage of dvc.yaml in order, each as
its own `dvc repro -s <stage>` (so its time includes DVC's own work: hashing and caching its
outputs), recording wall time and peak RSS (the stage command's or DVC's, whichever is
higher). Then, on the finished repository: files and bytes in the workspace and the cache,
a no-op `dvc repro` against `dvc status`, and optionally (``--push``) a first `dvc push` to a
local directory remote (what an S3 remote would receive: object count and bytes) and
(``--exp``) one alpha-only experiment, `dvc exp run -S optimization.method=min_variance`
(the unit of work a DVC queue worker runs).

The growth exponent of a stage is the slope of log(time) against log(N) between the two
largest sizes: 1 = linear in the universe, 2 = quadratic. Stages whose time does not grow
(< 0.3) are dominated by fixed costs (interpreter, imports, DVC). On shared cores the wall
time also grows with the other jobs' load, so each stage's CPU seconds (user + system of DVC
and the stage command, from `wait4`) and their exponent are reported too.

Measured 2026-12-02, third session of issue 14 (`--symbols 1000,5000 --skip sweep`, load 2.5-5.8:
two other jobs shared the 2 cores), every stage on both cores (`data.processes`, `backtest.workers`):

| stage      | 1,000 sym (s) | 5,000 sym (s) | growth exponent | CPU exponent | peak RSS at 5,000 (MiB) |
|------------|---------------|---------------|-----------------|--------------|-------------------------|
| discover   | 6.0           | 13.4          | 0.49            | 0.59         | 224                     |
| ingest     | 18.4          | 81.7          | 0.93            | 0.92         | 603                     |
| repair     | 6.5           | 21.8          | 0.76            | 0.72         | 297                     |
| features   | 28.1          | 135.1         | 0.98            | 0.99         | 456                     |
| audit      | 17.4          | 88.2          | 1.01            | 1.04         | 1,420                   |
| report     | 5.1           | 19.6          | 0.84            | 0.86         | 195                     |
| snapshot   | 10.9          | 51.1          | 0.96            | 0.98         | 250                     |
| returns    | 4.2           | 13.8          | 0.74            | 0.74         | 809                     |
| select     | 4.3           | 10.7          | 0.57            | 0.62         | 1,004                   |
| synthesize | 3.5           | 6.5           | 0.39            | 0.52         | 866                     |
| optimize   | 4.3           | 7.1           | 0.31            | 0.40         | 822                     |
| backtest   | 30.2          | 60.3          | 0.43            | 0.59         | 1,476                   |
| total      | 138.8         | 509.3         | 0.81            | 0.85         | 1,476                   |
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402

from common import best_of, dvc, load1, make_repo, mib, print_machine, print_table, run, run_measured, run_measured_cpu, tree_bytes  # noqa: E402


def stage_names(repo: Path, skip: tuple[str, ...] = ()) -> list[str]:
    names = list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    unknown = sorted(set(skip) - set(names))
    if unknown:
        raise SystemExit(f"--skip: no stage(s) {unknown} in dvc.yaml (stages: {names})")
    return [s for s in names if s not in skip]


def count_files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def measure(n: int, root: Path, args) -> dict:
    print(f"\n=== {n} symbols (load1 {load1():.2f})", flush=True)
    repo, env = make_repo(root / f"n{n}", symbols=n)
    result = {"n": n, "stages": {}}
    stages = stage_names(repo, args.skip)
    for stage in stages:
        seconds, rss, cpu, text = run_measured_cpu([sys.executable, "-m", "dvc", "repro", "-s", stage], repo, env)
        if f"Running stage '{stage}'" not in text:
            raise RuntimeError(f"`dvc repro -s {stage}` did not run the stage:\n{text[-2000:]}")
        result["stages"][stage] = (seconds, rss, load1(), cpu)
        print(f"  {stage:<11s} {seconds:8.1f} s  cpu {cpu:8.1f} s  peak RSS {rss:7.0f} MiB  load1 {load1():.2f}", flush=True)
    lake = repo / "data" / "lakehouse"
    result["lakehouse_files"] = len(list(lake.glob("*_1d.parquet")))
    result["workspace_mib"] = mib(tree_bytes(repo / "data", repo / "artifacts"))
    result["cache_mib"] = mib(tree_bytes(repo / ".dvc" / "cache"))
    result["cache_objects"] = count_files(repo / ".dvc" / "cache" / "files")
    result["features_mib"] = mib(tree_bytes(lake / "features"))
    targets = stages if args.skip else []  # a skipped stage is neither run nor checked
    noop = best_of({"status": lambda: dvc(["status", *targets], repo, env), "repro": lambda: dvc(["repro", *targets], repo, env)}, 3)
    result["status_s"], result["noop_repro_s"] = noop["status"].best, noop["repro"].best
    if args.push:
        remote = root / f"remote{n}"
        dvc(["remote", "add", "-d", "bench", str(remote)], repo, env)
        seconds, _, _ = run_measured([sys.executable, "-m", "dvc", "push"], repo, env)
        result["push_s"], result["push_objects"], result["push_mib"] = seconds, count_files(remote), mib(tree_bytes(remote))
        shutil.rmtree(remote, ignore_errors=True)
    if args.exp:
        run(["git", "add", "-A"], repo, env)
        run(["git", "commit", "-qm", "pipeline"], repo, env)
        seconds, rss, text = run_measured(
            [sys.executable, "-m", "dvc", "exp", "run", "-S", "optimization.method=min_variance"], repo, env
        )
        if "Running stage 'backtest'" not in text or "Running stage 'ingest'" in text:
            raise RuntimeError(f"the experiment did not re-run exactly the alpha stages:\n{text[-2000:]}")
        result["exp_s"], result["exp_rss"] = seconds, rss
    if not args.keep:
        shutil.rmtree(repo, ignore_errors=True)
    else:
        print(f"  kept: {repo}")
    return result


def exponent(t1: float, t2: float, n1: int, n2: int) -> float:
    return math.log(t2 / t1) / math.log(n2 / n1) if t1 > 0 and t2 > 0 and n2 != n1 else float("nan")


def report(results: list[dict]) -> None:
    sizes = [r["n"] for r in results]
    stages = list(results[0]["stages"])
    rows = []

    def slope(values: list[float]) -> float:
        return exponent(values[-2], values[-1], sizes[-2], sizes[-1]) if len(results) > 1 else float("nan")

    for stage in stages:
        times = [r["stages"][stage][0] for r in results]
        cpus = [r["stages"][stage][3] for r in results]
        rows.append([stage, *times, slope(times), *cpus, slope(cpus), results[-1]["stages"][stage][1],
                     "/".join(f"{r['stages'][stage][2]:.1f}" for r in results)])
    totals = [sum(r["stages"][s][0] for s in stages) for r in results]
    cpu_totals = [sum(r["stages"][s][3] for s in stages) for r in results]
    rows.append(["total", *totals, slope(totals), *cpu_totals, slope(cpu_totals),
                 max(results[-1]["stages"][s][1] for s in stages), ""])
    print_table(
        ["stage", *[f"{n:,} sym (s)" for n in sizes], "growth exponent", *[f"{n:,} sym CPU (s)" for n in sizes],
         "CPU growth exponent", f"peak RSS at {sizes[-1]:,} (MiB)", "load1 at the end"],
        rows,
        title="Each stage as `dvc repro -s <stage>` (wall and CPU time, DVC's hashing and caching included)",
    )
    repo_rows = []
    for r in results:
        repo_rows.append([
            r["n"], r["lakehouse_files"], r["workspace_mib"], r["features_mib"], r["cache_mib"], r["cache_objects"],
            r["status_s"], r["noop_repro_s"], r["noop_repro_s"] / r["status_s"],
            r.get("push_s", float("nan")), r.get("push_objects", float("nan")), r.get("exp_s", float("nan")),
        ])
    print_table(
        ["symbols", "lakehouse files", "workspace (MiB)", "lakehouse features (MiB)", "cache (MiB)", "cache objects",
         "dvc status (s)", "no-op dvc repro (s)", "ratio", "first dvc push (s)", "pushed objects", "alpha experiment (s)"],
        repo_rows,
        title="The repository as it grows (no-op figures best of 3)",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", default="250,1000,5000", help="comma-separated universe sizes")
    ap.add_argument("--exp", action="store_true", help="also time one alpha-only `dvc exp run` per size")
    ap.add_argument("--push", action="store_true", help="also time a first `dvc push` to a local remote per size")
    ap.add_argument("--keep", action="store_true", help="keep the repositories (paths printed)")
    ap.add_argument("--skip", default="", help="comma-separated stages not to run (e.g. sweep: a grid of backtests)")
    args = ap.parse_args(argv)
    args.skip = tuple(s for s in args.skip.split(",") if s)
    sizes = sorted(int(s) for s in args.symbols.split(","))

    root = Path(tempfile.mkdtemp(prefix="ql-bench-scale-"))
    try:
        print_machine(root)
        results = []
        for n in sizes:
            results.append(measure(n, root, args))
            report(results)  # the table so far, in case a larger size is interrupted
        print(f"\nload1 now {load1():.2f}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
