"""`quantlake <command>`: one sub-command per DVC stage, plus operations.

Every stage command is a thin call into a stage function (`data/stages.py`, `alpha/stages.py`):
parse the arguments, load and check params.yaml once (`quantlake.params`), call, print. Stage
modules are imported inside the commands, so `--help`, `--version` and light commands do not
pay for scipy, scikit-learn or matplotlib. The wall clock is read here only (`QUANTLAKE_NOW`
overrides it, for tests and replays): to refuse a `data.as_of` that has not closed yet, and
for ingest's freshness bookkeeping; never inside the math.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import subprocess
import signal
import sys
from pathlib import Path

from .contracts import ContractError, QuantlakeError, check_as_of, last_closed_day, parse_date
from .storage import atomic_write_bytes

log = logging.getLogger("quantlake")


def now_utc() -> dt.datetime:
    override = os.environ.get("QUANTLAKE_NOW")
    if override:
        value = dt.datetime.fromisoformat(override.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.now(dt.timezone.utc)


def load_checked_params(args):
    """params.yaml as the typed model, with `data.as_of` checked against the clock (every stage)."""
    from .params import load_params

    return load_params(args.params, now=now_utc())


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def version() -> str:
    """The installed package's version (package metadata), or the source tree's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("quantlake")
    except PackageNotFoundError:
        from . import __version__

        return __version__


# --------------------------------------------------------------------------- data cycle


def cmd_discover(args) -> int:
    from .data import stages

    doc = stages.run_discover(load_checked_params(args), Path(args.scanners), Path(args.out))
    _say(f"discover: {len(doc['candidates'])} candidates from {len(doc['scanners'])} scanner(s) on {doc['source']} as of {doc['as_of']}")
    return 0


def cmd_ingest(args) -> int:
    params = load_checked_params(args)
    from .data import stages

    summary = stages.run_ingest(params, Path(args.candidates), Path(args.bars), Path(args.quarantine),
                                now=now_utc(), symbols=args.symbols, log=_say)
    _say(summary.line())
    return 1 if summary.failed and args.strict else 0


def cmd_repair(args) -> int:
    params = load_checked_params(args)
    from .data import stages

    summary = stages.run_repair(params, Path(args.root), log=_say)
    _say(summary.line())
    return 1 if summary.failed and args.strict else 0


def cmd_features(args) -> int:
    params = load_checked_params(args)
    from .data import stages

    summary = stages.run_features(params, Path(args.root))
    for detail in summary.failed.values():
        _say(f"features: FAILED {detail}")
    _say(summary.line())
    return 0


def cmd_audit(args) -> int:
    params = load_checked_params(args)
    from .data import stages

    result = stages.run_audit(params, Path(args.root), Path(args.candidates) if args.candidates else None)
    r = result.report
    by = ", ".join(f"{k} {v}" for k, v in r["by_status"].items())
    _say(
        f"audit: {r['symbols']} symbols ({by}); {r['certified']} certified; "
        f"{result.linked} linked, {result.written} written with repairs, {result.copied} copied"
    )
    if r["missing_candidates"]:
        _say(f"audit: {len(r['missing_candidates'])} candidate(s) have no staged data: {', '.join(r['missing_candidates'][:10])}")
    for outage in r.get("outages", []):
        _say(f"audit: exchange-wide outage {outage['from']}..{outage['to']} ({outage.get('exchange', '')}, {outage['symbols']} symbols)")
    return 0


def cmd_report(args) -> int:
    load_checked_params(args)
    from .data import stages

    _say(f"report: {stages.run_report(Path(args.root), Path(args.out))}")
    return 0


def cmd_migrate(args) -> int:
    from .data import stages

    _say(stages.run_migrate(Path(args.root), log=_say).line())
    return 0


# --------------------------------------------------------------------------- alpha cycle


def _alpha(stage: str):
    """Every alpha command blocks outbound connections before doing any work."""
    from .alpha.netguard import block_network

    block_network(stage)
    from .alpha import stages

    return stages


