"""Running a sweep's points: serially, on a local Dask cluster, or on a running one.

Every point reads the same immutable inputs: the returns panels and the snapshot, named by
path AND content hash (`InputRef`). A worker verifies the hashes before it reads (never data
shipped through the scheduler's memory) and keeps the loaded inputs for the next points with
the same hashes. Each worker process installs the Alpha Cycle's network guard, allowing only
the cluster's own hosts. A point that raises is recorded with its error; a point whose worker
died is run again (`sweep.retries` times), and results are keyed by point id so that nothing
is lost or counted twice whatever the order the points finish in.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from distributed.diagnostics.plugin import WorkerPlugin

from ..contracts import QuantlakeError
from ..storage import sha256_file
from .sweep import Point, SweepParams

GUARD_STAGE = "sweep"
_cache: dict = {}


class SweepInputError(QuantlakeError):
    pass


@dataclass(frozen=True)
class InputRef:
    """The inputs every point reads: the alpha and snapshot folders and the sha256 of each
    file that pins them (the returns panels and the snapshot manifest)."""

    alpha_dir: str
    snapshot_dir: str
    hashes: tuple[tuple[str, str], ...]  # (path, sha256)

    @classmethod
    def of(cls, alpha_dir: Path, snapshot_dir: Path, files: list[Path]) -> "InputRef":
        return cls(str(alpha_dir.resolve()), str(snapshot_dir.resolve()),
                   tuple((str(p.resolve()), sha256_file(p)) for p in files))

    def verify(self) -> None:
        for path, digest in self.hashes:
            if not Path(path).exists():
                raise SweepInputError(f"sweep: input {path} is not readable on this worker (share the folder or its URL)")
            if sha256_file(path) != digest:
                raise SweepInputError(f"sweep: input {path} does not match its sha256 {digest[:16]} (changed since the sweep started)")


def load_inputs(ref: InputRef):
    """The backtest inputs of `ref`, read once per process and content hash."""
    if ref.hashes not in _cache:
        from .stages import backtest_inputs

        ref.verify()
        _cache.clear()
        _cache[ref.hashes] = backtest_inputs(Path(ref.alpha_dir), Path(ref.snapshot_dir))
    return _cache[ref.hashes]


def run_point(ref: InputRef, point: Point) -> dict:
    """One walk-forward; an exception becomes the point's recorded error."""
    from .stages import backtest_from_inputs

    try:
        result = backtest_from_inputs(load_inputs(ref), point.params)
    except SweepInputError:
        raise  # the inputs are wrong for every point: stop the sweep
    except Exception as exc:  # noqa: BLE001 - a failing point must not sink the sweep
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return {"error": f"{type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})"}
    daily = result.returns["strategy"]
    return {
        "metrics": result.metrics,
        "returns_start": daily.index[0].date().isoformat(),
        "returns": daily.to_numpy("float64").tolist(),
        "error": None,
    }


def run_points(ref: InputRef, points: list[Point], sweep: SweepParams, say: Callable[[str], None] = print) -> dict[str, dict]:
    """Outcome per point id, whichever way the points run."""
    if sweep.scheduler == "serial":
        outcomes = {}
        progress = _Progress(len(points), say)
        for p in points:
            outcomes[p.id] = run_point(ref, p)
            progress.done()
        return outcomes
    return _run_on_dask(ref, points, sweep, say)


def cluster_hosts(scheduler: str) -> list[str]:
    return ["127.0.0.1"] if scheduler == "local" else [urlparse(scheduler).hostname or ""]


class NetworkGuardPlugin(WorkerPlugin):
    """A Dask worker plugin: the Alpha Cycle's network guard in every worker process,
    allowing only the cluster's hosts (those known when it is registered and the worker's own)."""

    name = "quantlake-network-guard"

    def __init__(self, allow_hosts: list[str]):
        self.allow_hosts = list(allow_hosts)

    def setup(self, worker) -> None:
        from .netguard import block_network

        own = urlparse(worker.address).hostname
        block_network(GUARD_STAGE, allow_hosts=[*self.allow_hosts, *([own] if own else [])])


def _run_on_dask(ref: InputRef, points: list[Point], sweep: SweepParams, say) -> dict[str, dict]:
    import dask
    from distributed import Client, LocalCluster, as_completed
    from .netguard import block_network

    plugin = NetworkGuardPlugin(cluster_hosts(sweep.scheduler))
    block_network(GUARD_STAGE, allow_hosts=cluster_hosts(sweep.scheduler))
    with dask.config.set({"distributed.scheduler.allowed-failures": sweep.retries,
                          "distributed.worker.daemon": False}):
        cluster = None
        if sweep.scheduler == "local":
            cluster = LocalCluster(
                n_workers=sweep.workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address=None, silence_logs=40,
            )
        try:
            with Client(cluster if cluster is not None else sweep.scheduler) as client:
                info = client.scheduler_info()
                hosts = {urlparse(a).hostname for a in info.get("workers", {})} | {urlparse(info["address"]).hostname}
                plugin.allow_hosts = sorted({*plugin.allow_hosts, *(h for h in hosts if h)})
                client.register_plugin(plugin)
                say(f"sweep: {len(points)} points on {len(info.get('workers', {}))} Dask workers ({sweep.scheduler})")
                futures = {client.submit(run_point, ref, p, key=f"sweep-point-{p.id}", pure=False): p.id for p in points}
                outcomes: dict[str, dict] = {}
                progress = _Progress(len(points), say)
                for future in as_completed(futures):
                    pid = futures[future]
                    try:
                        outcomes[pid] = future.result()
                    except SweepInputError:
                        raise
                    except Exception as exc:  # a worker died more often than sweep.retries allows
                        outcomes[pid] = {"error": f"{type(exc).__name__}: {exc}"}
                    progress.done()
                return outcomes
        finally:
            if cluster is not None:
                cluster.close()


class _Progress:
    """Points done / total with an ETA, printed at most every few seconds (and at the end), so
    that it shows under `dvc repro` where there is no terminal."""

    def __init__(self, total: int, say, every_s: float = 5.0):
        self.total, self.say, self.every_s = total, say, every_s
        self.count, self.start, self.last = 0, time.monotonic(), 0.0

    def done(self) -> None:
        self.count += 1
        now = time.monotonic()
        if self.count == self.total or now - self.last >= self.every_s:
            self.last = now
            elapsed = now - self.start
            eta = elapsed / self.count * (self.total - self.count)
            self.say(f"sweep: {self.count}/{self.total} points done, {elapsed:.0f} s elapsed, ETA {eta:.0f} s")
            sys.stdout.flush()
