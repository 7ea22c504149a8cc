"""Versions of the lakehouse with the real git and dvc CLIs: publish, reproduce, remotes.

One repository is built per session (`published_versions`, shared with test_queue.py): both
cycles run on the sim, `quantlake publish` tags `lakehouse/2026-11-20` and pushes its data to the
default remote (a folder next to the repository), `quantlake advance` moves as_of one day, both
cycles run again and a second publish tags `lakehouse/2026-11-21`. The tests then reproduce the
first version in a fresh clone, push and pull through an SSH remote served by a real sshd, and
check what publish refuses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from quantlake.ops import (
    ALPHA_STAGES,
    choose_tag,
    describe_stale,
    latest_tag,
    lock_outputs,
    output_differences,
    pipeline_files,
    porcelain_paths,
    remote_settings,
    stage_metrics,
    text_diff,
    uncommitted_inputs,
)
from quantlake.storage import sha256_file
from repo_tools import NOW, ROOT, dvc, git, lake_files, make_project, quantlake, repo_env, run  # noqa: F401
from sshd_fixture import sshd  # noqa: F401  (the session fixture; a conftest may import it too)

FIRST, SECOND = "2026-11-20", "2026-11-21"
METRICS = "artifacts/backtest/metrics.json"
LAKE = "data/lakehouse"


def missing_from_remote(storage: Path, lock: dict, uncached: set[str]) -> list[str]:
    """Cached outputs of a parsed dvc.lock that a local DVC remote folder does not hold."""
    def obj(md5: str) -> Path:
        return storage / "files" / "md5" / md5[:2] / md5[2:]

    missing = []
    for path, md5 in lock_outputs(lock, lock.get("stages") or {}).items():
        if path in uncached:
            continue
        if not obj(md5).exists():
            missing.append(f"{path} ({md5})")
        elif md5.endswith(".dir"):
            missing += [f"{path}/{e['relpath']}" for e in json.loads(obj(md5).read_text()) if not obj(e["md5"]).exists()]
    return missing


def show(repo: Path, env: dict, rev: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, env=env, capture_output=True, check=True).stdout


@dataclass
class Versions:
    repo: Path
    env: dict
    storage: Path  # the default remote (../../quantlake-storage from .dvc/)
    publish_first: subprocess.CompletedProcess
    publish_second: subprocess.CompletedProcess


_BUILT: dict[str, Versions] = {}


def published_versions(tmp_path_factory) -> Versions:
    """Build (once per session) a repository with two published lakehouse versions."""
    if "versions" not in _BUILT:
        base = tmp_path_factory.mktemp("versions")
        repo, env = make_project(base / "repo")
        dvc(["repro"], repo, env)
        first = quantlake(["publish"], repo, env)
        quantlake(["advance", "--as-of", SECOND, "--no-repro"], repo, env)
        dvc(["repro"], repo, env)
        second = quantlake(["publish"], repo, env)
        _BUILT["versions"] = Versions(repo, env, base / "quantlake-storage", first, second)
    return _BUILT["versions"]


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> Versions:
    return published_versions(tmp_path_factory)


# --------------------------------------------------------------------------- pure helpers


DVC_YAML = {
    "stages": {
        "audit": {"cmd": "quantlake audit", "deps": ["data/staging/bars", "src/quantlake/data/audit.py"], "params": ["data.as_of"], "outs": ["data/lakehouse"]},
        "backtest": {
            "cmd": "quantlake backtest",
            "deps": ["artifacts/snapshot", "src/quantlake/alpha"],
            "params": ["selection", {"other.yaml": ["x"]}],
            "outs": ["artifacts/backtest/weights.csv"],
            "metrics": [{"artifacts/backtest/metrics.json": {"cache": False}}],
            "plots": [{"artifacts/backtest/equity.csv": {"cache": False}}],
        },
    }
}


def test_pipeline_files_split_git_and_dvc_outputs_and_list_what_a_version_commits():
    files = pipeline_files(DVC_YAML)
    assert files.git_outputs == ("artifacts/backtest/equity.csv", "artifacts/backtest/metrics.json")
    assert files.cached_outputs == ("artifacts/backtest/weights.csv", "data/lakehouse")
    assert files.params_files == ("other.yaml", "params.yaml")
    assert files.gitignores == ("artifacts/backtest/.gitignore", "data/.gitignore")
    assert set(files.version_paths()) == {
        "dvc.yaml", "dvc.lock", "params.yaml", "other.yaml", "artifacts/backtest/equity.csv",
        "artifacts/backtest/metrics.json", "artifacts/backtest/.gitignore", "data/.gitignore",
    }
    assert stage_metrics(DVC_YAML, ["audit", "backtest"]) == ["artifacts/backtest/metrics.json"]
    with pytest.raises(Exception, match="foreach"):
        pipeline_files({"stages": {"s": {"foreach": [1], "do": {"cmd": "x"}}}})


def test_only_uncommitted_stage_inputs_block_a_publish():
    status = " M README.md\0 M src/quantlake/alpha/optimize.py\0?? src/quantlake/alpha/new.py\0 M dvc.lock\0R  configs/b.yaml\0configs/a.yaml\0?? notes.txt\0"
    changed = porcelain_paths(status)
    assert changed == ["README.md", "src/quantlake/alpha/optimize.py", "src/quantlake/alpha/new.py", "dvc.lock", "configs/b.yaml", "configs/a.yaml", "notes.txt"]
    deps = ["src/quantlake/alpha", "configs", "src/quantlake/data/audit.py"]
    assert uncommitted_inputs(changed, deps, {"dvc.lock", "params.yaml"}) == [
        "configs/a.yaml", "configs/b.yaml", "src/quantlake/alpha/new.py", "src/quantlake/alpha/optimize.py",
    ]
    assert uncommitted_inputs(["src/quantlake/alphabet.py", "dvc.lock"], deps, {"dvc.lock"}) == []


def test_tags_never_move_and_a_republished_head_keeps_its_tag():
    assert choose_tag("2026-11-20", {}, "c1") == ("lakehouse/2026-11-20", False)
    tags = {"lakehouse/2026-11-20": "c1", "lakehouse/2026-11-19": "c0", "other": "c9"}
    assert choose_tag("2026-11-20", tags, "c1") == ("lakehouse/2026-11-20", True)
    assert choose_tag("2026-11-20", tags, "c2") == ("lakehouse/2026-11-20.2", False)
    tags["lakehouse/2026-11-20.2"] = "c2"
    assert choose_tag("2026-11-20", tags, "c2") == ("lakehouse/2026-11-20.2", True)
    assert choose_tag("2026-11-20", tags, "c3") == ("lakehouse/2026-11-20.3", False)
    assert latest_tag([*tags, "lakehouse/2026-11-21", "lakehouse/2026-11-19.5"]) == "lakehouse/2026-11-21"
    assert latest_tag(["lakehouse/2026-11-20", "lakehouse/2026-11-20.10", "lakehouse/2026-11-20.9"]) == "lakehouse/2026-11-20.10"
    assert latest_tag(["v1.0"]) is None


def test_remote_settings_later_levels_win_and_stale_stages_are_described():
    listing = "remote.local.url=/a/storage\ncore.analytics=false\ncore.remote=local\nremote.s3.url=s3://b/x\nremote.local.url=/b/storage\nremote.s3.profile=p\n"
    assert remote_settings(listing) == ("local", {"local": {"url": "/b/storage"}, "s3": {"url": "s3://b/x", "profile": "p"}})
    status = {"optimize": [{"changed deps": {"params.yaml": {"optimization": "modified"}, "src/quantlake/alpha": "modified"}}], "audit": ["always changed"]}
    lines = describe_stale(status)
    assert lines[0].startswith("optimize (changed deps: ") and "src/quantlake/alpha modified" in lines[0]
    assert lines[1] == "audit (always changed)"
    assert describe_stale({}) == []


def test_differences_name_each_output_and_diff_the_metrics_text():
    rec = {"stages": {"backtest": {"outs": [{"path": "a.csv", "md5": "1"}, {"path": "m.json", "md5": "2"}]}}}
    rep = {"stages": {"backtest": {"outs": [{"path": "a.csv", "md5": "1"}, {"path": "m.json", "md5": "3"}]}}}
    assert output_differences(lock_outputs(rec, ["backtest"]), lock_outputs(rec, ["backtest"])) == []
    assert output_differences(lock_outputs(rec, ["backtest"]), lock_outputs(rep, ["backtest"])) == ["m.json: recorded 2, reproduced 3"]
    assert text_diff(b'{"a": 1}\n', b'{"a": 1}\n', "m.json") == ""
    diff = text_diff(b'{\n  "sharpe": 1.5\n}\n', b'{\n  "sharpe": 1.25\n}\n', "m.json")
    assert '-  "sharpe": 1.5' in diff and '+  "sharpe": 1.25' in diff and "recorded/m.json" in diff
    assert "-x\n+x\r\n" in text_diff(b"x\n", b"x\r\n", "m.json")  # line endings show
    assert "bytes differ" in text_diff(b"\xff\n", b"\xfe\n", "m.json")  # not valid text: still reported


# --------------------------------------------------------------------------- publish


@pytest.mark.integration
def test_publish_commits_tags_and_pushes_each_version(versions):
    repo, env = versions.repo, versions.env
    assert versions.publish_first.stdout.strip() == f"lakehouse/{FIRST}"
    assert versions.publish_second.stdout.strip() == f"lakehouse/{SECOND}"
    assert "data pushed to remote 'local'" in versions.publish_first.stderr
    assert git(["status", "--porcelain", "--untracked-files=all"], repo, env).stdout == ""  # everything is in the version
    log = git(["log", "--format=%s", "main"], repo, env).stdout.split("\n")
    assert log[:3] == [f"lakehouse {SECOND}", f"lakehouse {FIRST}", "init"]

    uncached = set(pipeline_files(yaml.safe_load((repo / "dvc.yaml").read_text())).git_outputs)
    lakes = {}
    for as_of in (FIRST, SECOND):
        tag = f"lakehouse/{as_of}"
        assert git(["cat-file", "-t", tag], repo, env).stdout.strip() == "tag"  # annotated
        assert f"lakehouse {as_of}: " in git(["tag", "-n1", "-l", tag], repo, env).stdout
        assert yaml.safe_load(show(repo, env, tag, "params.yaml"))["data"]["as_of"] == as_of
        assert json.loads(show(repo, env, tag, METRICS))["sharpe"]  # the run is part of the version
        tracked = git(["ls-tree", "-r", "--name-only", tag], repo, env).stdout.split()
        assert {"dvc.lock", METRICS, "data/.gitignore", "artifacts/backtest/.gitignore"} <= set(tracked)
        assert not [p for p in tracked if p.startswith(f"{LAKE}/")]  # data is DVC's, not git's
        lock = yaml.safe_load(show(repo, env, tag, "dvc.lock"))
        assert missing_from_remote(versions.storage, lock, uncached) == []
        lakes[as_of] = lock_outputs(lock, ["audit"])[LAKE]
    assert lakes[FIRST] != lakes[SECOND]  # two lakehouse versions
    assert json.loads((repo / LAKE / "certified.json").read_text())["as_of"] == SECOND


@pytest.mark.integration
def test_publish_refuses_stale_stages_and_uncommitted_code(versions):
    repo, env = versions.repo, versions.env
    head = git(["rev-parse", "HEAD"], repo, env).stdout
    tags = git(["tag", "-l"], repo, env).stdout
    params, lock = (repo / "params.yaml").read_bytes(), (repo / "dvc.lock").read_bytes()
    code = repo / "src/quantlake/alpha/optimize.py"
    source = code.read_bytes()
    try:
        (repo / "params.yaml").write_text(params.decode().replace("max_weight: 0.25", "max_weight: 0.3"))
        out = quantlake(["publish"], repo, env, check=False)
        assert out.returncode == 2, out.stderr
        assert "not up to date" in out.stderr and "optimize (" in out.stderr and "backtest (" in out.stderr
        assert "ingest (" not in out.stderr
        (repo / "params.yaml").write_bytes(params)

        # code changed and dvc.lock updated to it (as after `dvc repro`), but the code is not committed
        code.write_bytes(source + b"\n# an uncommitted edit\n")
        dvc(["commit", "-f", "-q"], repo, env)
        assert dvc(["status", "--json"], repo, env).stdout.strip() == "{}"
        out = quantlake(["publish"], repo, env, check=False)
        assert out.returncode == 2 and "commit them first" in out.stderr and "src/quantlake/alpha/optimize.py" in out.stderr, out.stderr
    finally:
        (repo / "params.yaml").write_bytes(params)
        code.write_bytes(source)
        (repo / "dvc.lock").write_bytes(lock)
    assert git(["rev-parse", "HEAD"], repo, env).stdout == head and git(["tag", "-l"], repo, env).stdout == tags
    assert dvc(["status", "--json"], repo, env).stdout.strip() == "{}"
    assert git(["status", "--porcelain"], repo, env).stdout == ""


@pytest.mark.integration
def test_publishing_again_is_a_no_op_that_also_pushes_through_a_real_ssh_remote(versions, sshd, tmp_path):  # noqa: F811
    repo, env = versions.repo, versions.env
    head, tags = git(["rev-parse", "HEAD"], repo, env).stdout, git(["tag", "-l"], repo, env).stdout
    remote_dir = tmp_path / "ssh-storage"
    remote_dir.mkdir()
    logins = sshd.accepted_logins()
    # the SSH remote and its key are local settings (.dvc/config.local), as credentials should be
    dvc(["remote", "add", "--local", "-f", "ssh", sshd.url(remote_dir)], repo, env)
    dvc(["remote", "modify", "--local", "ssh", "keyfile", str(sshd.keyfile)], repo, env)
    out = quantlake(["publish", "--remote", "ssh"], repo, env)
    assert out.stdout.strip() == f"lakehouse/{SECOND}"
    assert f"already published as lakehouse/{SECOND}" in out.stderr and "data pushed to remote 'ssh'" in out.stderr
    assert git(["rev-parse", "HEAD"], repo, env).stdout == head and git(["tag", "-l"], repo, env).stdout == tags
    assert sshd.accepted_logins() > logins  # the data went through sshd
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    uncached = set(pipeline_files(yaml.safe_load((repo / "dvc.yaml").read_text())).git_outputs)
    assert missing_from_remote(remote_dir, lock, uncached) == []

    # a fresh clone of the second version pulls everything back through SSH
    clone = tmp_path / "clone"
    git(["clone", "-q", repo, clone], tmp_path, env)
    cenv = repo_env(clone)
    git(["checkout", "-q", f"lakehouse/{SECOND}"], clone, cenv)
    dvc(["remote", "add", "--local", "ssh", sshd.url(remote_dir)], clone, cenv)
    dvc(["remote", "modify", "--local", "ssh", "keyfile", str(sshd.keyfile)], clone, cenv)
    assert not (clone / LAKE).exists()
    logins = sshd.accepted_logins()
    dvc(["pull", "-r", "ssh"], clone, cenv)
    assert sshd.accepted_logins() > logins
    assert "Data and pipelines are up to date" in dvc(["status"], clone, cenv).stdout
    assert "in sync" in dvc(["status", "-c", "-r", "ssh"], clone, cenv).stdout
    assert lake_files(clone / LAKE) == lake_files(repo / LAKE)
    assert (clone / METRICS).read_bytes() == (repo / METRICS).read_bytes()


# --------------------------------------------------------------------------- reproduce


@pytest.mark.integration
def test_reproduce_checks_out_the_first_version_and_gets_identical_metrics(versions, tmp_path):
    repo, env = versions.repo, versions.env
    clone = tmp_path / "reproduce"
    out = quantlake(["reproduce", f"lakehouse/{FIRST}", "--workdir", clone, "--keep"], repo, env, check=False)
    assert out.returncode == 0, out.stderr
    text = out.stderr
    assert f"REPRODUCED lakehouse/{FIRST}" in text
    assert "dvc status is clean" in text and "snapshot verified" in text
    assert f"{METRICS}: identical to the recorded one" in text
    assert "re-running snapshot returns select synthesize optimize backtest" in text

    cenv = repo_env(clone)
    first = git(["rev-parse", f"lakehouse/{FIRST}^{{commit}}"], repo, env).stdout
    assert git(["rev-parse", "HEAD"], clone, cenv).stdout == first
    # the re-run left every tracked file (dvc.lock, metrics, plots) as recorded, and DVC agrees
    assert git(["status", "--porcelain"], clone, cenv).stdout == ""
    assert "Data and pipelines are up to date" in dvc(["status"], clone, cenv).stdout
    # the six stages really ran in the clone: DVC recorded each run in the clone's own run-cache
    # (a pull brings no run records)
    assert len([p for p in (clone / ".dvc" / "cache" / "runs").rglob("*") if p.is_file()]) == len(ALPHA_STAGES)
    recorded = show(repo, env, f"lakehouse/{FIRST}", METRICS)
    assert (clone / METRICS).read_bytes() == recorded != (repo / METRICS).read_bytes()
    # the lakehouse is the old version, although the repository has moved on
    assert json.loads((clone / LAKE / "certified.json").read_text())["as_of"] == FIRST
    assert json.loads((repo / LAKE / "certified.json").read_text())["as_of"] == SECOND
    assert lake_files(clone / LAKE) != lake_files(repo / LAKE)
    snapshot = json.loads((clone / "artifacts/snapshot/manifest.json").read_text())
    assert snapshot["as_of"] == FIRST
    # the clone pulled from this repository's storage through an absolute url
    assert str(versions.storage) in (clone / ".dvc" / "config.local").read_text()


@pytest.mark.integration
def test_reproduce_reports_a_recorded_metric_that_does_not_come_back(versions, tmp_path):
    repo, env = versions.repo, versions.env
    recorded = show(repo, env, f"lakehouse/{SECOND}", METRICS)
    sharpe = json.loads(recorded)["sharpe"]
    tampered = recorded.replace(f'"sharpe": {sharpe}'.encode(), b'"sharpe": 9.999', 1)
    assert tampered != recorded
    # a commit like the second version but with a doctored metrics file (work tree untouched)
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, env=env, input=tampered, capture_output=True, check=True).stdout.decode().strip()
    ienv = {**env, "GIT_INDEX_FILE": str(tmp_path / "index")}
    git(["read-tree", f"lakehouse/{SECOND}"], repo, ienv)
    git(["update-index", "--cacheinfo", f"100644,{blob},{METRICS}"], repo, ienv)
    tree = git(["write-tree"], repo, ienv).stdout.strip()
    commit = git(["commit-tree", tree, "-p", f"lakehouse/{SECOND}^{{commit}}", "-m", "doctored metrics"], repo, env).stdout.strip()
    git(["update-ref", "refs/heads/doctored", commit], repo, env)

    out = quantlake(["reproduce", "doctored", "--stages", "backtest"], repo, env, check=False)
    assert out.returncode == 1, out.stderr
    assert "NOT REPRODUCED doctored" in out.stderr and "2 difference(s)" in out.stderr
    assert "after the pull: backtest (changed outs: artifacts/backtest/metrics.json modified)" in out.stderr
    assert f"{METRICS}: the re-run wrote other bytes than recorded" in out.stderr
    assert "does NOT match its dvc.lock" in out.stderr  # dvc status already sees the doctored file
    assert f"{METRICS} DIFFERS" in out.stderr
    assert '-  "sharpe": 9.999' in out.stderr and f'+  "sharpe": {sharpe}' in out.stderr
    assert "re-running backtest with the code of" in out.stderr
    assert git(["status", "--porcelain"], repo, env).stdout == ""  # the repository itself is untouched


@pytest.mark.integration
def test_reproduce_refuses_an_unknown_ref(versions):
    out = quantlake(["reproduce", "no-such-ref"], versions.repo, versions.env, check=False)
    assert out.returncode == 2 and "'no-such-ref' is not a tag, branch or commit" in out.stderr