def cmd_snapshot(args) -> int:
    params = load_checked_params(args)
    stages = _alpha("snapshot")
    snap = stages.run_snapshot(Path(args.lakehouse), Path(args.out), params.as_of)
    _say(f"snapshot: {len(snap.manifest['files'])} certified files as of {snap.manifest['as_of']}, snapshot_id {snap.snapshot_id[:16]}")
    return 0


def cmd_returns(args) -> int:
    params = load_checked_params(args)
    stages = _alpha("returns")
    returns = stages.run_returns(Path(args.snapshot), Path(args.out), params)
    _say(f"returns: {returns.shape[0]} days x {returns.shape[1]} symbols")
    return 0


def cmd_select(args) -> int:
    params = load_checked_params(args)
    stages = _alpha("select")
    doc = stages.run_select(Path(args.alpha), Path(args.snapshot), params)
    _say(f"select: {len(doc['selected'])} selected in {len(doc['clusters'])} clusters, {len(doc['vetoes'])} vetoed, as of {doc['as_of']}")
    return 0


def cmd_synthesize(args) -> int:
    params = load_checked_params(args)
    stages = _alpha("synthesize")
    atoms = stages.run_synthesize(Path(args.alpha), Path(args.snapshot), params)
    _say(f"synthesize: {len(atoms.atoms)} atoms")
    return 0


def cmd_optimize(args) -> int:
    params = load_checked_params(args)
    stages = _alpha("optimize")
    doc = stages.run_optimize(Path(args.alpha), Path(args.snapshot), params)
    top = sorted(doc["weights"].items(), key=lambda kv: -abs(kv[1]))[:5]
    _say(f"optimize ({doc['method']}): " + ", ".join(f"{s} {w:.1%}" for s, w in top) + (" ..." if len(doc["weights"]) > 5 else ""))
    return 0


def cmd_backtest(args) -> int:
    params = load_checked_params(args)
    stages = _alpha("backtest")
    metrics = stages.run_backtest(Path(args.alpha), Path(args.snapshot), Path(args.out), params)
    for line in stages.backtest_summary(metrics, Path(args.out)):
        _say(line)
    return 0


def cmd_sweep(args) -> int:
    params = load_checked_params(args)
    stages = _alpha("sweep")
    doc = stages.run_sweep(Path(args.alpha), Path(args.snapshot), Path(args.out), params, say=_say)
    best = doc.get("best") or {}
    _say(f"sweep: {doc['trials']} points, {doc['failed']} failed; best {best.get('params')} Sharpe {best.get('sharpe') or float('nan'):.2f}")
    if "dsr" in doc:
        _say(f"sweep: deflated Sharpe ratio {doc['dsr']['dsr']:.1%}, probability of backtest overfitting {doc['pbo']['pbo']:.1%}")
    return 0


# --------------------------------------------------------------------------- operations


def set_as_of(params_path: Path, as_of: dt.date) -> bool:
    """Rewrite `data.as_of` in params.yaml in place, keeping comments and layout."""
    text = params_path.read_text()
    pattern = re.compile(r"^(data:\s*\n(?:[ \t]+.*\n|\s*\n)*?[ \t]+as_of:[ \t]*)(['\"]?)([0-9-]+)\2", re.M)
    match = pattern.search(text)
    if not match:
        raise ContractError(f"{params_path}: no `as_of:` key under `data:`")
    if match.group(3) == as_of.isoformat():
        return False
    new = text[: match.start()] + f"{match.group(1)}'{as_of.isoformat()}'" + text[match.end() :]
    atomic_write_bytes(params_path, new.encode())
    return True


def cmd_advance(args) -> int:
    params_path = Path(args.params)
    target = parse_date(args.as_of, field="--as-of") if args.as_of else last_closed_day(now_utc())
    check_as_of(target, now_utc())
    from .params import load_params

    current = load_params(params_path).as_of  # checked, but not against the clock: advance is how to fix it
    if target < current and not args.allow_backwards:
        raise ContractError(f"--as-of {target} is before data.as_of {current}; pass --allow-backwards to go back")
    changed = set_as_of(params_path, target)
    _say(f"advance: data.as_of {current} -> {target}" if changed else f"advance: data.as_of already {target}")
    if args.no_repro:
        return 0
    cmd = ["dvc", "repro", *args.stages]
    _say("advance: " + " ".join(cmd))
    code = subprocess.call(cmd)
    return code or cmd_digest(argparse.Namespace(against=None, no_save=False))


