"""Operations on versions: publish a lakehouse version, reproduce a past run (issue 6).

A *version* is a git commit whose `dvc.lock` matches its work tree: every stage up to date,
the code the stages ran committed, the data they wrote pushed to a DVC remote. `publish`
makes one and names it with the tag `lakehouse/<as_of>`; `reproduce` checks one out in a fresh
clone, pulls its data and re-runs its Alpha Cycle to show that the recorded figures come back
byte for byte.

`quantlake publish` (crash-safe: each step is atomic on its own, and the order makes every
prefix of the run a consistent state that a re-run completes):

1. take `.dvc/tmp/quantlake-publish.lock` (a second publish waits, saying so);
2. refuse unless `dvc status` is clean (every stage, data and alpha, so the version carries
   the run on its lakehouse), the audit certified symbols for `data.as_of`, and no stage
   input (code, configs) differs from git: `dvc.lock` would otherwise name code no commit holds;
3. `dvc push` the data to the remote(s) FIRST: a tag never exists before its data is stored;
4. commit `dvc.lock`, the params, the `.gitignore` files DVC writes and the uncached outputs
   (metrics, plots) as "lakehouse <as_of>" (only those paths; other changes are left alone);
5. tag HEAD `lakehouse/<as_of>` (annotated). Tags never move: when that name is taken by
   another commit (the same day published again after a code or param change), the next free
   `lakehouse/<as_of>.2`, `.3`, ... is used; when HEAD already carries a tag of that as_of,
   nothing is tagged ("already published") and re-running is a no-op apart from the push;
6. with `--git-push [REMOTE]`, push the branch and the tag to the git remote.

Killed between 3 and 4: no commit, no tag, data already stored; killed between 4 and 5: the
commit exists untagged and a re-run tags it; killed after 5: a re-run pushes again and says
"already published".

`quantlake reproduce [REF]` (default: the newest `lakehouse/*` tag): `git clone` this
repository into a temporary folder, check REF out, give the clone this repository's DVC
remotes (urls made absolute, so the default `../../quantlake-storage` still points at this
repository's storage; `.dvc/config.local` credentials included), `dvc pull`, check that
`dvc status` is clean, verify the snapshot against its manifest (every sha256 and the
snapshot_id), re-run the alpha stages with `dvc repro --force --single-item` using the code of
REF (the clone's `src/` comes first on PYTHONPATH) and compare: the metrics files byte for byte
(a unified diff when they differ) and every output hash of the re-run stages with REF's
`dvc.lock`. The data stages are never re-run (they would ask the network). Exit status 0 means
reproduced, 1 means a difference (listed), 2 means it could not be checked.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import yaml

from .contracts import QuantlakeError
from .storage import file_lock, read_json

ALPHA_STAGES = ("snapshot", "returns", "select", "synthesize", "optimize", "backtest")
SNAPSHOT_DIR = "artifacts/snapshot"
TAG_PREFIX = "lakehouse/"
PUBLISH_LOCK = ".dvc/tmp/quantlake-publish.lock"
PIPELINE_FILES = ("dvc.yaml", "dvc.lock")
_TAG_RE = re.compile(r"^lakehouse/(\d{4}-\d{2}-\d{2})(?:\.(\d+))?$")

Log = Callable[[str], None]


class OpsError(QuantlakeError):
    """A publish or reproduce step failed; the message says which and why."""


# --------------------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class PipelineFiles:
    """The paths of a `dvc.yaml` that matter to a version."""

    deps: tuple[str, ...]  # stage inputs read from the work tree (code, configs, data)
    params_files: tuple[str, ...]  # params files the stages read
    git_outputs: tuple[str, ...]  # outputs with `cache: false`: git keeps them
    cached_outputs: tuple[str, ...]  # outputs DVC keeps (git ignores them)

    @property
    def gitignores(self) -> tuple[str, ...]:
        """The `.gitignore` files DVC writes next to its cached outputs."""
        return tuple(sorted({_join(_parent(p), ".gitignore") for p in self.cached_outputs}))

    def version_paths(self) -> tuple[str, ...]:
        """Every git-tracked path a publish commits."""
        return tuple(sorted({*PIPELINE_FILES, *self.params_files, *self.git_outputs, *self.gitignores}))


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _entries(items) -> Iterable[tuple[str, dict]]:
    """`outs`/`metrics`/`plots` entries as (path, options)."""
    for item in items or []:
        if isinstance(item, str):
            yield item, {}
        elif isinstance(item, dict):
            for path, opts in item.items():
                yield str(path), dict(opts or {})


def pipeline_files(dvc_yaml: dict) -> PipelineFiles:
    """Deps, params files and outputs of every stage of a parsed `dvc.yaml`."""
    deps, params, git_outs, cached = set(), set(), set(), set()
    for name, stage in (dvc_yaml.get("stages") or {}).items():
        if not isinstance(stage, dict) or "cmd" not in stage:
            raise OpsError(f"dvc.yaml: stage {name!r} is not a plain stage (foreach/matrix stages are not supported)")
        deps.update(str(d).rstrip("/") for d in stage.get("deps") or [])
        for entry in stage.get("params") or []:
            if isinstance(entry, dict):
                params.update(str(f) for f in entry)
            else:
                params.add("params.yaml")
        for key in ("outs", "metrics", "plots"):
            for path, opts in _entries(stage.get(key)):
                (cached if opts.get("cache", True) else git_outs).add(path.rstrip("/"))
    return PipelineFiles(tuple(sorted(deps)), tuple(sorted(params)), tuple(sorted(git_outs)), tuple(sorted(cached)))


def stage_metrics(dvc_yaml: dict, stages: Iterable[str]) -> list[str]:
    """The metrics files the given stages write, in stage order."""
    specs = dvc_yaml.get("stages") or {}
    return [p.rstrip("/") for s in stages for p, _ in _entries((specs.get(s) or {}).get("metrics"))]


def describe_stale(status: dict) -> list[str]:
    """One line per stage `dvc status --json` reports, saying what changed."""
    lines = []
    for stage, changes in status.items():
        what = []
        for change in changes if isinstance(changes, list) else [changes]:
            if isinstance(change, dict):
                for kind, paths in change.items():
                    items = ", ".join(f"{p} {s if isinstance(s, str) else 'modified'}" for p, s in paths.items()) if isinstance(paths, dict) else str(paths)
                    what.append(f"{kind}: {items}")
            else:
                what.append(str(change))
        lines.append(f"{stage} ({'; '.join(what)})")
    return lines


def porcelain_paths(porcelain_z: str) -> list[str]:
    """Paths of `git status --porcelain=v1 -z` (renames give both names)."""
    out, fields, i = [], porcelain_z.split("\0"), 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        out.append(entry[3:])
        if entry[0] in "RC":  # a rename or copy is followed by its source path
            out.append(fields[i])
            i += 1
    return out


def uncommitted_inputs(changed: Iterable[str], deps: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """Changed or untracked paths that a stage reads and a publish would not commit."""
    allowed, deps = set(allowed), [d.rstrip("/") for d in deps]
    return sorted(p for p in set(changed) if p not in allowed and any(p == d or p.startswith(d + "/") for d in deps))


def parse_tag(name: str) -> tuple[str, int] | None:
    """`lakehouse/2026-11-20` -> ('2026-11-20', 1); `lakehouse/2026-11-20.3` -> (..., 3)."""
    m = _TAG_RE.match(name)
    return (m.group(1), int(m.group(2) or 1)) if m else None


def tag_name(as_of: str, n: int = 1) -> str:
    return f"{TAG_PREFIX}{as_of}" if n == 1 else f"{TAG_PREFIX}{as_of}.{n}"


def choose_tag(as_of: str, tags: dict[str, str], head: str) -> tuple[str, bool]:
    """(tag name, already at head) for publishing `head` as the lakehouse of `as_of`.

    `tags` maps tag name -> commit. A tag of this as_of already on `head` is reused; otherwise
    the first free name (`lakehouse/<as_of>`, then `.2`, `.3`, ...): tags never move.
    """
    taken = {}
    for name, commit in tags.items():
        parsed = parse_tag(name)
        if parsed and parsed[0] == as_of:
            if commit == head:
                return name, True
            taken[parsed[1]] = name
    return tag_name(as_of, max(taken, default=0) + 1), False


def latest_tag(names: Iterable[str]) -> str | None:
    """The newest lakehouse tag: the latest as_of, then the highest suffix."""
    parsed = [(p, n) for n in names if (p := parse_tag(n))]
    return max(parsed)[1] if parsed else None


def remote_settings(listing: str) -> tuple[str | None, dict[str, dict[str, str]]]:
    """(default remote, {name: {option: value}}) from `dvc config --list` (later lines win).

    DVC prints local paths already resolved against the config file that holds them.
    """
    default, remotes = None, {}
    for line in listing.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        parts = key.split(".")
        if key == "core.remote":
            default = value
        elif parts[0] == "remote" and len(parts) >= 3:
            remotes.setdefault(".".join(parts[1:-1]), {})[parts[-1]] = value
    return default, remotes


def lock_outputs(lock: dict, stages: Iterable[str]) -> dict[str, str]:
    """{output path: md5} of the given stages in a parsed `dvc.lock`."""
    out = {}
    for stage in stages:
        for entry in ((lock.get("stages") or {}).get(stage) or {}).get("outs") or []:
            out[entry["path"]] = entry.get("md5") or entry.get("hash", "")
    return out


def output_differences(recorded: dict[str, str], reproduced: dict[str, str]) -> list[str]:
    """One line per output whose hash differs (or that appears or disappears)."""
    lines = []
    for path in sorted(set(recorded) | set(reproduced)):
        old, new = recorded.get(path), reproduced.get(path)
        if old != new:
            lines.append(f"{path}: recorded {old or 'nothing'}, reproduced {new or 'nothing'}")
    return lines


def text_diff(recorded: bytes, reproduced: bytes, name: str, max_lines: int = 80) -> str:
    """A unified diff of two versions of a text file ('' when the bytes are equal)."""
    if recorded == reproduced:
        return ""
    a = recorded.decode("utf-8", "replace").splitlines(keepends=True)
    b = reproduced.decode("utf-8", "replace").splitlines(keepends=True)
    lines = list(difflib.unified_diff(a, b, f"recorded/{name}", f"reproduced/{name}"))
    if not lines:  # bytes that are not valid UTF-8 decode alike
        return f"--- recorded/{name}\n+++ reproduced/{name}\n(the text is equal; the bytes differ)\n"
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more diff lines)\n"]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# --------------------------------------------------------------------------- git and dvc


def _tail(text: str, n: int = 25) -> str:
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return "\n".join(lines[-n:])


@dataclass
class Tools:
    """Runs `git` and `dvc` (the `dvc` of this Python) in one folder."""

    cwd: Path
    env: dict | None = None

    def run(self, cmd: list[str], *, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=self.cwd, env=env or self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            shown = " ".join(cmd[2:] if cmd[:3] == [sys.executable, "-m", "dvc"] else cmd)
            raise OpsError(f"`{shown}` failed in {self.cwd} (exit {proc.returncode}):\n{_tail(proc.stderr + proc.stdout)}")
        return proc

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(["git", *args], check=check)

    def dvc(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "dvc", *args], check=check, env=env)

    def head(self) -> str | None:
        proc = self.git("rev-parse", "--verify", "--quiet", "HEAD", check=False)
        return proc.stdout.strip() or None

    def lakehouse_tags(self) -> dict[str, str]:
        """{tag name: commit} of every `lakehouse/*` tag."""
        out = self.git("for-each-ref", "--format=%(refname:strip=2)%00%(objectname)%00%(*objectname)", "refs/tags/lakehouse/").stdout
        tags = {}
        for line in out.splitlines():
            name, obj, peeled = (line.split("\0") + ["", ""])[:3]
            tags[name] = peeled or obj
        return tags

    def dvc_status(self) -> dict:
        text = self.dvc("status", "--json").stdout.strip()
        try:
            return json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            raise OpsError(f"`dvc status --json` printed something that is not JSON: {_tail(text, 5)}") from exc


def repository_root(cwd: Path) -> Path:
    """The work tree root; publish and reproduce run there (like `dvc`)."""
    cwd = Path(cwd).resolve()
    proc = Tools(cwd).git("rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise OpsError(f"{cwd} is not inside a git repository")
    root = Path(proc.stdout.strip()).resolve()
    if not (root / ".dvc").is_dir():
        raise OpsError(f"{root} is not a DVC repository (no .dvc/ folder)")
    if root != cwd:
        raise OpsError(f"run this at the root of the repository ({root}), not in {cwd}")
    return root


def _load_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise OpsError(f"{path}: cannot read: {exc}") from exc


def _lakehouse_md5(lock: dict, lakehouse: str) -> str | None:
    for stage in (lock.get("stages") or {}).values():
        for entry in stage.get("outs") or []:
            if entry.get("path", "").rstrip("/") == lakehouse.rstrip("/"):
                return entry.get("md5")
    return None


# --------------------------------------------------------------------------- publish


@dataclass
class Published:
    tag: str
    commit: str
    as_of: str
    certified: int
    lakehouse_md5: str | None
    remotes: list[str]
    committed: bool  # this run made the version commit
    tagged: bool  # this run created the tag (False: already published)


def _certified_count(lakehouse: Path, as_of: str) -> int:
    path = lakehouse / "certified.json"
    if not path.exists():
        raise OpsError(f"{path} does not exist: the audit has not published a lakehouse (run `dvc repro`)")
    doc = read_json(path)
    if doc.get("as_of") != as_of:
        raise OpsError(f"{path} certifies as_of {doc.get('as_of')}, but data.as_of is {as_of}: run `dvc repro`")
    n = len(doc.get("symbols") or {})
    if n == 0:
        raise OpsError(f"{path} certifies no symbol for {as_of}: nothing to publish")
    return n


def publish(
    root: Path,
    *,
    params_file: str = "params.yaml",
    lakehouse: str = "data/lakehouse",
    remotes: list[str] | None = None,
    git_remote: str | None = None,
    wait: float = 600.0,
    log: Log = lambda msg: print(msg, file=sys.stderr),
) -> Published:
    """Publish the work tree's lakehouse version (see the module docstring for the steps)."""
    root = Path(root)
    tools = Tools(root)
    with file_lock(root / PUBLISH_LOCK, timeout=wait, what="another `quantlake publish`", on_wait=log):
        from .params import load_params

        as_of = load_params(root / params_file).as_of.isoformat()
        files = pipeline_files(_load_yaml(root / "dvc.yaml"))

        stale = describe_stale(tools.dvc_status())
        if stale:
            raise OpsError("not publishing: these stages are not up to date (run `dvc repro` first):\n  " + "\n  ".join(stale))
        certified = _certified_count(root / lakehouse, as_of)
        changed = porcelain_paths(tools.git("status", "--porcelain=v1", "-z", "--untracked-files=all").stdout)
        dirty = uncommitted_inputs(changed, files.deps, files.version_paths())
        if dirty:
            raise OpsError(
                "not publishing: stage inputs differ from git, so dvc.lock would name code no commit holds; "
                "commit them first:\n  " + "\n  ".join(dirty)
            )

        if not remotes:
            default = tools.dvc("remote", "default", check=False).stdout.strip()
            if not default:
                raise OpsError("no DVC remote to push to: set a default (`dvc remote default NAME`) or pass --remote (docs/operations.md)")
            remotes = [default]
        for remote in remotes:  # the data first: a tag must never name data no remote holds
            out = tools.dvc("push", "-r", remote)
            log(f"publish: data pushed to remote {remote!r}: {_tail(out.stdout + out.stderr, 1) or 'done'}")

        lock = _load_yaml(root / "dvc.lock")
        md5 = _lakehouse_md5(lock, lakehouse)
        summary = f"{certified} certified symbols; {lakehouse} md5 {md5}"
        paths = [p for p in files.version_paths() if (root / p).exists()]
        tools.git("add", "--", *paths)
        committed = tools.git("diff", "--cached", "--quiet", "--", *paths, check=False).returncode != 0
        if committed:
            tools.git("commit", "-q", "-m", f"lakehouse {as_of}\n\n{summary}\n", "--", *paths)
        head = tools.head()
        if head is None:
            raise OpsError("the repository has no commit to tag")
        name, exists = choose_tag(as_of, tools.lakehouse_tags(), head)
        if exists:
            log(f"publish: already published as {name} (commit {head[:10]})")
        else:
            tools.git("tag", "-a", name, "-m", f"lakehouse {as_of}: {summary}", head)
            log(f"publish: tagged {name} -> commit {head[:10]} ({summary})")
        if git_remote:
            tools.git("push", "-q", git_remote, "HEAD", f"refs/tags/{name}")
            log(f"publish: pushed HEAD and {name} to git remote {git_remote!r}")
        return Published(name, head, as_of, certified, md5, list(remotes), committed, not exists)


