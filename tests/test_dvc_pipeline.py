"""The real `dvc` and `git` CLIs on a temporary repository made from this repository's files."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from quantlake.storage import sha256_file

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["pyproject.toml", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "configs", "src", ".dvc/config", ".dvc/.gitignore"]


def run(cmd, cwd, env, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def repo(tmp_path):
    dst = tmp_path / "repo"
    dst.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "QUANTLAKE_NOW": "2026-11-26T12:00:00Z",
        "GIT_AUTHOR_NAME": "quantlake-test",
        "GIT_AUTHOR_EMAIL": "test@quantlake.invalid",
        "GIT_COMMITTER_NAME": "quantlake-test",
        "GIT_COMMITTER_EMAIL": "test@quantlake.invalid",
        "DVC_NO_ANALYTICS": "1",
    }
    # a shorter history keeps the test fast; everything else is the repository's own params
    params = dst / "params.yaml"
    params.write_text(params.read_text().replace("start: '2020-01-01'", "start: '2022-06-01'"))
    run(["git", "init", "-q", "-b", "main"], dst, env)
    run(["git", "add", "-A"], dst, env)
    run(["git", "commit", "-qm", "init"], dst, env)
    return dst, env


def dvc(args, cwd, env, check=True):
    return run([sys.executable, "-m", "dvc", *args], cwd, env, check)


def lake_files(path: Path) -> dict:
    return {str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.integration
def test_dvc_repro_runs_both_cycles_a_second_repro_runs_nothing_and_experiments_rerun_only_alpha(repo):
    path, env = repo
    out = dvc(["repro"], path, env)
    lake = path / "data" / "lakehouse"
    catalog = json.loads((lake / "catalog.json").read_text())
    certified = json.loads((lake / "certified.json").read_text())
    assert len(list(lake.glob("*_1d.parquet"))) >= 60
    assert (path / "artifacts/backtest/metrics.json").exists() and (path / "artifacts/backtest/tearsheet.png").exists()
    statuses = {s: e["status"] for s, e in catalog["symbols"].items()}
    assert statuses["SIM:XVGUSDT"] == "toxic" and not (lake / "SIM_XVGUSDT_1d.parquet").exists()
    # every injected defect inside the shortened history (from 2022-06-01) gets its status
    assert statuses["SIM:WAVESUSDT"] == "stale" and statuses["SIM:SRMUSDT"] == "stale"
    for sym in ("SIM:FTTUSDT", "SIM:EOSUSDT", "SIM:XEMUSDT", "SIM:ATOMUSDT"):
        assert statuses[sym] == "degraded", sym
    assert catalog["symbols"]["SIM:ATOMUSDT"]["repairs"][0]["status"] == "unrepairable"
    assert statuses["SIM:DOTUSDT"] == "ok" and catalog["symbols"]["SIM:DOTUSDT"]["repaired_days"] == 8  # healed
    assert statuses["SIM:DOGEUSDT"] == "ok" and statuses["SIM:BTCUSDT"] == "ok"
    audit = json.loads((lake / "audit.json").read_text())
    assert audit["empty_symbols"] == ["SIM:LUNAUSDT"]  # delisted before data.start
    assert [o["from"] for o in audit["outages"]] == ["2024-11-11"]
    assert (lake / "features" / "tv_technicals_1d.parquet").exists()
    assert (path / "artifacts/reports/data_audit.html").stat().st_size > 10_000
    assert set(certified["symbols"]) == {s for s, st in statuses.items() if st != "toxic"}
    assert any((path / "data" / "staging" / "quarantine").glob("*.parquet"))
    assert "audit:" in out.stderr + out.stdout
    metrics = dvc(["metrics", "show", "--json"], path, env).stdout
    assert "by_status" in metrics

    before = lake_files(lake)
    again = dvc(["repro"], path, env)
    text = again.stdout + again.stderr
    for stage in ("discover", "ingest", "repair", "features", "audit", "report", "snapshot", "returns", "select", "synthesize", "optimize", "backtest"):
        assert f"Stage '{stage}' didn't change, skipping" in text
    assert "Running stage" not in text
    assert lake_files(lake) == before
    assert "up to date" in dvc(["status"], path, env).stdout

    # an experiment on an alpha param re-runs only the alpha stages that depend on it
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "first run"], path, env)
    exp = dvc(["exp", "run", "-S", "optimization.method=min_variance"], path, env)
    text = exp.stdout + exp.stderr
    for stage in ("discover", "ingest", "repair", "features", "audit", "report", "snapshot", "returns", "select", "synthesize"):
        assert f"Stage '{stage}' didn't change, skipping" in text
    assert "Running stage 'optimize'" in text and "Running stage 'backtest'" in text
    assert lake_files(lake) == before
    rows = json.loads(dvc(["exp", "show", "--json"], path, env).stdout)
    methods = {}
    for commit in rows:
        for exp_row in [commit] + [e for e in commit.get("experiments") or []]:
            for rev in exp_row.get("revs") or [exp_row]:
                data = (rev.get("data") or {})
                params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
                metrics = (data.get("metrics") or {}).get("artifacts/backtest/metrics.json", {}).get("data", {})
                if params and metrics:
                    methods[params["optimization"]["method"]] = metrics["strategy"]["sharpe"]
    assert set(methods) == {"hrp", "min_variance"} and methods["hrp"] != methods["min_variance"]

    # moving as_of forward (what `quantlake advance` does) invalidates the data stages
    run([sys.executable, "-m", "quantlake.cli", "advance", "--no-repro", "--as-of", "2026-11-21"], path, env)
    assert "as_of: '2026-11-21'" in (path / "params.yaml").read_text()
    status = dvc(["status"], path, env).stdout
    assert "discover" in status and "ingest" in status
