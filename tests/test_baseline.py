"""The committed baseline (dvc.lock, metrics and plot data in git) is exactly what a fresh
`dvc repro` of the committed tree produces: same inputs, same bytes, same dvc.lock."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from repo_tools import ROOT, dvc, git, repo_env

# the small outputs DVC users expect in git (cache: false), beside dvc.lock
BASELINE_FILES = (
    "dvc.lock",
    "artifacts/backtest/metrics.json",
    "artifacts/backtest/equity.csv",
    "artifacts/backtest/drawdown.csv",
    "artifacts/backtest/holdings.csv",
    "artifacts/sweep/metrics.json",
    "artifacts/sweep/points.csv",
)


def committed(path: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"HEAD:{path}"], cwd=ROOT, capture_output=True).returncode == 0


def test_the_baseline_files_are_committed_and_are_the_cache_false_outputs():
    missing = [p for p in BASELINE_FILES if not committed(p)]
    assert not missing, f"not committed: {missing} (run `dvc repro` and commit them)"
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    uncached = sorted(
        next(iter(o)) for s in stages.values() for kind in ("outs", "metrics", "plots") for o in s.get(kind, [])
        if isinstance(o, dict) and next(iter(o.values())).get("cache") is False
    )
    assert uncached == sorted(BASELINE_FILES[1:])


@pytest.mark.integration
@pytest.mark.slow
def test_a_fresh_dvc_repro_of_the_committed_tree_reproduces_the_baseline(tmp_path):
    repo = tmp_path / "clone"
    repo.mkdir()
    archive = tmp_path / "head.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), "HEAD"], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(repo, filter="data")
    env = repo_env(repo)
    git(["init", "-q", "-b", "main"], repo, env)
    git(["add", "-A"], repo, env)
    git(["commit", "-qm", "the committed tree"], repo, env)
    dvc(["repro"], repo, env)
    status = git(["status", "--porcelain", "--untracked-files=all"], repo, env).stdout
    assert status == "", f"a fresh `dvc repro` changed the committed baseline:\n{status}\n" + git(["diff", "--stat"], repo, env).stdout
    assert "didn't change" in dvc(["repro"], repo, env).stdout  # and nothing is left to run
    assert dvc(["status"], repo, env).stdout.strip().endswith("Data and pipelines are up to date.")