def cmd_digest(args) -> int:
    from .digest import run_digest

    for line in run_digest(Path("."), against=args.against, save=not args.no_save):
        print(line, flush=True)
    return 0


# --------------------------------------------------------------------------- entry point

DATA_ROOT_HELP = "the data folder holding staging/ and lakehouse/ (default: %(default)s)"


def _data_commands(sub) -> None:
    s = sub.add_parser("discover", help="run the scanners on the source's markets and write the candidates",
                       description="Data Cycle stage 1: list the source's markets as of data.as_of and keep every candidate the scanners select.")
    s.add_argument("--scanners", default="configs/scanners", help="folder of scanner YAML files (default: %(default)s)")
    s.add_argument("--out", default="data/export/candidates.json", help="candidates file to write (default: %(default)s)")
    s.set_defaults(func=cmd_discover)

    s = sub.add_parser("ingest", help="fetch what is missing, sanitize it with the quality gates, stage it",
                       description="Data Cycle stage 2: bring every candidate's staged bars up to data.as_of, fetching only the missing days.")
    s.add_argument("--candidates", default="data/export/candidates.json", help="candidates file from discover (default: %(default)s)")
    s.add_argument("--bars", default="data/staging/bars", help="staged bars folder (default: %(default)s)")
    s.add_argument("--quarantine", default="data/staging/quarantine", help="quarantine folder (default: %(default)s)")
    s.add_argument("--symbols", nargs="*", metavar="SYMBOL", help="only these candidates (EXCHANGE:SYMBOL)")
    s.add_argument("--strict", action="store_true", help="exit non-zero if any symbol failed")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("repair", help="re-fetch exactly the gap windows of the staged series",
                       description="Data Cycle stage 3: ask the source again for the days missing in each recorded gap.")
    s.add_argument("--root", default="data", help=DATA_ROOT_HELP)
    s.add_argument("--strict", action="store_true", help="exit non-zero if any symbol failed")
    s.set_defaults(func=cmd_repair)

    s = sub.add_parser("migrate", help="convert data/ from the one-file-per-table layout to fragmented tables (same rows)",
                       description="Operation (not a DVC stage): rewrite every table of data/ in the fragmented layout, keeping every row.")
    s.add_argument("--root", default="data", help=DATA_ROOT_HELP)
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("features", help="compute point-in-time technical ratings for every staged symbol",
                       description="Data Cycle stage 4: technical ratings per symbol and day, from bars at or before that day only.")
    s.add_argument("--root", default="data", help=DATA_ROOT_HELP)
    s.set_defaults(func=cmd_features)

    s = sub.add_parser("audit", help="check every layer and publish the Golden Copy (the gate)",
                       description="Data Cycle stage 5: classify every staged symbol and publish the certified lakehouse as of data.as_of.")
    s.add_argument("--root", default="data", help=DATA_ROOT_HELP)
    s.add_argument("--candidates", default="data/export/candidates.json", help="candidates file, to report candidates without data (default: %(default)s)")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("report", help="write the human-readable data audit report (HTML)",
                       description="Data Cycle stage 6: the audit report of the published lakehouse.")
    s.add_argument("--root", default="data", help=DATA_ROOT_HELP)
    s.add_argument("--out", default="artifacts/reports/data_audit.html", help="HTML file to write (default: %(default)s)")
    s.set_defaults(func=cmd_report)


def _alpha_inputs(s) -> None:
    """The --alpha and --snapshot options every stage after `returns` reads."""
    s.add_argument("--alpha", default="artifacts/alpha", help="folder of the alpha outputs (default: %(default)s)")
    s.add_argument("--snapshot", default="artifacts/snapshot", help="snapshot folder (default: %(default)s)")


