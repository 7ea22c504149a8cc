"""SIGKILL `quantlake repair` and `quantlake publish` at random moments; run two ingests or two
publishes at once. The data must stay consistent and a re-run must finish the job.

(`tests/test_crash.py` kills `quantlake ingest`; it is not repeated here.)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from quantlake.contracts import SymbolId, validate_catalog, validate_ohlcv
from quantlake.data.audit import AuditConfig, run_audit
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.repair import load_repair_log
from quantlake.data.staging import StagingStore
from quantlake.lakehouse import Layers, read_bars
from quantlake.ops import PUBLISH_LOCK, pipeline_files
from quantlake.sources.sim import UNIVERSE, SimExchange
from quantlake.layer import table_sha256
from quantlake.storage import sha256_file
from test_ops import git, missing_from_remote, repo_env

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
AS_OF = dt.date(2026, 11, 20)
ENV = {**os.environ, "QUANTLAKE_NOW": "2026-11-26T12:00:00Z", "PYTHONPATH": str(ROOT / "src")}


def quantlake_proc(args, cwd, env=ENV) -> subprocess.Popen:
    """A `quantlake` process in its own process group (so its children can be waited for)."""
    return subprocess.Popen(
        [sys.executable, "-m", "quantlake.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def kill_at_random(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL the quantlake process after `delay` s (unless it ended); wait for what it started.

    Only the quantlake process is killed: a `git` or `dvc` child it was running finishes its
    own (atomic) step, as it would after `kill -9` of the parent; the next check waits for it.
    """
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return killed
        time.sleep(0.05)
    raise AssertionError(f"children of the killed process {proc.pid} still run after 120 s")


def stratified(rng: random.Random, lo: float, hi: float, n: int) -> list[float]:
    """`n` random moments in [lo, hi], one in each n-th of it, shuffled: every phase gets hit."""
    moments = [lo + (hi - lo) * (k + rng.random()) / n for k in range(n)]
    rng.shuffle(moments)
    return moments


