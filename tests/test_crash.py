"""SIGKILL `quantlake ingest` at random moments: the staging layer must stay consistent."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from quantlake.data.staging import StagingStore
from quantlake.layer import table_digest
from quantlake.storage import sha256_file

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "QUANTLAKE_NOW": "2026-11-26T12:00:00Z"}


def _project(tmp: Path) -> Path:
    (tmp / "data" / "export").mkdir(parents=True)
    params = (ROOT / "params.yaml").read_text().replace("workers: 4", "workers: 2")
    (tmp / "params.yaml").write_text(params)
    syms = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "XVGUSDT", "XEMUSDT", "LINKUSDT", "SOLUSDT", "DOTUSDT", "ATOMUSDT", "DOGEUSDT", "EOSUSDT", "FTTUSDT"]
    doc = {"as_of": "2026-11-20", "source": "sim", "scanners": [], "candidates": [{"symbol": f"SIM:{s}"} for s in syms]}
    (tmp / "data" / "export" / "candidates.json").write_text(json.dumps(doc))
    return tmp


def _ingest(cwd: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "quantlake.cli", "ingest", *extra], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _files(cwd: Path) -> dict:
    return {str(p.relative_to(cwd)): sha256_file(p) for p in sorted((cwd / "data" / "staging").rglob("*")) if p.is_file() and not any(part.startswith(".") for part in p.relative_to(cwd).parts)}


def _check_consistent(cwd: Path) -> None:
    store = StagingStore(cwd / "data/staging/bars", cwd / "data/staging/quarantine")
    for path in sorted((cwd / "data" / "staging").rglob("*.parquet")):
        if not path.name.startswith(".") and path.is_file():
            pq.read_table(path)  # every visible fragment reads whole
    if store.state_path.exists():
        json.loads(store.state_path.read_text())  # the bookkeeping is never half-written
    state = store.load_state()["symbols"]
    files = store.bar_files()
    assert set(state) == set(files)
    for sym, entry in state.items():
        assert not entry.get("corrupt"), (sym, entry.get("corrupt"))  # a kill is an interrupted commit, never corruption
        assert entry["sha256"] == table_digest(store.bars.hashes(files[sym].name)), sym
        assert entry["rows"] == pq.read_table(files[sym]).num_rows, sym


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_staging(tmp_path):
    ref = _project(tmp_path / "ref")
    start = time.monotonic()
    assert _ingest(ref).wait(120) == 0
    full_seconds = time.monotonic() - start
    expected = _files(ref)

    work = _project(tmp_path / "work")
    rng = random.Random(20261126)
    kills = 0
    for _ in range(16):
        proc = _ingest(work)
        time.sleep(rng.uniform(0.2, full_seconds))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(60)
        _check_consistent(work)
        # a later run starts from whatever the killed one committed; start over sometimes
        if rng.random() < 0.5:
            shutil.rmtree(work / "data" / "staging", ignore_errors=True)
    assert kills >= 5, kills  # the test really interrupted runs
    assert _ingest(work).wait(120) == 0
    _check_consistent(work)
    assert _files(work) == expected
    assert not [p for p in (work / "data" / "staging").rglob(".*.tmp")]