def cmd_publish(args) -> int:
    root = repository_root(Path.cwd())
    result = publish(
        root,
        params_file=args.params,
        lakehouse=args.lakehouse,
        remotes=args.remote,
        git_remote=args.git_push,
        wait=args.wait,
        log=_say,
    )
    print(result.tag)
    return 0


# --------------------------------------------------------------------------- reproduce


@dataclass
class Reproduction:
    ref: str
    commit: str
    clone: Path
    as_of: str | None = None
    lakehouse_md5: str | None = None
    snapshot_id: str | None = None
    stale_after_pull: list[str] = field(default_factory=list)  # stages `dvc status` flags after the pull
    differences: list[str] = field(default_factory=list)  # one line per output that did not come back
    diffs: list[str] = field(default_factory=list)  # unified diffs of the metrics files that differ

    @property
    def problems(self) -> list[str]:
        return [f"after the pull: {s}" for s in self.stale_after_pull] + self.differences

    @property
    def identical(self) -> bool:
        return not self.problems


def _write_remotes(clone: Path, default: str | None, remotes: dict[str, dict[str, str]]) -> None:
    """Give the clone the original's remotes (absolute urls, credentials) in its config.local."""
    from configobj import ConfigObj  # DVC's own config library

    conf = ConfigObj(encoding="utf-8")
    if default:
        conf["core"] = {"remote": default}
    for name, opts in sorted(remotes.items()):
        conf[f'remote "{name}"'] = dict(opts)
    path = clone / ".dvc" / "config.local"
    with open(path, "wb") as fh:
        conf.write(fh)
    os.chmod(path, 0o600)  # it may hold credentials