def lock_is_held(path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases our probe lock, if we got it
    return False


def wait_until_locked(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not lock_is_held(path):
        assert proc.poll() is None, f"the first process ended before it was seen holding {path}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"nobody took {path}"
        time.sleep(0.01)


def start_while_held(first: subprocess.Popen, lock: Path, args: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """Start a second `quantlake` while `first` holds `lock`.

    `first` is paused (SIGSTOP) from the moment it holds the lock until the second one says it
    is waiting, so the overlap never depends on how fast either runs.
    """
    wait_until_locked(lock, first)
    first.send_signal(signal.SIGSTOP)
    try:
        with open(log, "w") as fh:
            second = subprocess.Popen([sys.executable, "-m", "quantlake.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=fh, text=True)
        deadline = time.monotonic() + 120
        while "waiting for the lock" not in log.read_text():
            assert second.poll() is None, f"the second process ended without waiting for the lock:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the second process never waited for the lock:\n{log.read_text()}"
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGCONT)
    return second


def files_of(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


# --------------------------------------------------------------------------- repair

REPAIR_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "LINKUSDT", "DOTUSDT", "AVAXUSDT", "ATOMUSDT", "LTCUSDT")
HOLES = ((120, 7), (400, 9), (650, 8))  # (first missing bar, days): days an ingestion lost


def _gap_statuses(log: dict) -> dict:
    return {sym: [(g["from"], g["to"], g["status"], g["filled_days"], g["missing_days"]) for g in e["gaps"]] for sym, e in log["symbols"].items()}


@pytest.fixture(scope="module")
def holed_staging(tmp_path_factory) -> Path:
    """A staging layer whose series miss days a narrow request serves (plus the sim's own gaps)."""
    root = tmp_path_factory.mktemp("repair") / "base"
    layers = Layers(root / "data")
    store = StagingStore(layers.staging_bars, layers.quarantine)
    ingest_symbols([SymbolId.parse(f"SIM:{s}") for s in REPAIR_SYMBOLS], SimExchange(7), store, IngestConfig(as_of=AS_OF, start=dt.date(2023, 1, 1)), now=NOW, log=lambda m: None)
    state = store.load_state()
    for k, sym in enumerate(sorted(state["symbols"])):
        sid = SymbolId.parse(sym)
        bars = store.read_bars(sid)
        i = np.arange(len(bars)) - 13 * k  # other days for each symbol: no exchange-wide outage
        keep = ~np.any([(i >= a) & (i < a + n) for a, n in HOLES], axis=0)
        state["symbols"][sym] = store.commit(sid, bars[keep].reset_index(drop=True), store.read_quarantine(sid), state["symbols"][sym], updated_at="2026-11-26T12:00:00Z")
    store.write_state(state)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update({"start": "2023-01-01", "workers": 2})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _check_repairs_readable(work: Path, staged: dict) -> None:
    """What any moment of a repair run must leave: staging untouched, every visible file whole."""
    layers = Layers(work / "data")
    assert files_of(layers.root / "staging" / "bars") == staged["bars"]  # repair never writes staging
    assert files_of(layers.quarantine) == staged["quarantine"]
    for path in sorted(layers.repairs.rglob("*.parquet")):
        if not path.name.startswith(".") and path.is_file():
            pq.read_table(path)
    if (layers.repairs / "_repair_log.json").exists():
        json.loads((layers.repairs / "_repair_log.json").read_text())  # never half-written
    for sym in REPAIR_SYMBOLS:
        sid = SymbolId.parse(f"SIM:{sym}")
        bars = read_bars(layers, sid)  # staging merged with whatever repairs exist
        assert validate_ohlcv(bars, file=sid.filename, as_of=AS_OF) == [], sym


@pytest.mark.slow
def test_sigkill_of_repair_at_random_moments_leaves_readable_layers_and_a_rerun_heals_the_same(holed_staging, tmp_path):
    layers = Layers(holed_staging / "data")
    staged = {"bars": files_of(layers.root / "staging" / "bars"), "quarantine": files_of(layers.quarantine)}
    ref = tmp_path / "ref"
    shutil.copytree(holed_staging, ref)
    t0 = time.monotonic()
    done = quantlake_proc(["repair"], ref)
    out, err = done.communicate(timeout=300)
    full = time.monotonic() - t0
    assert done.returncode == 0, err
    ref_layers = Layers(ref / "data")
    ref_log = load_repair_log(ref_layers.repairs)
    statuses = [g[2] for gaps in _gap_statuses(ref_log).values() for g in gaps]
    assert statuses.count("healed") >= len(REPAIR_SYMBOLS) * len(HOLES) and "unrepairable" in statuses  # real work
    expected = {k: v for k, v in files_of(ref_layers.repairs).items() if k != "_repair_log.json"}

    work = tmp_path / "work"
    shutil.copytree(holed_staging, work)
    rng = random.Random(20261126)
    kills = 0
    for delay in stratified(rng, 0.3, full, 10):
        proc = quantlake_proc(["repair"], work)
        if kill_at_random(proc, delay):
            kills += 1
        else:
            assert proc.returncode == 0, proc.stderr
        _check_repairs_readable(work, staged)
        if rng.random() < 0.4:  # sometimes start over, so that early moments are hit again
            shutil.rmtree(work)
            shutil.copytree(holed_staging, work)
    assert kills >= 4, kills  # the test really interrupted runs

    final = quantlake_proc(["repair"], work)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    _check_repairs_readable(work, staged)
    wl = Layers(work / "data")
    assert not list(wl.repairs.rglob(".*.tmp"))  # a killed writer's temp files are cleaned up
    assert {k: v for k, v in files_of(wl.repairs).items() if k != "_repair_log.json"} == expected  # byte for byte
    log = load_repair_log(wl.repairs)
    assert _gap_statuses(log) == _gap_statuses(ref_log)  # (attempt counters may differ: see repair.py)
    for sym, entry in log["symbols"].items():
        if entry["file"]:
            assert entry["sha256"] == table_sha256(wl.repairs / entry["file"]), sym
    # and the gate certifies the same data from it
    certified = [run_audit(x, AuditConfig(as_of=AS_OF)).report for x in (ref_layers, wl)]
    assert certified[0]["certified"] == certified[1]["certified"] == len(REPAIR_SYMBOLS)
    assert json.loads((wl.lakehouse / "certified.json").read_text())["symbols"] == json.loads((ref_layers.lakehouse / "certified.json").read_text())["symbols"]


# --------------------------------------------------------------------------- publish

MAKE_LAKE = '''"""A stand-in Data Cycle: many lakehouse files and a certified list, keyed on data.as_of."""
import json, os, random, yaml
as_of = yaml.safe_load(open("params.yaml"))["data"]["as_of"]
rng = random.Random(as_of)
os.makedirs("data/lakehouse", exist_ok=True)
symbols = {}
for i in range(300):
    name = f"SIM_S{i:03d}USDT_1d.parquet"
    with open(f"data/lakehouse/{name}", "wb") as fh:
        fh.write(rng.randbytes(8192))
    symbols[f"SIM:S{i:03d}USDT"] = {"file": name, "status": "ok"}
with open("data/lakehouse/certified.json", "w") as fh:
    json.dump({"as_of": as_of, "symbols": symbols}, fh, sort_keys=True)
with open("metrics.json", "w") as fh:
    json.dump({"files": len(symbols)}, fh)
'''

TOY_DVC_YAML = {
    "stages": {
        "audit": {
            "cmd": "python3 make_lake.py",
            "deps": ["make_lake.py"],
            "params": ["data.as_of"],
            "outs": ["data/lakehouse"],
            "metrics": [{"metrics.json": {"cache": False}}],
        }
    }
}


@pytest.fixture(scope="module")
def toy_repo(tmp_path_factory):
    """A small git + DVC repository whose pipeline has been run but not published.

    `publish` is generic over dvc.yaml; a stand-in pipeline keeps each run short, so that the
    random kills cover its whole length. Returns (repo, env, storage, base commit).
    """
    base = tmp_path_factory.mktemp("publish")
    repo = base / "repo"
    repo.mkdir()
    env = repo_env(repo)
    git(["init", "-q", "-b", "main"], repo, env)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, env=env, check=True)
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # the project's default remote
    (repo / "make_lake.py").write_text(MAKE_LAKE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(TOY_DVC_YAML))
    (repo / "params.yaml").write_text("data:\n  as_of: '2026-11-20'\n")
    git(["add", "-A"], repo, env)
    git(["commit", "-qm", "init"], repo, env)
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=repo, env=env, check=True)
    head = git(["rev-parse", "HEAD"], repo, env).stdout.strip()
    return repo, env, base / "quantlake-storage", head


def _unpublish(repo: Path, env: dict, base: str, storage: Path, *, drop_data: bool) -> None:
    tags = git(["tag", "-l", "lakehouse/*"], repo, env).stdout.split()
    if tags:
        git(["tag", "-d", *tags], repo, env)
    git(["reset", "-q", base], repo, env)  # the version files become uncommitted again
    if drop_data:
        shutil.rmtree(storage, ignore_errors=True)


def _slow_git(tmp: Path) -> dict:
    """An env whose `git` takes 0.15 s more per call, so that kills also land between git steps."""
    bin_dir = tmp / "slow-bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "git"
    script.write_text(f"#!/bin/sh\nsleep 0.15\nexec {shutil.which('git')} \"$@\"\n")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def _check_publish_state(repo: Path, env: dict, base: str, storage: Path, lake: dict) -> str | None:
    """The invariants at any moment: data untouched, a tag only on a version whose data is stored."""
    assert files_of(repo / "data" / "lakehouse") == lake
    head = git(["rev-parse", "HEAD"], repo, env).stdout.strip()
    if head != base:
        assert git(["log", "-1", "--format=%s%x00%P", head], repo, env).stdout.strip() == f"lakehouse 2026-11-20\0{base}"
    tags = git(["for-each-ref", "--format=%(refname:strip=2) %(*objectname)", "refs/tags/lakehouse/"], repo, env).stdout.split("\n")
    tags = [t.split() for t in tags if t.strip()]
    assert len(tags) <= 1, tags
    uncached = set(pipeline_files(TOY_DVC_YAML).git_outputs)
    for name, commit in tags:
        assert (name, commit) == ("lakehouse/2026-11-20", head)
        lock = yaml.safe_load(git(["show", f"{name}:dvc.lock"], repo, env).stdout)
        assert missing_from_remote(storage, lock, uncached) == [], "a tag names data the remote does not hold"
    return tags[0][0] if tags else None


@pytest.mark.slow
def test_sigkill_of_publish_at_random_moments_never_tags_data_that_is_not_pushed(toy_repo, tmp_path):
    repo, env, storage, base = toy_repo
    lake = files_of(repo / "data" / "lakehouse")
    slow = {**env, **_slow_git(tmp_path)}
    t0 = time.monotonic()
    first = quantlake_proc(["publish"], repo, slow)
    out, err = first.communicate(timeout=120)
    full = time.monotonic() - t0
    assert first.returncode == 0 and out.strip() == "lakehouse/2026-11-20", err
    assert _check_publish_state(repo, env, base, storage, lake) == "lakehouse/2026-11-20"

    rng = random.Random(6)
    kills, states = 0, set()
    _unpublish(repo, env, base, storage, drop_data=True)
    for delay in stratified(rng, 0.0, full, 7):
        proc = quantlake_proc(["publish"], repo, slow)
        killed = kill_at_random(proc, delay)
        kills += killed
        if not killed:
            assert proc.returncode == 0, proc.stderr
        tag = _check_publish_state(repo, env, base, storage, lake)
        head = git(["rev-parse", "HEAD"], repo, env).stdout.strip()
        stored = not missing_from_remote(storage, yaml.safe_load((repo / "dvc.lock").read_text()), set(pipeline_files(TOY_DVC_YAML).git_outputs))
        states.add(("tagged" if tag else "committed") if head != base else "pushed" if stored else "nothing pushed")
        if tag or rng.random() < 0.3:  # start over; otherwise the next run resumes this state
            _unpublish(repo, env, base, storage, drop_data=rng.random() < 0.5)
    assert kills >= 4, kills
    assert len(states) >= 2, states  # kills landed in different phases

    # whatever the last kill left, publishing again completes the version
    out = subprocess.run([sys.executable, "-m", "quantlake.cli", "publish"], cwd=repo, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "lakehouse/2026-11-20", out.stderr
    assert _check_publish_state(repo, env, base, storage, lake) == "lakehouse/2026-11-20"
    assert git(["status", "--porcelain", "--untracked-files=all"], repo, env).stdout == ""


@pytest.mark.slow
def test_two_publishes_at_once_are_serialized_by_the_lock(toy_repo, tmp_path):
    repo, env, storage, base = toy_repo
    _unpublish(repo, env, base, storage, drop_data=True)
    lake = files_of(repo / "data" / "lakehouse")
    first = quantlake_proc(["publish"], repo, env)
    second = start_while_held(first, repo / PUBLISH_LOCK, ["publish"], repo, env, tmp_path / "second.log")
    out2, _ = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=120)
    err2 = (tmp_path / "second.log").read_text()
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    assert "waiting for the lock" in err2 and "another `quantlake publish` is running" in err2
    assert "already published as lakehouse/2026-11-20" in err2 and "tagged lakehouse/2026-11-20" in err1
    assert out1.strip() == out2.strip() == "lakehouse/2026-11-20"
    assert _check_publish_state(repo, env, base, storage, lake) == "lakehouse/2026-11-20"
    assert git(["rev-list", "--count", f"{base}..HEAD"], repo, env).stdout.strip() == "1"  # one version commit


# --------------------------------------------------------------------------- concurrent ingest

INGEST_SYMBOLS = tuple(f"{base}USDT" for base, *_ in UNIVERSE if base not in ("NEWCO",))


@pytest.mark.slow
def test_two_concurrent_ingests_wait_for_each_other_and_keep_the_bookkeeping_whole(tmp_path):
    (tmp_path / "data" / "export").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text().replace("workers: 4", "workers: 2"))
    doc = {"as_of": AS_OF.isoformat(), "source": "sim", "scanners": [], "candidates": [{"symbol": f"SIM:{s}"} for s in INGEST_SYMBOLS]}
    (tmp_path / "data" / "export" / "candidates.json").write_text(json.dumps(doc))
    layers = Layers(tmp_path / "data")
    store = StagingStore(layers.staging_bars, layers.quarantine)

    first = quantlake_proc(["ingest"], tmp_path)
    second = start_while_held(first, store.lock_path, ["ingest"], tmp_path, ENV, tmp_path / "second.log")
    second.communicate(timeout=300)
    _, err1 = first.communicate(timeout=300)
    err2 = (tmp_path / "second.log").read_text()
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    assert "waiting for the lock" in err2 and "another `quantlake ingest` is running" in err2
    assert f"ingest: {len(INGEST_SYMBOLS)} fetched" in err1
    assert "ingest: 0 fetched" in err2  # it found everything fresh once the first had finished

    state = store.load_state()["symbols"]
    assert json.loads(store.state_path.read_text())["symbols"].keys() == state.keys()
    files = store.bar_files()
    assert set(files) == {f"SIM:{s}" for s in INGEST_SYMBOLS}
    for sym, path in files.items():
        assert state[sym]["sha256"] == table_sha256(path) and not state[sym].get("reconciled"), sym
        assert state[sym]["rows"] == pq.read_table(path).num_rows, sym
    result = run_audit(layers, AuditConfig(as_of=AS_OF))
    catalog = json.loads((layers.lakehouse / "catalog.json").read_text())
    assert validate_catalog(catalog) == []
    assert result.report["certified"] >= len(INGEST_SYMBOLS) - 5  # the sim's defect carriers (toxic, delisted)
