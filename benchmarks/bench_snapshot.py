"""Benchmark (issue 7, item 4): snapshot of a 1,000-file lakehouse, time and extra disk.

Run: ``python benchmarks/bench_snapshot.py [--symbols 1000] [--repeats 3] [--repo DIR] [--keep]``

Part 1, the snapshot alone (outside DVC), best of ``--repeats`` against the file-system limits:
`take_snapshot` in process, the `quantlake snapshot` command, `cp -al` (a hard-linked tree: the
floor for linking), `cp -a` (a copy: what a snapshot without links costs) and sha256 of every
file (the verification the snapshot must do). Extra disk = allocated bytes of new inodes.

Part 2, DVC committing the snapshot (`dvc repro -s snapshot`) under each cache type, on
hard-linked clones of one Data-Cycle repository (`dvc checkout --relink` first lays the
existing outputs out as that cache type would have): extra disk of the whole repository
(workspace + .dvc/cache, each inode once) after the first commit, time best of ``--repeats``
forced re-runs, and whether the snapshot's files still share the lakehouse's inodes. Then
the price of links for persisted outputs: `dvc unprotect` of the staging layers, which DVC
does before a persisted stage re-runs under a link cache type.

Variants: copy (the default `reflink,copy`, which is a copy on ext4), hardlink, symlink, and
copy with the snapshot declared `cache: false` (DVC tracks its hash but stores no copy).
``--repo DIR`` reuses a repository whose Data Cycle ran (`bench_noop_repro.py --keep`) and
whose Alpha Cycle did NOT (its cache must not already hold the snapshot); it is never modified.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SRC, best_of, dvc, load1, make_repo, mib, print_machine, print_table, repo_env, run, tree_bytes  # noqa: E402
from quantlake.alpha.snapshot import take_snapshot  # noqa: E402
from quantlake.storage import sha256_file  # noqa: E402

AS_OF = dt.date(2026, 11, 20)  # params.yaml's data.as_of
VARIANTS = {
    "copy (default reflink,copy)": {"type": None, "cache": True},
    "hardlink": {"type": "hardlink", "cache": True},
    "symlink": {"type": "symlink", "cache": True},
    "copy + snapshot `cache: false`": {"type": None, "cache": False},
}


def link_clone(src: Path, dst: Path) -> None:
    """A clone sharing every big file's inode with `src` (no extra disk), with real copies of
    the small files DVC or git rewrite in place, so that `src` is never modified."""
    subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
    for name in (".git", ".dvc/config", "dvc.lock", "dvc.yaml", "params.yaml"):
        target = dst / name
        if target.is_dir():
            shutil.rmtree(target)
            shutil.copytree(src / name, target, symlinks=True)
        elif target.exists():
            target.unlink()
            shutil.copy2(src / name, target)
    shutil.rmtree(dst / ".dvc" / "tmp", ignore_errors=True)
    # the code under test is this checkout's, as in part 1 (not the copy the repository was built with)
    shutil.rmtree(dst / "src")
    shutil.copytree(SRC, dst / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))


def shared_inodes(a_dir: Path, b_dir: Path) -> int:
    """How many files of `b_dir` are the same file (inode, or a symlink's target) as in `a_dir`."""
    same = 0
    for b in b_dir.iterdir():
        a = a_dir / b.name
        if a.exists() and os.stat(a).st_ino == os.stat(b).st_ino:  # stat follows symlinks
            same += 1
    return same


def part1(repo: Path, env: dict, tmp: Path, repeats: int) -> None:
    lake = repo / "data" / "lakehouse"
    bars = sorted(lake.glob("*_1d.parquet"))
    out = tmp / "snap"

    def clear() -> None:
        for p in (out, tmp / "cp_al", tmp / "cp_a"):
            shutil.rmtree(p, ignore_errors=True)

    contenders = {
        "take_snapshot (in process)": lambda: take_snapshot(lake, out, AS_OF),
        "`quantlake snapshot` command": lambda: run(["quantlake", "snapshot", "--lakehouse", lake, "--out", out], repo, env),
        "cp -al lakehouse (link floor)": lambda: subprocess.run(["cp", "-al", str(lake), str(tmp / "cp_al")], check=True),
        "cp -a lakehouse (a copy)": lambda: subprocess.run(["cp", "-a", str(lake), str(tmp / "cp_a")], check=True),
        "sha256 of every bar file": lambda: [sha256_file(p) for p in bars],
    }
    timings = best_of(contenders, repeats, setup=clear)
    # extra disk of each contender's result (new inodes only)
    clear()
    base = tree_bytes(lake)
    extra = {}
    take_snapshot(lake, out, AS_OF)
    extra["take_snapshot (in process)"] = tree_bytes(lake, out) - base
    extra["`quantlake snapshot` command"] = extra["take_snapshot (in process)"]
    subprocess.run(["cp", "-al", str(lake), str(tmp / "cp_al")], check=True)
    extra["cp -al lakehouse (link floor)"] = tree_bytes(lake, tmp / "cp_al") - base
    subprocess.run(["cp", "-a", str(lake), str(tmp / "cp_a")], check=True)
    extra["cp -a lakehouse (a copy)"] = tree_bytes(lake, tmp / "cp_a") - base
    linked = shared_inodes(lake, out / "bars") + shared_inodes(lake / "features", out / "features")
    clear()
    ref = timings["cp -al lakehouse (link floor)"].best
    rows = [
        [name, t.best, t.best / ref, mib(extra[name]) if name in extra else float("nan"), f"{t.load_at_best:.2f}"]
        for name, t in timings.items()
    ]
    print_table(
        ["contender", "best (s)", "ratio to cp -al", "extra disk (MiB)", "load1 at best"],
        rows,
        title=f"Snapshot of {len(bars)} lakehouse files ({mib(base):.0f} MiB incl. features), outside DVC (best of {repeats})",
    )
    print(f"files of the snapshot that are the lakehouse's own inodes: {linked} of {len(bars) + 1}")


def part2(base_repo: Path, tmp: Path, repeats: int) -> None:
    rows, unprotect_rows = [], []
    for name, variant in VARIANTS.items():
        repo = tmp / f"v{len(rows)}"
        link_clone(base_repo, repo)
        env = repo_env(repo)
        if variant["type"]:
            dvc(["config", "cache.type", variant["type"]], repo, env)
        if not variant["cache"]:
            text = (repo / "dvc.yaml").read_text()
            old = "    outs:\n      - artifacts/snapshot\n"
            if old not in text:
                raise SystemExit("dvc.yaml's snapshot stage no longer declares `outs: - artifacts/snapshot`")
            (repo / "dvc.yaml").write_text(text.replace(old, "    outs:\n      - artifacts/snapshot:\n          cache: false\n"))
        relink = float("nan")  # the clone already has the copy layout
        if variant["type"]:
            start = time.perf_counter()
            dvc(["checkout", "--relink", "--with-deps", "report"], repo, env)
            relink = time.perf_counter() - start
        dvc(["status"], repo, env)  # fill DVC's state for this path (untimed)
        before = tree_bytes(repo)
        start = time.perf_counter()
        dvc(["repro", "-s", "snapshot"], repo, env)
        first = time.perf_counter() - start
        extra = tree_bytes(repo) - before
        lake, snap = repo / "data" / "lakehouse", repo / "artifacts" / "snapshot"
        linked = shared_inodes(lake, snap / "bars") + shared_inodes(lake / "features", snap / "features")
        n = len(list(lake.glob("*_1d.parquet"))) + 1
        forced = best_of({"repro": lambda: dvc(["repro", "-s", "-f", "snapshot"], repo, env)}, repeats)["repro"]
        rows.append([name, first, forced.best, mib(extra), f"{linked} of {n}", relink, f"{forced.load_at_best:.2f}"])

        # the price of links for persisted outputs: DVC copies them back before their stage runs
        staging = ["data/staging/bars", "data/staging/features"]
        before = tree_bytes(repo)
        start = time.perf_counter()
        dvc(["unprotect", *staging], repo, env)
        unprotect = time.perf_counter() - start
        unprotect_rows.append([name, unprotect, mib(tree_bytes(repo) - before), f"{load1():.2f}"])
        shutil.rmtree(repo, ignore_errors=True)
    print_table(
        ["cache type", "dvc repro -s snapshot, first (s)", "forced re-run, best (s)", "extra disk (MiB)",
         "snapshot files sharing the lakehouse inode", "dvc checkout --relink (s)", "load1"],
        rows,
        title=f"DVC committing the snapshot (first run: extra disk of workspace + cache; re-runs best of {repeats})",
    )
    print_table(
        ["cache type", "dvc unprotect staging/bars + features (s)", "extra disk (MiB)", "load1"],
        unprotect_rows,
        title="Persisted outputs under each cache type: what DVC does before `ingest`/`features` re-run",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--repo", type=Path, help="a repository whose Data Cycle (only) ran; it is not modified")
    ap.add_argument("--keep", action="store_true", help="keep the built repository (its path is printed)")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="ql-bench-snapshot-"))
    try:
        if args.repo:
            base = args.repo.resolve()
        else:
            base, env = make_repo(tmp / "repo", symbols=args.symbols)
            dvc(["repro", "report"], base, env)
        if (base / "artifacts" / "snapshot").exists():
            raise SystemExit(f"{base} already has a snapshot: give a repository where only the Data Cycle ran")
        print_machine(base)
        part1(base, {**repo_env(base), "PYTHONPATH": str(SRC)}, tmp, args.repeats)
        part2(base, tmp, args.repeats)
        if args.keep and not args.repo:
            print(f"kept: {base}")
        return 0
    finally:
        if args.keep and not args.repo:
            for p in tmp.iterdir():
                if p.name != "repo":
                    shutil.rmtree(p, ignore_errors=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