def _alpha_commands(sub) -> None:
    s = sub.add_parser("snapshot", help="freeze the certified subset into an immutable, content-hashed run input",
                       description="Alpha Cycle stage 1 (no network): link the certified files and write manifest.json with the snapshot id.")
    s.add_argument("--lakehouse", default="data/lakehouse", help="the Golden Copy to freeze (default: %(default)s)")
    s.add_argument("--out", default="artifacts/snapshot", help="snapshot folder to write (default: %(default)s)")
    s.set_defaults(func=cmd_snapshot)

    s = sub.add_parser("returns", help="build the returns and traded-value matrices from the snapshot",
                       description="Alpha Cycle stage 2 (no network): daily returns and traded value, one column per symbol.")
    s.add_argument("--snapshot", default="artifacts/snapshot", help="snapshot folder (default: %(default)s)")
    s.add_argument("--out", default="artifacts/alpha", help="folder for the matrices (default: %(default)s)")
    s.set_defaults(func=cmd_returns)

    for name, func, text in (
        ("select", cmd_select, "select assets as of data.as_of (vetoes, clusters, scores)"),
        ("synthesize", cmd_synthesize, "build the strategy atoms of the selection"),
        ("optimize", cmd_optimize, "optimize today's weights of the atoms"),
    ):
        s = sub.add_parser(name, help=text, description=f"Alpha Cycle (no network): {text}.")
        _alpha_inputs(s)
        s.set_defaults(func=func)

    s = sub.add_parser("backtest", help="walk-forward backtest with costs and baselines",
                       description="Alpha Cycle (no network): re-run the recipe at every rebalance date on the data known then.")
    _alpha_inputs(s)
    s.add_argument("--out", default="artifacts/backtest", help="folder for metrics, curves and the tear sheet (default: %(default)s)")
    s.set_defaults(func=cmd_backtest)

    s = sub.add_parser("sweep", help="a walk-forward for every point of sweep.grid (on Dask), with DSR and PBO",
                       description="Alpha Cycle (no network but the cluster's): run the grid of alpha params on the same snapshot.")
    _alpha_inputs(s)
    s.add_argument("--out", default="artifacts/sweep", help="folder for results.parquet, summary.json, metrics.json, points.csv (default: %(default)s)")
    s.set_defaults(func=cmd_sweep)


def _advance_command(sub) -> None:
    s = sub.add_parser("advance", help="move data.as_of to the last closed UTC day and reproduce the data stages",
                       description="Edit data.as_of in params.yaml (keeping comments), then run `dvc repro` on the given stages.")
    s.add_argument("--as-of", help="a closed UTC day, YYYY-MM-DD (default: the last one)")
    s.add_argument("--no-repro", action="store_true", help="only edit params.yaml")
    s.add_argument("--allow-backwards", action="store_true", help="allow moving data.as_of to an earlier day")
    s.add_argument("stages", nargs="*", default=["report"], help="stages to reproduce (default: the Data Cycle up to its report)")
    s.set_defaults(func=cmd_advance)

    s = sub.add_parser("digest", help="what changed since the previous version: listings, statuses, quarantine, repairs, trades",
                       description="Compare this lakehouse version and portfolio with the previous one (the last digest, else git HEAD).")
    s.add_argument("--against", metavar="REV", help="compare with this git revision (default: the previous digest, else HEAD)")
    s.add_argument("--no-save", action="store_true", help="do not record this version as the next digest's baseline")
    s.set_defaults(func=cmd_digest)


def _ops_commands(sub) -> None:
    from . import ops  # publish / reproduce: versions of the lakehouse and of past runs

    ops.register(sub)
    from . import show  # show: one line per symbol of the lakehouse (workspace or --rev)

    show.register(sub)


# Where commands are registered, in the order `quantlake --help` lists them. A new command is
# one function that adds its sub-parsers (and imports its heavy modules inside its command).
COMMAND_GROUPS = [_data_commands, _alpha_commands, _ops_commands, _advance_command]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quantlake", description=__doc__.splitlines()[0],
                                epilog="Every stage reads params.yaml; see `quantlake COMMAND --help`.")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}", help="print the version and exit")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMAND_GROUPS:
        register(sub)
    return p


def _exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `except BaseException` / `finally` removes its temp files."""
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    except ValueError:  # not the main thread: leave the handler alone
        pass


def main(argv: list[str] | None = None) -> int:
    _exit_on_sigterm()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except QuantlakeError as exc:
        _say(f"quantlake {args.command}: error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
