"""`quantlake <command>`: one sub-command per DVC stage, plus operations.

Commands are thin: read `params.yaml` and the paths given as arguments, call the core,
write outputs atomically. The wall clock is read here only (`QUANTLAKE_NOW` overrides it, for
tests and replays), never inside the math.
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

import yaml

from .contracts import ContractError, QuantlakeError, SymbolId, check_as_of, last_closed_day, parse_date
from .storage import atomic_write_bytes, atomic_write_json, read_json

log = logging.getLogger("quantlake")


def now_utc() -> dt.datetime:
    override = os.environ.get("QUANTLAKE_NOW")
    if override:
        value = dt.datetime.fromisoformat(override.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.now(dt.timezone.utc)


def load_params(path: str | Path) -> dict:
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ContractError(f"{path}: cannot read params: {exc}") from exc
    if not isinstance(params, dict):
        raise ContractError(f"{path}: params must be a mapping")
    return params


def _block(params: dict, name: str) -> dict:
    block = params.get(name) or {}
    if not isinstance(block, dict):
        raise ContractError(f"params: {name!r} must be a mapping")
    return block


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data cycle


def cmd_discover(args) -> int:
    from .data.discovery import discover, scanner_files, scanner_from_file
    from .sources import make_source

    params = load_params(args.params)
    data = _block(params, "data")
    as_of = check_as_of(parse_date(data.get("as_of"), field="data.as_of"), now_utc())
    scanners = [scanner_from_file(p) for p in scanner_files(Path(args.scanners))]
    source = make_source(data)
    doc = discover(scanners, source.list_markets(as_of), as_of=as_of, source=source.name)
    atomic_write_json(args.out, doc)
    _say(f"discover: {len(doc['candidates'])} candidates from {len(scanners)} scanner(s) on {source.name} as of {as_of}")
    return 0


def cmd_ingest(args) -> int:
    from .data.ingest import IngestConfig, ingest_symbols, read_candidates
    from .data.staging import StagingStore
    from .sources import make_source

    params = load_params(args.params)
    data = _block(params, "data")
    cfg = IngestConfig.from_params(data)
    now = now_utc()
    check_as_of(cfg.as_of, now)
    symbols = read_candidates(args.candidates)
    if args.symbols:
        wanted = {str(SymbolId.parse(s, where="--symbols")) for s in args.symbols}
        symbols = [s for s in symbols if str(s) in wanted]
    store = StagingStore(args.bars, args.quarantine, max_gap_days=int(data.get("max_gap_days", 5)))
    summary = ingest_symbols(symbols, make_source(data), store, cfg, now=now, log=_say, progress=None)
    _say(summary.line())
    if summary.failed and args.strict:
        return 1
    return 0


def cmd_audit(args) -> int:
    from .data.audit import AuditConfig, run_audit
    from .lakehouse import Layers

    params = load_params(args.params)
    cfg = AuditConfig.from_params(_block(params, "data"), _block(params, "audit"))
    candidates = None
    if args.candidates and Path(args.candidates).exists():
        candidates = [c["symbol"] for c in read_json(args.candidates).get("candidates", [])]
    result = run_audit(Layers(Path(args.root)), cfg, candidates=candidates)
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


def cmd_repair(args) -> int:
    from .data.repair import run_repair
    from .lakehouse import Layers
    from .sources import make_source

    params = load_params(args.params)
    data = _block(params, "data")
    check_as_of(parse_date(data.get("as_of"), field="data.as_of"), now_utc())
    summary = run_repair(Layers(Path(args.root)), make_source(data), data, _block(params, "repair"), log=_say)
    _say(summary.line())
    return 1 if summary.failed and args.strict else 0


def cmd_report(args) -> int:
    from .data.report import write_audit_report
    from .lakehouse import Layers

    layers = Layers(Path(args.root))
    out = write_audit_report(layers.lakehouse, layers.staging_bars, layers.quarantine, layers.repairs, Path(args.out))
    _say(f"report: {out}")
    return 0


def cmd_features(args) -> int:
    from .data.features import run_features
    from .data.staging import StagingStore
    from .lakehouse import Layers, read_bars

    layers = Layers(Path(args.root))
    state = StagingStore(layers.staging_bars, layers.quarantine).load_state()["symbols"]
    symbols = [SymbolId.parse(s) for s, e in state.items() if not e.get("toxic_reason") and not e.get("corrupt") and e.get("rows")]
    summary = run_features(symbols, lambda sid: read_bars(layers, sid), layers.features)
    for detail in summary.failed.values():
        _say(f"features: FAILED {detail}")
    _say(summary.line())
    return 0


def cmd_migrate(args) -> int:
    from .data.migrate import migrate_repository
    from .lakehouse import Layers

    _say(migrate_repository(Layers(Path(args.root)), log=_say).line())
    return 0


# --------------------------------------------------------------------------- alpha cycle


def _alpha(stage: str):
    """Every alpha command blocks outbound connections before doing any work."""
    from .alpha.netguard import block_network

    block_network(stage)
    from .alpha import stages

    return stages


def cmd_snapshot(args) -> int:
    stages = _alpha("snapshot")
    as_of = parse_date(_block(load_params(args.params), "data").get("as_of"), field="data.as_of")
    snap = stages.run_snapshot(Path(args.lakehouse), Path(args.out), as_of)
    _say(f"snapshot: {len(snap.manifest['files'])} certified files as of {snap.manifest['as_of']}, snapshot_id {snap.snapshot_id[:16]}")
    return 0


def cmd_returns(args) -> int:
    stages = _alpha("returns")
    returns = stages.run_returns(Path(args.snapshot), Path(args.out), load_params(args.params))
    _say(f"returns: {returns.shape[0]} days x {returns.shape[1]} symbols")
    return 0


def cmd_select(args) -> int:
    stages = _alpha("select")
    doc = stages.run_select(Path(args.alpha), Path(args.snapshot), load_params(args.params))
    _say(f"select: {len(doc['selected'])} selected in {len(doc['clusters'])} clusters, {len(doc['vetoes'])} vetoed, as of {doc['as_of']}")
    return 0


def cmd_synthesize(args) -> int:
    stages = _alpha("synthesize")
    atoms = stages.run_synthesize(Path(args.alpha), Path(args.snapshot), load_params(args.params))
    _say(f"synthesize: {len(atoms.atoms)} atoms")
    return 0


def cmd_optimize(args) -> int:
    stages = _alpha("optimize")
    doc = stages.run_optimize(Path(args.alpha), Path(args.snapshot), load_params(args.params))
    top = sorted(doc["weights"].items(), key=lambda kv: -abs(kv[1]))[:5]
    _say(f"optimize ({doc['method']}): " + ", ".join(f"{s} {w:.1%}" for s, w in top) + (" ..." if len(doc["weights"]) > 5 else ""))
    return 0


def cmd_backtest(args) -> int:
    stages = _alpha("backtest")
    metrics = stages.run_backtest(Path(args.alpha), Path(args.snapshot), Path(args.out), load_params(args.params))
    for name in ("strategy", "equal_weight", "benchmark"):
        m = metrics[name]
        _say(f"backtest {name:>12}: CAGR {m['cagr']}, Sharpe {m['sharpe']}, max drawdown {m['max_drawdown']}")
    return 0


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
    current = parse_date(_block(load_params(params_path), "data").get("as_of"), field="data.as_of")
    if target < current and not args.allow_backwards:
        raise ContractError(f"--as-of {target} is before data.as_of {current}; pass --allow-backwards to go back")
    changed = set_as_of(params_path, target)
    _say(f"advance: data.as_of {current} -> {target}" if changed else f"advance: data.as_of already {target}")
    if args.no_repro:
        return 0
    cmd = ["dvc", "repro", *args.stages]
    _say("advance: " + " ".join(cmd))
    return subprocess.call(cmd)


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quantlake", description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("discover", help="run the scanners and write the candidates")
    s.add_argument("--scanners", default="configs/scanners")
    s.add_argument("--out", default="data/export/candidates.json")
    s.set_defaults(func=cmd_discover)

    s = sub.add_parser("ingest", help="fetch what is missing, sanitize, stage")
    s.add_argument("--candidates", default="data/export/candidates.json")
    s.add_argument("--bars", default="data/staging/bars")
    s.add_argument("--quarantine", default="data/staging/quarantine")
    s.add_argument("--symbols", nargs="*", help="only these candidates")
    s.add_argument("--strict", action="store_true", help="exit non-zero if any symbol failed")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("repair", help="re-fetch exactly the gap windows of the staged series")
    s.add_argument("--root", default="data", help="the data folder holding staging/ (default: data)")
    s.add_argument("--strict", action="store_true", help="exit non-zero if any symbol failed")
    s.set_defaults(func=cmd_repair)

    s = sub.add_parser("migrate", help="convert data/ from the one-file-per-table layout to fragmented tables (same rows)")
    s.add_argument("--root", default="data", help="the data folder holding staging/ and lakehouse/ (default: data)")
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("features", help="compute point-in-time technical ratings for every staged symbol")
    s.add_argument("--root", default="data", help="the data folder holding staging/ (default: data)")
    s.set_defaults(func=cmd_features)

    s = sub.add_parser("audit", help="check every layer and publish the Golden Copy")
    s.add_argument("--root", default="data", help="the data folder holding staging/ and lakehouse/ (default: data)")
    s.add_argument("--candidates", default="data/export/candidates.json")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("report", help="write the human-readable data audit report (HTML)")
    s.add_argument("--root", default="data")
    s.add_argument("--out", default="artifacts/reports/data_audit.html")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("snapshot", help="freeze the certified subset into an immutable, content-hashed run input")
    s.add_argument("--lakehouse", default="data/lakehouse")
    s.add_argument("--out", default="artifacts/snapshot")
    s.set_defaults(func=cmd_snapshot)

    s = sub.add_parser("returns", help="build the returns and traded-value matrices from the snapshot")
    s.add_argument("--snapshot", default="artifacts/snapshot")
    s.add_argument("--out", default="artifacts/alpha")
    s.set_defaults(func=cmd_returns)

    for name, func, text in (
        ("select", cmd_select, "select assets as of data.as_of"),
        ("synthesize", cmd_synthesize, "build the strategy atoms of the selection"),
        ("optimize", cmd_optimize, "optimize today's weights"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--alpha", default="artifacts/alpha")
        s.add_argument("--snapshot", default="artifacts/snapshot")
        s.set_defaults(func=func)

    s = sub.add_parser("backtest", help="walk-forward backtest with costs and baselines")
    s.add_argument("--alpha", default="artifacts/alpha")
    s.add_argument("--snapshot", default="artifacts/snapshot")
    s.add_argument("--out", default="artifacts/backtest")
    s.set_defaults(func=cmd_backtest)

    from . import ops  # publish / reproduce: versions of the lakehouse and of past runs

    ops.register(sub)

    s = sub.add_parser("advance", help="move data.as_of to the last closed UTC day and reproduce the data stages")
    s.add_argument("--as-of", help="a closed UTC day (default: the last one)")
    s.add_argument("--no-repro", action="store_true", help="only edit params.yaml")
    s.add_argument("--allow-backwards", action="store_true")
    s.add_argument("stages", nargs="*", default=["report"], help="stages to reproduce (default: the Data Cycle up to its report)")
    s.set_defaults(func=cmd_advance)
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
