"""The real `dvc` and `git` CLIs on a temporary repository made from this repository's files."""

import json
import sys

import pytest
from repo_tools import dvc, lake_files, make_project, run

DATA_STAGES = ("discover", "ingest", "repair", "features", "audit", "report")
ALL_STAGES = (*DATA_STAGES, "snapshot", "returns", "select", "synthesize", "optimize", "backtest", "sweep")


def changed_by_touching(path, env, module: str) -> set[str]:
    """The stages `dvc status` calls stale, each naming `module` (or its folder) as a modified
    dep, while `module` carries one more comment line (restored afterwards)."""
    file = path / module
    original = file.read_bytes()
    file.write_bytes(original + b"# touched\n")
    try:
        status = json.loads(dvc(["status", "--json"], path, env).stdout)
    finally:
        file.write_bytes(original)
    stale = set()
    for stage, changes in status.items():
        deps = [c["changed deps"] for c in changes if isinstance(c, dict) and "changed deps" in c]
        assert any(k == module or module.startswith(k + "/") for d in deps for k in d), (stage, changes)
        stale.add(stage.split(":")[-1])
    return stale


@pytest.fixture
def repo(tmp_path):
    # a shorter history keeps the test fast; everything else is the repository's own files
    return make_project(tmp_path / "repo", start="2022-06-01", limit=None)


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
    # a toxic tail from 2026-10-01: the clean past is published, the tail never
    assert statuses["SIM:XVGUSDT"] == "degraded" and catalog["symbols"]["SIM:XVGUSDT"]["toxic_from"] == "2026-10-01"
    assert catalog["symbols"]["SIM:XVGUSDT"]["end_date"] == "2026-09-30" and (lake / "SIM_XVGUSDT_1d.parquet").exists()
    assert (lake / "universe.parquet").exists() and (path / "artifacts/snapshot/universe.parquet").exists()
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
    assert "by_status" not in metrics and '"sharpe"' in metrics  # the data-audit counts are not experiment metrics
    assert "by_status" in dvc(["metrics", "show", "--json", "data/lakehouse/audit.json"], path, env).stdout

    before = lake_files(lake)
    again = dvc(["repro"], path, env)
    text = again.stdout + again.stderr
    for stage in ("discover", "ingest", "repair", "features", "audit", "report", "snapshot", "returns", "select", "synthesize", "optimize", "backtest"):
        assert f"Stage '{stage}' didn't change, skipping" in text
    assert "Running stage" not in text
    assert lake_files(lake) == before
    assert "up to date" in dvc(["status"], path, env).stdout

    # code deps are true: a module change makes exactly the stages that can run it stale
    assert changed_by_touching(path, env, "src/quantlake/storage.py") == set(ALL_STAGES)
    assert changed_by_touching(path, env, "src/quantlake/params.py") == set(ALL_STAGES)
    assert changed_by_touching(path, env, "src/quantlake/data/staging.py") == set(DATA_STAGES)
    assert changed_by_touching(path, env, "src/quantlake/alpha/selection.py") == set(ALL_STAGES) - set(DATA_STAGES)
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
                    methods[params["optimization"]["method"]] = metrics["sharpe"]
    assert set(methods) == {"hrp", "min_variance"} and methods["hrp"] != methods["min_variance"]

    # moving as_of forward (what `quantlake advance` does) invalidates the data stages
    run([sys.executable, "-m", "quantlake.cli", "advance", "--no-repro", "--as-of", "2026-11-21"], path, env)
    assert "as_of: '2026-11-21'" in (path / "params.yaml").read_text()
    status = dvc(["status"], path, env).stdout
    assert "discover" in status and "ingest" in status
