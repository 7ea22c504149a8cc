"""Building temporary git + DVC repositories from this project's files, for integration tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from quantlake.storage import sha256_file

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["pyproject.toml", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "configs", "src", ".dvc/config", ".dvc/.gitignore", ".dvc/plots"]
NOW = "2026-11-26T12:00:00Z"


def run(cmd, cwd, env, check=True):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def dvc(args, cwd, env, check=True):
    return run([sys.executable, "-m", "dvc", *args], cwd, env, check)


def git(args, cwd, env, check=True):
    return run(["git", *args], cwd, env, check)


def quantlake(args, cwd, env, check=True):
    return run([sys.executable, "-m", "quantlake.cli", *args], cwd, env, check)


def repo_env(repo: Path, **extra) -> dict:
    """The environment of a command in `repo`: its own code, a fixed clock, a git identity."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(repo / "src"),
        "QUANTLAKE_NOW": NOW,
        "GIT_AUTHOR_NAME": "quantlake-test",
        "GIT_AUTHOR_EMAIL": "test@quantlake.invalid",
        "GIT_COMMITTER_NAME": "quantlake-test",
        "GIT_COMMITTER_EMAIL": "test@quantlake.invalid",
        "DVC_NO_ANALYTICS": "1",
        **extra,
    }


def make_project(dst: Path, *, start: str = "2024-01-01", limit: int | None = 20) -> tuple[Path, dict]:
    """A git repository made of this project's files, with a shorter history (and universe)."""
    dst.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    params = dst / "params.yaml"
    params.write_text(params.read_text().replace("start: '2020-01-01'", f"start: '{start}'"))
    assert f"start: '{start}'" in params.read_text()
    if limit is not None:
        scanners = dst / "configs" / "scanners" / "_base.yaml"
        scanners.write_text(scanners.read_text().replace("limit: 100", f"limit: {limit}"))
        assert f"limit: {limit}" in scanners.read_text()
    env = repo_env(dst)
    git(["init", "-q", "-b", "main"], dst, env)
    git(["add", "-A"], dst, env)
    git(["commit", "-qm", "init"], dst, env)
    return dst, env


def lake_files(path: Path) -> dict:
    return {str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()}