def _stage_env(clone: Path) -> dict:
    """The environment the re-run stages get: REF's code first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(clone / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _check_code_origin(tools: Tools, clone: Path, env: dict) -> None:
    if not (clone / "src" / "quantlake").is_dir():
        return
    proc = tools.run([sys.executable, "-c", "import quantlake; print(quantlake.__file__)"], env=env)
    origin = Path(proc.stdout.strip()).resolve()
    if clone.resolve() not in origin.parents:
        raise OpsError(f"the stages would import quantlake from {origin}, not from the checked-out {clone / 'src'}")


def reproduce(
    root: Path,
    ref: str | None = None,
    *,
    workdir: Path | None = None,
    remote: str | None = None,
    stages: Iterable[str] = ALPHA_STAGES,
    keep: bool = False,
    lakehouse: str = "data/lakehouse",
    log: Log = lambda msg: print(msg, file=sys.stderr),
) -> Reproduction:
    """Check REF out in a fresh clone, pull its data, re-run its alpha stages and compare."""
    root = Path(root)
    origin = Tools(root)
    ref, commit = _resolve(origin, ref)
    order = [s for s in ALPHA_STAGES if s in set(stages)]
    unknown = sorted(set(stages) - set(ALPHA_STAGES))
    if unknown or not order:
        raise OpsError(f"--stages: {unknown or 'none given'}; choose among the alpha stages {', '.join(ALPHA_STAGES)}")
    default, remotes = remote_settings(origin.dvc("config", "--list").stdout)

    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="quantlake-reproduce-"))
    if base.exists() and any(base.iterdir()):
        raise OpsError(f"--workdir {base} is not empty")
    clone = base.resolve()
    result = Reproduction(ref, commit, clone)
    try:
        tools = _clone_at(origin, root, clone, commit)
        _write_remotes(clone, default, remotes)
        log(f"reproduce: {ref} = commit {commit[:10]}, cloned into {clone}; pulling the data from remote {remote or default!r}")
        tools.dvc("pull", *(["-r", remote] if remote else []))
        _check_checkout(tools, clone, lakehouse, result, log)
        _rerun_and_compare(tools, clone, order, result, log)
        return result
    finally:
        if keep:
            log(f"reproduce: clone kept at {clone}")
        else:
            shutil.rmtree(clone, ignore_errors=True)


def _resolve(origin: Tools, ref: str | None) -> tuple[str, str]:
    """(ref, commit); no ref means the newest lakehouse tag."""
    if ref is None:
        ref = latest_tag(origin.lakehouse_tags())
        if ref is None:
            raise OpsError("no lakehouse/* tag to reproduce: publish one (`quantlake publish`) or name a commit")
    proc = origin.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if proc.returncode != 0:
        raise OpsError(f"{ref!r} is not a tag, branch or commit of {origin.cwd}")
    return ref, proc.stdout.strip()


def _clone_at(origin: Tools, root: Path, clone: Path, commit: str) -> Tools:
    origin.run(["git", "clone", "-q", "--no-checkout", "--", str(root), str(clone)])
    tools = Tools(clone)
    if tools.git("checkout", "-q", "--detach", commit, check=False).returncode != 0:
        tools.git("fetch", "-q", "origin", commit)  # a commit no branch or tag reaches
        tools.git("checkout", "-q", "--detach", commit)
    return tools


def _check_checkout(tools: Tools, clone: Path, lakehouse: str, result: Reproduction, log: Log) -> None:
    """After the pull: which lakehouse it is, `dvc status`, the snapshot against its manifest."""
    from .alpha.snapshot import SnapshotError, load_snapshot

    result.lakehouse_md5 = _lakehouse_md5(_load_yaml(clone / "dvc.lock"), lakehouse)
    cert = clone / lakehouse / "certified.json"
    result.as_of = read_json(cert).get("as_of") if cert.exists() else None
    log(f"reproduce: lakehouse as_of {result.as_of}, {lakehouse} md5 {result.lakehouse_md5}")
    result.stale_after_pull = describe_stale(tools.dvc_status())
    if result.stale_after_pull:
        log("reproduce: the checkout does NOT match its dvc.lock:\n  " + "\n  ".join(result.stale_after_pull))
    else:
        log("reproduce: dvc status is clean (every output matches dvc.lock)")
    try:
        snapshot = load_snapshot(clone / SNAPSHOT_DIR)  # every sha256 and the snapshot_id
    except SnapshotError as exc:
        result.differences.append(f"{SNAPSHOT_DIR}: {exc}")
        log(f"reproduce: the pulled snapshot does NOT match its manifest: {exc}")
    else:
        result.snapshot_id = snapshot.snapshot_id
        log(f"reproduce: snapshot verified: {len(snapshot.manifest['files'])} files match manifest.json, snapshot_id {snapshot.snapshot_id[:16]}")


def _rerun_and_compare(tools: Tools, clone: Path, order: list[str], result: Reproduction, log: Log) -> None:
    """Force-run the alpha stages with the clone's code; compare metrics bytes and output hashes."""
    recorded_lock = _load_yaml(clone / "dvc.lock")
    metrics = stage_metrics(_load_yaml(clone / "dvc.yaml"), order)
    before = {p: (clone / p).read_bytes() for p in metrics if (clone / p).exists()}

    env = _stage_env(clone)
    _check_code_origin(tools, clone, env)
    log(f"reproduce: re-running {' '.join(order)} with the code of {result.commit[:10]}")
    out = tools.dvc("repro", "--force", "--single-item", *order, env=env)
    ran = re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr)
    if [s for s in order if s not in ran]:  # e.g. an output restored from DVC's run-cache
        raise OpsError(f"dvc repro did not run every stage asked (ran: {', '.join(ran) or 'none'}):\n{_tail(out.stdout + out.stderr)}")

    for path, old in sorted(before.items()):
        new = (clone / path).read_bytes() if (clone / path).exists() else b""
        diff = text_diff(old, new, path)
        if diff:
            result.diffs.append(diff)
            result.differences.append(f"{path}: the re-run wrote other bytes than recorded (diff above)")
            log(f"reproduce: {path} DIFFERS from the recorded one:\n{diff.rstrip()}")
        else:
            log(f"reproduce: {path}: identical to the recorded one ({len(old)} bytes)")
    recorded = lock_outputs(recorded_lock, order)
    changed = output_differences(recorded, lock_outputs(_load_yaml(clone / "dvc.lock"), order))
    result.differences += changed
    if changed:
        log("reproduce: outputs whose hash differs from the recorded dvc.lock:\n  " + "\n  ".join(changed))
    else:
        log(f"reproduce: the hashes of all {len(recorded)} outputs of the re-run stages match the recorded dvc.lock")


