"""Parallel experiments: `dvc exp run --queue` + `dvc queue start -j 2` give the same results as
the same params run one at a time.

The repository is a clone of the published one of test_ops.py (built once per session), with its
data pulled from the default remote: queued experiments run in copies under `.dvc/tmp/exps`, and
the data layers reach them only through DVC's cache, so the data cycle must be committed first.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from quantlake.ops import lock_outputs
from test_ops import METRICS, dvc, git, published_versions, repo_env, show

GRID = ("inverse_vol", "min_variance")  # optimization.method; the committed baseline is hrp
STAGES = ("optimize", "backtest")  # what an optimization.method change re-runs


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    versions = published_versions(tmp_path_factory)
    repo = tmp_path_factory.mktemp("queue") / "repo"
    git(["clone", "-q", versions.repo, repo], repo.parent, versions.env)
    env = repo_env(repo)
    dvc(["remote", "modify", "--local", "local", "url", versions.storage], repo, env)
    dvc(["pull", "-q"], repo, env)
    yield repo, env
    dvc(["queue", "stop", "--kill"], repo, env, check=False)  # workers idle after the queue drains


def _wait_for_queue(repo, env, names, timeout=600.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        text = dvc(["queue", "status"], repo, env).stdout
        status = {}
        for line in text.splitlines():
            parts = line.split()
            for name in names:
                if name in parts:
                    status[name] = parts[-1]
        if len(status) == len(names) and all(s in ("Success", "Failed") for s in status.values()):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"the queue did not finish in {timeout:.0f}s:\n{text}")
        time.sleep(2)


def _experiments(repo, env) -> dict[str, str]:
    """Experiment name -> commit, from DVC's experiment refs."""
    refs = git(["for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"], repo, env).stdout
    return {ref.rsplit("/", 1)[1]: sha for ref, sha in (line.split() for line in refs.splitlines())}


@pytest.mark.integration
@pytest.mark.slow
def test_queued_experiments_match_the_same_params_run_one_at_a_time(workspace):
    repo, env = workspace
    queued = [f"queued-{m}" for m in GRID]
    for method, name in zip(GRID, queued):
        dvc(["exp", "run", "--queue", "-n", name, "-S", f"optimization.method={method}"], repo, env)
    dvc(["queue", "start", "-j", "2"], repo, env)
    status = _wait_for_queue(repo, env, queued)
    logs = {name: dvc(["queue", "logs", name], repo, env, check=False).stdout for name in queued}
    assert status == {name: "Success" for name in queued}, logs
    for name in queued:
        # the alpha stages really ran in the queue's copy; the data stages came from the cache
        for stage in STAGES:
            assert f"Running stage '{stage}'" in logs[name], logs[name]
        for stage in ("discover", "ingest", "audit", "snapshot", "select"):
            assert f"Stage '{stage}' didn't change, skipping" in logs[name], logs[name]

    # one at a time, in the workspace; forced, so that DVC's run-cache cannot hand back the
    # queued result instead of running the stages
    for method in GRID:
        out = dvc(["exp", "run", "-f", "-s", "-n", f"single-{method}", "-S", f"optimization.method={method}", *STAGES], repo, env)
        for stage in STAGES:
            assert f"Running stage '{stage}'" in out.stdout + out.stderr

    exps = _experiments(repo, env)
    baseline = show(repo, env, "HEAD", METRICS)
    metrics = {}
    for method in GRID:
        q, s = exps[f"queued-{method}"], exps[f"single-{method}"]
        assert yaml.safe_load(show(repo, env, q, "params.yaml"))["optimization"]["method"] == method
        assert yaml.safe_load(show(repo, env, s, "params.yaml"))["optimization"]["method"] == method
        metrics[method] = show(repo, env, q, METRICS)
        assert metrics[method] == show(repo, env, s, METRICS), method  # byte for byte
        lock_q = lock_outputs(yaml.safe_load(show(repo, env, q, "dvc.lock")), STAGES)
        lock_s = lock_outputs(yaml.safe_load(show(repo, env, s, "dvc.lock")), STAGES)
        assert lock_q == lock_s and "artifacts/alpha/portfolio.json" in lock_q, method  # every output
    # the grid points are different portfolios (so equality above is not trivial)
    sharpe = {m: json.loads(b)["sharpe"] for m, b in metrics.items()}
    assert len({*sharpe.values(), json.loads(baseline)["sharpe"]}) == 3, sharpe
