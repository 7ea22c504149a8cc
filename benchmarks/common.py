"""Shared helpers of the benchmarks: the machine, best-of-N timing, tables, temporary DVC repos.

Ratios, not absolute times, are the targets (the machines are shared and noisy): every
benchmark times the contender and its reference on the same machine in the same run, takes
the best of N runs of each, and prints the 1-minute load average next to the figures.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

# What `tests/test_dvc_pipeline.py` copies into a fresh repository.
PROJECT_FILES = ["pyproject.toml", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "configs", "src", ".dvc/config", ".dvc/.gitignore"]
CLI_NOW = "2026-11-26T12:00:00Z"  # QUANTLAKE_NOW: the CLI clock, after params.yaml's as_of
# Candidates discovery lists: every USDT pair of the sim but the stablecoins (86 base pairs,
# trading, halted or delisted) plus every extra pair (issue 11: the scanners' time-varying
# rules now apply per day in the universe, not to the candidate list).
SIM_BASE_CANDIDATES = 86
SIM_EXTRA_PICKED = 1.0


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", "?")
    except Exception:  # noqa: BLE001 - a missing library is reported, not fatal
        return "absent"


def _filesystem(path: Path) -> str:
    proc = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    return lines[-1].split()[1] if proc.returncode == 0 and len(lines) > 1 else "?"


def machine(tmp: Path | None = None) -> dict[str, str]:
    """The facts a reader needs to weigh the figures (versions, cores, RAM, load, filesystem)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "cpu": _cpu_model(),
        "cores": f"{usable} usable of {os.cpu_count()}",
        "ram": f"{_ram_gib():.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "pandas": _version("pandas"),
        "pyarrow": _version("pyarrow"),
        "dvc": _version("dvc"),
        "load (1/5/15 min)": "/".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if tmp is not None:
        info["filesystem of the temp dir"] = _filesystem(tmp)
    return info


def print_machine(tmp: Path | None = None) -> None:
    print("machine:")
    for k, v in machine(tmp).items():
        print(f"  {k}: {v}")


def load1() -> float:
    return os.getloadavg()[0]


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Best-of-N wall time of one contender, with every run and the load at the best one."""

    name: str
    times: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def load_at_best(self) -> float:
        return self.loads[self.times.index(self.best)]

    def describe(self) -> str:
        return f"best {self.best:.3f}s of {len(self.times)} ({', '.join(f'{t:.3f}' for t in self.times)})"


def time_once(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def best_of(contenders: dict[str, Callable[[], object]], repeats: int, setup: Callable[[], None] | None = None) -> dict[str, Timing]:
    """Best-of-`repeats` of each contender, interleaved (A B A B ...) so that a burst of load
    from other jobs hits both sides rather than one."""
    timings = {name: Timing(name) for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            if setup is not None:
                setup()
            elapsed, _ = time_once(fn)
            timings[name].times.append(elapsed)
            timings[name].loads.append(load1())
    return timings


# --------------------------------------------------------------------------- tables


def fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> str:
    """A Markdown table (what the README holds); returns the text it printed."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    lines = []
    if title:
        lines.append(f"\n{title}\n")
    lines.append("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def verdict(ratio: float, goal: float) -> str:
    return "goal met" if ratio <= goal else "goal MISSED"


# --------------------------------------------------------------------------- disk


def tree_bytes(*paths: Path) -> int:
    """Allocated bytes under `paths`, each inode counted once (so hard links are not double-counted)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in paths:
        root = Path(root)
        if not root.exists():
            continue
        for p in [root, *root.rglob("*")]:
            st = p.lstat()
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
    return total


def mib(n: float) -> float:
    return n / 2**20


# --------------------------------------------------------------------------- temporary DVC repos


def sim_extra_symbols(symbols: int) -> int:
    """`data.sim.extra_symbols` for the scanners to find at least `symbols` candidates."""
    return max(0, math.ceil((symbols - SIM_BASE_CANDIDATES) / SIM_EXTRA_PICKED * 1.03))


def repo_env(repo: Path) -> dict[str, str]:
    """The environment the repository's `quantlake` and `dvc` commands run in.

    PYTHONPATH points at the repository's own copy of `src/`, so a run is not disturbed by
    edits to the working tree it was copied from.
    """
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo / "src"),
        "QUANTLAKE_NOW": CLI_NOW,
        "GIT_AUTHOR_NAME": "quantlake-bench",
        "GIT_AUTHOR_EMAIL": "bench@quantlake.invalid",
        "GIT_COMMITTER_NAME": "quantlake-bench",
        "GIT_COMMITTER_EMAIL": "bench@quantlake.invalid",
        "DVC_NO_ANALYTICS": "1",
    }


def run(cmd: Sequence[object], cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dvc(args: Sequence[object], repo: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], repo, env, check)


def make_repo(dst: Path, *, symbols: int, start: str = "2020-01-01", extra_params: dict[str, str] | None = None, root: Path = ROOT) -> tuple[Path, dict[str, str]]:
    """A fresh git + DVC repository made from this project's files, sized to ~`symbols` symbols.

    `data.start` sets the history, `data.sim.extra_symbols` adds synthetic pairs, and the
    scanners' `limit` (in `configs/scanners/_base.yaml`) is raised so they keep them all.
    `extra_params` replaces exact `old: new` strings of params.yaml. `root` is the project tree
    to copy (another checkout, e.g. to measure an older version of the code).
    """
    dst = Path(dst)
    dst.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = Path(root) / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    params = dst / "params.yaml"
    text = params.read_text()
    replacements = {
        "start: '2020-01-01'": f"start: '{start}'",
        "extra_symbols: 0 ": f"extra_symbols: {sim_extra_symbols(symbols)} ",
        **(extra_params or {}),
    }
    for old, new in replacements.items():
        if old not in text:
            raise RuntimeError(f"params.yaml has no {old!r} to replace (did its layout change?)")
        text = text.replace(old, new)
    params.write_text(text)
    base = dst / "configs" / "scanners" / "_base.yaml"
    base.write_text(base.read_text().replace("limit: 100", f"limit: {symbols}"))
    env = repo_env(dst)
    run(["git", "init", "-q", "-b", "main"], dst, env)
    run(["git", "add", "-A"], dst, env)
    run(["git", "commit", "-qm", "init"], dst, env)
    return dst, env


def peak_rss_of(code: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run Python `code` in a fresh interpreter; return (its peak RSS in MiB, its stdout)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import resource, sys\n" + code + "\nsys.stdout.flush()\n"
         "print('__MAXRSS__', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
        capture_output=True, text=True, env=env or {**os.environ, "PYTHONPATH": str(SRC)},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    rss_kib = int(lines[-1].split()[1])
    return rss_kib / 1024, "\n".join(lines[:-1])


def run_measured(cmd: Sequence[object], cwd: Path, env: dict[str, str], check: bool = True) -> tuple[float, float, str]:
    """Run `cmd`; return (wall seconds, peak RSS in MiB of it and every descendant it waited for, output).

    `os.wait4` reports the child's own peak RSS or its largest reaped descendant's, whichever
    is higher: for `dvc repro`, the stage command's memory is included.
    """
    elapsed, rss, _, text = run_measured_cpu(cmd, cwd, env, check)
    return elapsed, rss, text


def run_measured_cpu(cmd: Sequence[object], cwd: Path, env: dict[str, str], check: bool = True) -> tuple[float, float, float, str]:
    """`run_measured` plus the CPU seconds (user + system) of `cmd` and every descendant it
    waited for: on shared cores the wall time grows with the other jobs' load, the CPU time
    much less, so growth exponents are given on both."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{text[-4000:]}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, text