def cmd_reproduce(args) -> int:
    root = repository_root(Path.cwd())
    result = reproduce(
        root,
        args.ref,
        workdir=Path(args.workdir) if args.workdir else None,
        remote=args.remote,
        stages=args.stages or ALPHA_STAGES,
        keep=args.keep,
        lakehouse=args.lakehouse,
        log=_say,
    )
    if result.identical:
        _say(f"reproduce: REPRODUCED {result.ref} (commit {result.commit[:10]}): every re-run output is byte-identical")
        return 0
    problems = result.problems
    _say(f"reproduce: NOT REPRODUCED {result.ref} (commit {result.commit[:10]}): {len(problems)} difference(s):\n  " + "\n  ".join(problems))
    return 1


# --------------------------------------------------------------------------- CLI


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def register(sub) -> None:
    """Add `publish` and `reproduce` to the `quantlake` parser."""
    s = sub.add_parser(
        "publish",
        help="commit dvc.lock, tag lakehouse/<as_of> and push the data of an up-to-date pipeline",
        description="Push the data, commit the version and tag it lakehouse/<as_of> (see docs/operations.md).",
    )
    s.add_argument("--remote", action="append", help="DVC remote to push to (repeatable; default: the default remote)")
    s.add_argument("--git-push", nargs="?", const="origin", default=None, metavar="GIT_REMOTE", help="also push the branch and the tag (default remote: origin)")
    s.add_argument("--lakehouse", default="data/lakehouse", help="the lakehouse folder (default: %(default)s)")
    s.add_argument("--wait", type=float, default=600.0, help="seconds to wait for another publish to finish (default 600)")
    s.set_defaults(func=cmd_publish)

    s = sub.add_parser(
        "reproduce",
        help="re-run a past version's alpha stages in a fresh clone and compare them byte for byte",
        description="Clone, check REF out, dvc pull, verify the snapshot, re-run the alpha stages, compare.",
    )
    s.add_argument("ref", nargs="?", help="tag or commit (default: the newest lakehouse/* tag)")
    s.add_argument("--workdir", help="folder for the clone (default: a temporary folder)")
    s.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    s.add_argument("--remote", help="DVC remote to pull from (default: the default remote)")
    s.add_argument("--stages", nargs="+", choices=ALPHA_STAGES, help="re-run only these alpha stages (default: all)")
    s.add_argument("--lakehouse", default="data/lakehouse", help="the lakehouse folder (default: %(default)s)")
    s.set_defaults(func=cmd_reproduce)
